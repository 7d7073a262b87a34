"""How long a search will take, before it starts (``flexdiff search`` prints it; ``--dry-run`` prints it and stops).

From measured step costs, not guesses: the wall-clock of a full step and of a partial step at every branch on this
machine (:func:`flexdiff.running.cost.measure_latency`, on the batch the evaluations run in, at most 256 images; with rungs
also on the first rung's batch, which costs more per image), and of the feature network per image; then per phase
what the settings make it run:

- teacher reference: ``n`` images x ``T`` full steps (nothing when the run folder's cache matches);
- baselines: each baseline's own steps on ``n`` images (a caching peer counted as the teacher: its skips are decided
  at run time);
- search: ``trials`` candidates. The first ones are random genomes of the space, the rest children of the elites
  near the budgets; a candidate's seconds are predicted from its MACs by a line fitted over 256 random genomes of
  the space (seconds per image against MACs per image), evaluated at the mean of the random genomes' MACs for the
  initial ones and at the budgets' MACs for the others, plus a fixed cost per evaluation (measured: the step
  hooks attached and removed, the feature network called, a trial written to a scratch SQLite study);
- validation: ``validate_n`` images of the teacher and of about ``validate_top`` + one per baseline family
  candidates at the budget.

With rungs (``--fidelity`` and a finite ``--prune-margin``) how many candidates the pruner stops cannot be known
before they are scored. The estimate takes the shares measured on the built-in model
(:data:`STOPPED_AT_FIRST_RUNG`, :data:`STOPPED_LATER`, :data:`BASELINES_STOPPED`; benchmarks/search_cost.json) and
gives the range around it: no candidate stopped (the most) .. every one stopped at the first rung (the least). With
``--reuse`` the teacher's plan as a baseline is replayed from the reference run (nothing to compute).

Phases already done in an earlier run of the same study are not subtracted: the estimate is for a fresh run.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from flexdiff.running.cost import StepCosts, measure_latency
from flexdiff.samplers import PIPELINE
from flexdiff.search.context import SearchContext
from flexdiff.search.strategies.evolution import INITIAL

#: random genomes the MACs -> seconds line is fitted on
_FIT_SAMPLES = 256
#: shares of the searched candidates the front pruner stopped at the first rung, and at a later one, in a 120-trial
#: search of benchmarks/search_cost.py (built-in digits UNet, DDIM-50 teacher, --solver ddim-2m, --fidelity 16,64,
#: budgets 1/2 .. 1/5, seed 0): 96 and 17 of 120; the three seeds of search_cost.json since: 294 and 38 of 360
STOPPED_AT_FIRST_RUNG, STOPPED_LATER = 0.80, 0.14
#: the share of the plan baselines (the teacher's aside) it stopped there, all at the first rung: 17 of 24
BASELINES_STOPPED = 0.71


@dataclass(frozen=True)
class Estimate:
    """Expected seconds per phase on this machine; with rungs, the search's range (``search_low``: every candidate
    stopped at the first rung; ``search_high``: none stopped)."""

    phases: dict[str, float]
    search_low: float | None = None
    search_high: float | None = None
    probe: dict[str, Any] = field(default_factory=dict)
    #: teacher-image equivalents per phase (:func:`equivalents`): what the search costs whatever the device
    images: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.phases.values())

    def lines(self) -> list[str]:
        parts = ", ".join(f"{name} {_clock(s)}" for name, s in self.phases.items())
        text = f"estimated wall time: {_clock(self.total)} ({parts}) on this machine"
        if self.search_low is not None and self.search_high is not None:
            rest = self.total - self.phases["search"]
            text += (
                f"; the pruner's stops assumed as measured on the built-in model: from {_clock(rest + self.search_low)} (every candidate stopped at "
                f"the first rung) to {_clock(rest + self.search_high)} (none stopped)"
            )
        if not self.images:
            return [text]
        shares = ", ".join(f"{name} {v:,.0f}" for name, v in self.images.items())
        return [f"estimated cost: {sum(self.images.values()):,.0f} teacher-image equivalents ({shares}): images x their MACs / the teacher's", text]


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _sample_probe(model: Any, batch: int) -> torch.Tensor:
    """Zeros shaped as ``batch`` of the sampler's outputs: latents (decoded next where the model has a decoder), or
    for a pipeline that decodes inside its own call its images (videos: frames), as the call's options size them."""
    if model.pipeline_only and model.decoder is None:
        options = model.call_options
        frames = (options["num_frames"],) if "num_frames" in options else ()
        return torch.zeros((batch, *frames, 3, options.get("height", 64), options.get("width", 64)))
    return torch.zeros((batch, *model.sample_shape), device=model.device)


