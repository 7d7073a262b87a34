"""One worker's world: the model, the teacher reference, the cost model, the space, the baselines, and how a
schedule is scored (:meth:`SearchContext.evaluate`: images from the reference noise -> rFID and paired distance)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import torch
from optuna.pruners import BasePruner
from optuna.trial import Trial

from flexdiff.either_loop import check_sample_memory, default_sampler, schedule_images, takes_null_steps, teacher_grid
from flexdiff.errors import FlexdiffError
from flexdiff.measuring.features import FeatureNetwork, get_feature_network
from flexdiff.measuring.metrics import paired_distance, rfid
from flexdiff.models import DiffusionModel, condition, load_model
from flexdiff.running.cost import StepCosts, measure_macs
from flexdiff.running.own_loop import batch_bounds
from flexdiff.running.trajectory import TrajectoryStore, load_run, save_run
from flexdiff.samplers import AUTO, PIPELINE, same_trajectory
from flexdiff.schedule import Schedule, ddim_k, deepcache_uniform, full
from flexdiff.search.config import SearchConfig, check_budget
from flexdiff.search.fidelity import report, should_prune
from flexdiff.search.peers import PeerRun, calibrate, peer_images, peer_runs
from flexdiff.search.reference import CACHE_NAME, DAMAGED, TEACHER_RUN, ReferenceKey, TeacherReference, load_or_build_reference, reference_key
from flexdiff.search.space import GenomeSpace
from flexdiff.search.study import describe
from flexdiff.utils.progress import progress_bar


@dataclass
class SearchContext:
    """Everything one worker needs, built once per process."""

    config: SearchConfig
    model: DiffusionModel
    timesteps: list[int]
    net: FeatureNetwork
    costs: StepCosts
    space: GenomeSpace
    reference: TeacherReference | None  # None until load_reference() (an estimate comes before it)
    baselines: list[Schedule] = field(default_factory=list)
    #: caching peers at each of their settings (``--peers``): baselines of the same study, scored like schedules
    peers: list[PeerRun] = field(default_factory=list)
    #: stops searched candidates early on the rungs of ``--fidelity`` (set by the worker once the baselines are in)
    pruner: BasePruner | None = None
    #: the runs candidates start from (``--reuse``; flexdiff/trajectory.py), filled by every evaluation of this worker
    trajectories: TrajectoryStore | None = None
    #: the estimate's teacher-image equivalents per phase (flexdiff.search.estimate.equivalents), for results.json
    expected_images: dict[str, float] = field(default_factory=dict)
    _peer_extra: dict[str, Any] | None = None
    _key: ReferenceKey | None = None

    @property
    def max_macs(self) -> float:
        c = self.config
        if c.max_macs is not None:
            return float(c.max_macs)
        return self.costs.full * len(self.timesteps) / (c.speedup or 1.0)

    @property
    def budgets(self) -> list[float]:
        """MACs per image of every budget the search serves: the run's (``--speedup`` / ``--max-macs``), then the
        elite budgets (``elite_speedups``). The evolution keeps an elite within each; the pruner stops what none can use."""
        return [self.max_macs] + [self.costs.full * len(self.timesteps) / x for x in self.config.elite_speedups]

    @property
    def key(self) -> ReferenceKey:
        """The teacher reference's key (known before the reference is built: studies are checked against it first)."""
        if self._key is None:
            c = self.config
            self._key = reference_key(self.model, c.sampler, self.timesteps, c.seed, c.n, self.net)
        return self._key

    @property
    def study_name(self) -> str:
        c = self.config
        conditioned = f"-c{self.key.conditioning[-8:]}" if self.key.conditioning else ""
        solver = f"-{c.candidate_sampler}" if c.candidate_sampler != c.sampler else ""
        sampler = self.key.sampler.replace(":", "-")  # the sampler; for the pipeline's loop with its scheduler's digest
        rungs = f"-f{'.'.join(map(str, c.fidelity))}" if c.fidelity else ""  # a multi-fidelity search is its own study
        objective = f"-{c.objective}" if c.objective != "rfid" else ""  # as is one minimising another objective
        return (
            c.study
            or f"flexdiff-{self.key.model[:10]}{conditioned}-{sampler}{c.steps}{solver}-n{c.n}{rungs}{objective}-seed{c.seed}-{c.strategy}-{self.budget_name}"
        )

    @property
    def budget_name(self) -> str:
        """The budgets as the derived study name holds them (``b3x``; ``b181002240macs`` with ``--max-macs``; elite
        speed-ups after). A search is its own study per budget set: the evolution breeds within the budgets (its elite,
        children kept within the largest) and the pruner stops what none of them can use, so a study searched for one
        budget is not what a fresh search for another would find. A rerun with another ``--speedup`` is a fresh search
        (the teacher reference is reused); one with the earlier budget resumes the earlier study."""
        c = self.config
        first = f"{format(c.max_macs, '.15g')}macs" if c.max_macs is not None else f"{format(c.speedup or 1.0, '.15g')}x"
        return "b" + "_".join([first, *(f"{format(x, '.15g')}x" for x in c.elite_speedups)])

    def fingerprint(self) -> dict[str, Any]:
        k = self.key
        latent = {name: getattr(k, name) for name in ("decoder", "conditioning") if getattr(k, name)}  # absent for pixel models, as before
        spacings = {"spacings": list(self.space.spacings)} if self.space.spacings != (1.0,) else {}  # absent for equal segments, as before
        solver = {"solver": self.config.candidate_sampler} if self.config.candidate_sampler != k.sampler else {}  # absent without --solver, as before
        solver |= {"forecast": True} if self.space.forecast else {}  # absent without --forecast, as before
        solver |= {"fidelity": list(self.config.fidelity)} if self.config.fidelity else {}  # absent without --fidelity, as before
        solver |= {"objective": self.config.objective} if self.config.objective != "rfid" else {}  # absent for rFID, as before
        budgets = {"budgets": sorted(round(b, 1) for b in self.budgets)}  # an explicit --study for another budget is refused (study.LATER_KEYS)
        return {
            "model": k.model,
            "sampler": k.sampler,
            "T": len(k.timesteps),
            "seed": k.seed,
            "n": k.n,
            "features": k.features,
            "segments": list(self.space.segment_counts),
            **spacings,
            **solver,
            **latent,
            **budgets,
        }

    def evaluate(self, schedule: Schedule, trial: Trial | None = None) -> dict[str, Any]:
        """Generate from the reference noise with ``schedule``; rFID and the paired distance to the teacher.

        With rungs (``--fidelity``; :mod:`flexdiff.search.fidelity`) the result keeps the rFID (``rungs``) and the
        paired distance (``paired_rungs``) of the first images at each. A ``trial`` that may be stopped (a finite
        ``--prune-margin``: a searched candidate, or a plan baseline) runs in batches ending at the rungs, reports its
        paired distance at each and is pruned (Optuna's ``TrialPruned``, its partial scores stored) once
        :attr:`pruner` finds it off the front. Anything else (a caching peer; every candidate with ``--prune-margin
        inf``) runs in uncut batches, and its rungs are only recorded from its first images, at no cost."""
        macs = self.costs.schedule(schedule)
        rungs, feats, scores, paired = self.config.fidelity, [], {}, {}
        cut = trial is not None and self.pruner is not None
        stoppable = cut and schedule.meta.get("family") != "teacher"  # the teacher's plan is the reference itself (rFID 0): always whole
        if trial is not None:
            trial.set_user_attr("macs", macs)

        def seen(stop: int, images: torch.Tensor) -> None:
            feats.append(self.net(images))
            reached = [m for m in rungs if m <= stop and str(m) not in scores]  # one when batches end at the rungs; all at once when not
            if not reached:
                return
            so_far = torch.cat(feats)
            for m in reached:
                scores[str(m)] = round(rfid(so_far[:m], self.reference.features[:m]), 5)
                paired[str(m)] = round(paired_distance(so_far[:m], self.reference.features[:m]), 5)
            if stoppable and stop in rungs:
                report(trial, stop, paired[str(stop)])
                if should_prune(trial, self.pruner):
                    trial.set_user_attr(
                        "result",
                        {
                            **describe(schedule),
                            "sampler": schedule.sampler,
                            "macs": macs,
                            "pruned_at": stop,
                            "rungs": dict(scores),
                            "paired_rungs": dict(paired),
                            "wall_seconds": round(time.perf_counter() - start, 4),
                        },
                    )
                    raise optuna.TrialPruned(f"off the front at {stop} images")

        start = time.perf_counter()
        schedule_images(
            self.model,
            schedule,
            self.reference.noise,
            seed=self.config.seed,
            batch_size=self.config.batch_size,
            cuts=self.config.cuts if cut else (),
            on_batch=seen,
            trajectories=self.trajectories,
        )
        wall = time.perf_counter() - start
        return self._score(torch.cat(feats), macs, wall, schedule.sampler) | ({"rungs": scores, "paired_rungs": paired} if rungs else {})

    def evaluate_peer(self, run: PeerRun) -> dict[str, Any]:
        """Generate from the reference noise with a caching peer over the teacher's grid; its MACs are what it computed
        (counted over the run, per image), its scores as a schedule's."""
        start = time.perf_counter()
        images, macs = peer_images(
            self.model, run, self.reference.noise, self.timesteps, self.config.sampler, batch_size=self.config.batch_size, extra=self.peer_extra()
        )
        return self._score(self.net(images), macs, time.perf_counter() - start, self.config.sampler)

    def peer_generator(self, run: PeerRun) -> Callable[[torch.Tensor], torch.Tensor]:
        """``noise -> images`` of a peer (validation re-scores it on its own noise; no MACs counted)."""
        return lambda noise: peer_images(
            self.model, run, noise, self.timesteps, self.config.sampler, batch_size=self.config.batch_size, extra=self.peer_extra(), count=False
        )[0]

    def peer_extra(self) -> dict[str, Any]:
        """What the requested peers' configs need from a calibration run (MagCache's ratios), run once per process on
        the first 32 reference noises."""
        if self._peer_extra is None:
            families = sorted({r.family for r in self.peers})
            self._peer_extra = calibrate(self.model, self.timesteps, self.config.sampler, self.reference.noise[:32], families)
        return self._peer_extra

    def _score(self, feats: torch.Tensor, macs: float, wall: float, sampler: str) -> dict[str, Any]:
        return {
            "sampler": sampler,
            "macs": macs,
            "macs_speedup": round(self.costs.full * len(self.timesteps) / max(macs, 1), 4),
            "wall_seconds": round(wall, 4),
            "rfid": round(rfid(feats, self.reference.features), 5),
            "paired": round(paired_distance(feats, self.reference.features), 5),
            "objective": self.config.objective,
        }

    def propose(self, trial: Any) -> Schedule:
        return self.space.suggest(trial).expand(self.timesteps, self.config.candidate_sampler)

    def load_reference(self, build: bool = True) -> bool:
        """The teacher reference from the run folder's cache, else generated and cached (``build=False``: only if
        cached). Returns whether it came from the cache. With ``--reuse`` the teacher's run is kept too (beside the
        cache, under its key; :mod:`flexdiff.running.trajectory`), for the schedules that share its first steps."""
        c = self.config
        keep = build and self.trajectories is not None and c.sampler != PIPELINE
        n_batches = len(batch_bounds(c.n, c.batch_size, c.cuts if keep else ()))
        with progress_bar("teacher reference", len(self.timesteps) * n_batches, enabled=c.progress and build) as advance:
            reference, status = load_or_build_reference(
                self.model,
                c.sampler,
                self.timesteps,
                c.seed,
                c.n,
                self.net,
                c.out,
                c.batch_size,
                on_step=advance,
                build=build,
                key=self.key,
                images_of=(lambda noise: self._teacher_run(noise, advance)) if keep else None,
            )
        if build and status.startswith(DAMAGED):  # never silent: the user may want to know what happened to the file
            print(f"warning: {c.out / CACHE_NAME}: {status}", file=sys.stderr)
        elif c.progress and build and status != "reused":
            print(f"teacher reference {status} ({c.n} images)")
        self.reference = reference or self.reference
        if keep and status == "reused":
            teacher = full(self.timesteps, c.sampler)
            run = load_run(c.out / TEACHER_RUN, teacher, batch_bounds(c.n, c.batch_size, c.cuts), self.key.to_json())
            if run is not None:  # else the teacher's plan is evaluated as a baseline and kept in memory only
                self.trajectories.add(run)
        return status == "reused"

    def _teacher_run(self, noise: torch.Tensor, on_step: Callable[[], None]) -> torch.Tensor:
        """The teacher's images as its plan (every step full) makes them, in the evaluations' batches, with its steps
        kept in :attr:`trajectories` and on disk: its plan as a baseline is then replayed, not recomputed."""
        c, teacher = self.config, full(self.timesteps, self.config.sampler)
        images = schedule_images(self.model, teacher, noise, seed=c.seed, batch_size=c.batch_size, cuts=c.cuts, on_step=on_step, trajectories=self.trajectories)
        if teacher.key in self.trajectories.runs:
            save_run(self.trajectories.runs[teacher.key], c.out / TEACHER_RUN, self.key.to_json())
        return images

    def genome_key(self, genome: Any) -> str:
        return genome.expand(self.timesteps, self.config.candidate_sampler).key