def _per_image_seconds(ctx: SearchContext, batch: int) -> float:
    """Seconds per image of what follows the sampler: the decoder of a latent model and the feature network (median
    of 3 on a probe batch)."""
    model = ctx.model
    x = _sample_probe(model, batch)
    runs = []
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            images = model.decoder(x) if model.decoder is not None else x
            ctx.net(images.cpu())
            runs.append(time.perf_counter() - start)
    return sorted(runs)[1] / batch


def _fixed_seconds(ctx: SearchContext, feature: float) -> float:
    """What one evaluation costs beyond its images' steps: the step hooks attached and removed, the feature network's
    call, and one trial of the space written to a scratch SQLite study as the search writes it (its parameters, its
    key and result). The per-call overhead of the sampling itself is in the per-image step costs, measured on the
    batches the evaluations run in."""
    import tempfile

    import optuna

    from flexdiff.running.executor import apply_schedule
    from flexdiff.schedule import full
    from flexdiff.search.strategies import make_sampler
    from flexdiff.search.study import Tagged

    images = _sample_probe(ctx.model, 2).cpu()
    sampler = Tagged(make_sampler(ctx.config.strategy, ctx.space, ctx.genome_key, ctx.budgets, ctx.config.seed))  # it decides what a trial stores
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(storage=f"sqlite:///{tmp}/probe.db", directions=["minimize", "minimize"], sampler=sampler)
        start = time.perf_counter()
        with apply_schedule(ctx.model, full(ctx.timesteps, ctx.config.sampler)):
            pass
        ctx.net(images)
        trial = study.ask()
        ctx.space.suggest(trial)
        for name in ("key", "macs", "result"):
            trial.set_user_attr(name, {"probe": True})
        study.tell(trial, (1.0, 1.0))
        measured = time.perf_counter() - start
    return max(0.0, measured - 2 * feature)


def estimate(ctx: SearchContext, reference_cached: bool, setup_seconds: float = 0.0) -> Estimate:
    """The expected wall time of the search ``ctx`` describes (see the module docstring). ``setup_seconds``: what
    building ``ctx`` took; with this estimate's own probes it is the ``setup`` phase."""
    began = time.perf_counter()
    c = ctx.config
    batch = max(1, min(c.batch_size or c.n, c.n, 256))  # the batch the evaluations run in (per-image cost falls with it on a CPU)
    seconds = _per_image_step_seconds(ctx, batch)
    feature = _per_image_seconds(ctx, batch)
    T = len(ctx.timesteps)
    teacher = T * seconds.full + feature
    fixed = _fixed_seconds(ctx, feature)
    rung = c.cuts[0] if c.cuts else None
    small = _per_image_step_seconds(ctx, min(rung, batch)) if rung else seconds  # the first rung's batch: dearer per image
    small_feature = _per_image_seconds(ctx, min(rung, batch)) if rung else feature

    def per_image(schedule: Any) -> float:
        return seconds.schedule(schedule) + feature

    def cost(schedule: Any, images: int) -> float:
        """Seconds of ``schedule`` on ``images`` images (with rungs: the first ``rung`` of them in their own batch)."""
        first = min(rung or 0, images)
        return first * (small.schedule(schedule) + small_feature) + (images - first) * per_image(schedule)

    schedules, macs = random_schedules(ctx)
    random_mean = sum(macs) / len(macs)
    initial = min(c.trials, INITIAL)
    budgets = ctx.budgets
    families = {s.meta.get("family") for s in ctx.baselines} - {"teacher"} | {r.family for r in ctx.peers}
    validated = c.validate_top + len(families)

    def per_candidate(images: int) -> float:
        """Seconds of an average candidate on ``images`` images: the line over the random genomes at their mean MACs
        for the initial ones, at the budgets for the rest."""
        slope, intercept = _line([(m, cost(s, images)) for m, s in zip(macs, schedules)])
        at_budget = sum(slope * b + intercept for b in budgets) / len(budgets)
        return (initial * (slope * random_mean + intercept) + (c.trials - initial) * at_budget) / max(c.trials, 1)

    full_search = c.trials * (per_candidate(c.n) + fixed)
    replayed = c.reuse and c.sampler != PIPELINE  # the teacher's plan replays from the reference run
    plans = [s for s in ctx.baselines if not (replayed and s.meta.get("family") == "teacher")]
    baselines = sum(cost(s, c.n) for s in plans) + c.n * len(ctx.peers) * teacher + fixed * (len(ctx.baselines) + len(ctx.peers))
    search, low = full_search, None
    if rung:
        later = c.cuts[1] if len(c.cuts) > 1 else c.n
        low = c.trials * (per_candidate(rung) + fixed)
        search = c.trials * (
            STOPPED_AT_FIRST_RUNG * per_candidate(rung)
            + STOPPED_LATER * per_candidate(later)
            + (1 - STOPPED_AT_FIRST_RUNG - STOPPED_LATER) * per_candidate(c.n)
            + fixed
        )
        stoppable = [s for s in plans if s.meta.get("family") != "teacher"]
        baselines -= BASELINES_STOPPED * sum(cost(s, c.n) - cost(s, rung) for s in stoppable)
    slope, intercept = _line([(m, per_image(s)) for m, s in zip(macs, schedules)])
    phases = {
        "setup": setup_seconds + time.perf_counter() - began,
        "reference": 0.0 if reference_cached else c.n * teacher,
        "baselines": baselines,
        "search": search,
        "validation": c.validate_n * (teacher + validated * (slope * ctx.max_macs + intercept))
        + fixed * validated,  # the teacher once (its images are also its timing run)
    }
    images = equivalents(ctx, reference_cached, random_mean)
    probe = {
        "batch": batch,
        "full_step_seconds_per_image": seconds.full,
        "feature_seconds_per_image": feature,
        "seconds_per_mac": slope,
        "per_candidate_seconds_per_image": per_candidate(c.n) / c.n,
        "fixed_seconds_per_evaluation": fixed,
    }
    if rung:
        probe["first_rung_full_step_seconds_per_image"] = small.full
    return Estimate(phases, low, full_search if rung else None, probe, images)