def baseline_schedules(timesteps: list[int], sampler: str, num_branches: int, config: SearchConfig, null_steps: bool = True) -> list[Schedule]:
    """The teacher, DDIM-k and DeepCache uniform N at every branch (or ``baseline_branches``; with ``forecast``, its
    forecasting twin too), under the teacher's sampler; with a different ``--solver``, DDIM-k's and DeepCache's step plans once more under the solver (named
    ``ddim-25+dpmpp-2m``, family ``ddim+dpmpp-2m``), so searched schedules also meet the baselines of their own solver.
    A plan the solver runs exactly as the sampler does (DeepCache's under ddim-2m) is not scored twice. Without
    ``null_steps`` (a pipeline scheduler that takes no custom timesteps) DDIM-k is left out."""
    T = len(timesteps)
    branches = config.baseline_branches if config.baseline_branches is not None else tuple(range(num_branches))
    classic = [ddim_k(timesteps, k, sampler) for k in budget_ks(T, config) if null_steps]
    for forecast in (False, True) if config.forecast else (False,):  # a forecast search meets (and starts from) the uniform forecast plans too
        classic += [deepcache_uniform(timesteps, n, b, sampler, forecast) for n in config.baseline_intervals if n <= T for b in branches if b < num_branches]
    solver = config.candidate_sampler
    under_solver = [_under(s, solver) for s in classic if not same_trajectory(sampler, solver, s.active_timesteps, timesteps)]
    return [full(timesteps, sampler), *classic, *under_solver]


def budget_ks(T: int, config: SearchConfig) -> list[int]:
    """DDIM-k's step counts: ``ddim_ks`` below T, and at every budget the most steps it allows (T // speed-up), so
    every budget has a baseline pick. (The fixed list is made for T = 50: at T = 20 its cheapest, 5 steps, is 1/4,
    and 4-noise searches on the built-in DiT found nothing within 1/5 at 2 of 3 seeds:
    benchmarks/results/search_frontier_dit.json before this rule.)"""
    speedups = [s for s in (config.speedup, *config.elite_speedups) if s]
    return sorted({k for k in config.ddim_ks if k < T} | {int(T // s) for s in speedups if 1 <= T // s < T})


def affordable(baselines: list[Schedule], costs: Any, limit: float) -> list[Schedule]:
    """The baselines worth their images: the teacher's plan (the reference's own row) and those within the largest
    budget. One costlier than every budget is neither a pick nor a parent (the evolution keeps its children within
    the largest budget), yet the DeepCache grid over every branch made most of a search's images where it was run
    (benchmarks/results/search_cost_at_scale.json before this rule: 39,245 of FLUX.1-dev's 44,438 teacher-image
    equivalents)."""
    return [s for s in baselines if s.meta.get("family") == "teacher" or costs.schedule(s) <= limit]


def _under(schedule: Schedule, sampler: str) -> Schedule:
    """The same step plan run with ``sampler``, named so tables tell the two apart."""
    meta = {**schedule.meta, "family": f"{schedule.meta['family']}+{sampler}"}
    return Schedule(schedule.steps, schedule.timesteps, sampler, f"{schedule.name}+{sampler}", meta)


def image_channels(model: DiffusionModel) -> int:
    """Channels of the model's images: its samples', its decoder's output's, or RGB for a pipeline's own call."""
    if model.pipeline_only and model.decoder is None:
        return 3
    vae = getattr(model.decoder, "vae", None)
    return int(vae.config.out_channels) if vae is not None else int(model.sample_shape[0])


def resolve_features(features: str, model: DiffusionModel) -> str:
    """``--features auto``: ``digits`` for grey images (the built-in models' kind, what that network was trained on);
    for any other model a one-line refusal naming the real-image options, never digits embeddings of a photo."""
    if features != AUTO:
        return features
    if image_channels(model) == 1:
        return "digits"
    raise FlexdiffError(
        f"--features {AUTO} on {model.name} ({image_channels(model)}-channel images)",
        "a real-image feature network for a model other than the grey-digits built-ins",
        "pass --features clip --clip CLIP_FOLDER (a local transformers CLIPModel) or --features inception --inception WEIGHTS",
    )


def build_context(config: SearchConfig, reference: bool = True) -> SearchContext:
    """One worker's context; ``reference=False`` leaves the teacher reference to :meth:`SearchContext.load_reference`
    (the estimate of a search comes before it)."""
    model = load_model(config.model, config.device, torch_dtype=config.torch_dtype, variant=config.variant, call_options=config.call_options)
    config = replace(config, sampler=default_sampler(model, config.sampler))
    if config.peers and model.backbone.name != "transformer":  # before any work
        raise FlexdiffError(
            f"--peers on {config.model} ({model.backbone.name} backbone)",
            "a transformer (diffusers' and cache-dit's block caches hook transformer blocks)",
            "drop --peers, or search a DiT, PixArt, SD3 or Flux model",
        )
    condition(
        model,
        prompts=config.prompts,
        negative_prompt=config.negative_prompt,
        guidance=config.guidance,
        labels=config.labels,
        control_images=config.control_images,
    )
    check_sample_memory(model, max(config.n, config.validate_n), config.batch_size)  # the teacher's images first: before any of them
    timesteps = teacher_grid(model, config.sampler, config.steps)
    config = replace(config, features=resolve_features(config.features, model))
    net = get_feature_network(config.features, model.device, config.features_path)
    num_branches = model.layout.num_branches
    unknown = sorted(b for b in config.baseline_branches or () if not 0 <= b < num_branches)
    if unknown:  # before any work: they would silently be no baselines at all
        raise FlexdiffError(
            f"--baseline-branches {','.join(map(str, unknown))}",
            f"branches of {config.model} (0 to {num_branches - 1}; see `flexdiff inspect`)",
            "pass branches the model has, or drop --baseline-branches for all of them",
        )
    nulls = takes_null_steps(model, config.sampler)
    costs = measure_macs(model)
    check_budget(config, costs.full)  # --max-macs below every schedule: refused before any work (it needs the MACs)
    space = GenomeSpace(
        len(timesteps),
        tuple(sorted(set(config.segments))),
        num_branches,
        tuple(sorted(set(config.spacings))),
        null_steps=nulls,
        forecast=config.forecast,
        cost=lambda genome: costs.schedule(genome.expand(timesteps, config.candidate_sampler)),
    )
    if not nulls and config.progress:
        print(f"{model.scheduler_class} takes no custom timesteps: schedules without null steps only (no DDIM-k baselines)")
    ctx = SearchContext(config, model, timesteps, net, costs, space, None)
    ctx.baselines = baseline_schedules(timesteps, config.sampler, num_branches, config, null_steps=nulls)
    ctx.baselines = ctx.baselines if config.all_baselines else affordable(ctx.baselines, costs, max(ctx.budgets))
    ctx.peers = peer_runs(len(timesteps), config.peers) if config.peers else []
    ctx.trajectories = TrajectoryStore(config.reuse_mb * 2**20) if config.reuse else None
    if reference:
        ctx.load_reference()
    return ctx