def random_schedules(ctx: SearchContext) -> tuple[list[Any], list[int]]:
    """:data:`_FIT_SAMPLES` genomes of the space, half random, half uniform (what the evolution starts from), as
    schedules, with their MACs per image."""
    rng = random.Random(ctx.config.seed)
    genomes = [ctx.space.random_genome(rng) if i % 2 else ctx.space.uniform_genome(rng) for i in range(_FIT_SAMPLES)]
    schedules = [g.expand(ctx.timesteps, ctx.config.candidate_sampler) for g in genomes]
    return schedules, [ctx.costs.schedule(s) for s in schedules]


def equivalents(ctx: SearchContext, reference_cached: bool, random_mean: float) -> dict[str, float]:
    """The search's cost per phase in teacher-image equivalents: images generated x their MACs per image / the
    teacher's MACs per image (``T`` full steps), counted as :func:`estimate` counts seconds (the pruner's measured
    stop shares with rungs; ``random_mean``: the mean MACs of the space's random genomes, the initial candidates).
    Device-free: on a real model it says what the search costs in plain ``pipe(...)`` calls."""
    c = ctx.config
    teacher = ctx.costs.full * len(ctx.timesteps)
    rung = c.cuts[0] if c.cuts else None
    later = c.cuts[1] if rung and len(c.cuts) > 1 else c.n

    def kept(images: int) -> float:
        """Images a stoppable evaluation of ``images`` computes on average with rungs (the measured stop shares)."""
        if not rung:
            return images
        return STOPPED_AT_FIRST_RUNG * rung + STOPPED_LATER * min(later, images) + (1 - STOPPED_AT_FIRST_RUNG - STOPPED_LATER) * images

    replayed = c.reuse and c.sampler != PIPELINE
    plans = [s for s in ctx.baselines if not (replayed and s.meta.get("family") == "teacher")]
    baselines = sum(
        (c.n if s.meta.get("family") == "teacher" else c.n - BASELINES_STOPPED * (c.n - kept(c.n) if rung else 0)) * ctx.costs.schedule(s) / teacher
        for s in plans
    ) + c.n * len(ctx.peers)
    initial = min(c.trials, INITIAL)
    at_budgets = sum(ctx.budgets) / len(ctx.budgets)
    candidate = (initial * random_mean + (c.trials - initial) * at_budgets) / max(c.trials, 1) / teacher
    families = {s.meta.get("family") for s in ctx.baselines} - {"teacher"} | {r.family for r in ctx.peers}
    return {
        "reference": 0.0 if reference_cached else float(c.n),
        "baselines": baselines,
        "search": c.trials * kept(c.n) * candidate,
        "validation": c.validate_n * (1 + (c.validate_top + len(families)) * ctx.max_macs / teacher),
    }


def _per_image_step_seconds(ctx: SearchContext, batch: int) -> StepCosts:
    """Seconds per image of a full step and of a partial step at every branch, on a batch of ``batch`` images."""
    latency = measure_latency(ctx.model, batch_size=batch, repeats=3, warmup=1)
    return StepCosts(latency.full / batch, tuple(p / batch for p in latency.partial))


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``y = a x + b`` (a flat line through the mean when every x is equal)."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    a = sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
    return a, my - a * mx
