"""``flexdiff search``: the whole job from a model to a schedule file, a Pareto table and validated numbers.

Phases: teacher reference (cached) -> baselines -> strategy trials (Optuna; resumable, shareable by workers) ->
final validation of the Pareto schedules with more samples (rFID, FID against real data when the model has a
reference set, measured wall-clock) -> ``results.json``, ``best.json``, one schedule file per Pareto point.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from flexdiff.cost import StepCosts, measure_macs
from flexdiff.data import REAL_REFERENCE, load_images
from flexdiff.errors import FlexdiffError, output_folder
from flexdiff.features import FeatureNetwork, get_feature_network
from flexdiff.hooks import unet_layout
from flexdiff.metrics import frechet_distance
from flexdiff.models import DiffusionModel, load_model
from flexdiff.progress import progress_bar
from flexdiff.report.provenance import run_provenance
from flexdiff.sampling import generate, generate_scheduled, teacher_timesteps
from flexdiff.samplers import same_trajectory
from flexdiff.schedule import Schedule, ddim_k, deepcache_uniform, full
from flexdiff.search.evolution import Member, make_sampler, pareto_front
from flexdiff.search.reference import TeacherReference, load_or_build_reference, paired_distance, rfid
from flexdiff.search.space import GenomeSpace
from flexdiff.search.study import EXHAUSTED_AFTER, evaluated, open_storage, open_study, run_baselines, run_search



@dataclass(frozen=True)
class SearchConfig:
    out: Path
    model: str = "builtin:digits"
    sampler: str = "ddim"  # the teacher's sampler (its reference images, the classic baselines)
    steps: int = 50
    solver: str | None = None  # the sampler searched schedules run with on the teacher's grid; None = ``sampler`` (the paper)
    speedup: float | None = 3.0
    max_macs: float | None = None
    elite_speedups: tuple[float, ...] = ()  # further budgets the evolution keeps an elite for (benchmarks over several budgets)
    n: int = 256
    trials: int = 100
    strategy: str = "evolution"
    storage: str | None = None
    study: str | None = None
    workers: int = 1
    seed: int = 0
    segments: tuple[int, ...] = tuple(range(4, 26))  # every count from 4 to 25: DDIM-k (k in range) are genomes; fine cost steps
    spacings: tuple[float, ...] = (1.0,)  # segment-boundary powers (Genome.segment_lengths); (1.0,) = the paper's equal segments (benchmarks/spacing.py)
    features: str = "digits"
    features_path: str | None = None  # local weights of the feature network (--clip DIR / --inception FILE)
    prompts: str | None = None  # prompt file of a text-to-image pipeline (flexdiff.pipelines)
    negative_prompt: str | None = None
    guidance: float | None = None  # None: 7.5 with prompts, else 1 (no guidance)
    labels: str | None = None  # class labels "0,3,7" of a class-conditional UNet (default: round-robin)
    validate_n: int = 1000
    validate_top: int = 6
    reference: str | None = None  # real images for FID; default: the built-in model's held-out set
    baseline_intervals: tuple[int, ...] = (2, 3, 4, 5, 6)
    baseline_branches: tuple[int, ...] | None = None  # None = every branch
    ddim_ks: tuple[int, ...] = (5, 8, 10, 13, 17, 20, 25)
    batch_size: int | None = None
    device: str = "cpu"
    progress: bool = True

    @property
    def candidate_sampler(self) -> str:
        return self.solver or self.sampler

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


@dataclass
class SearchContext:
    """Everything one worker needs, built once per process."""

    config: SearchConfig
    model: DiffusionModel
    timesteps: list[int]
    net: FeatureNetwork
    costs: StepCosts
    space: GenomeSpace
    reference: TeacherReference
    baselines: list[Schedule] = field(default_factory=list)

    @property
    def max_macs(self) -> float:
        c = self.config
        if c.max_macs is not None:
            return float(c.max_macs)
        return self.costs.full * len(self.timesteps) / (c.speedup or 1.0)

    @property
    def study_name(self) -> str:
        c = self.config
        conditioned = f"-c{self.reference.key.conditioning[-8:]}" if self.reference.key.conditioning else ""
        solver = f"-{c.candidate_sampler}" if c.candidate_sampler != c.sampler else ""
        return c.study or f"flexdiff-{self.reference.key.model[:10]}{conditioned}-{c.sampler}{c.steps}{solver}-n{c.n}-seed{c.seed}-{c.strategy}"

    def fingerprint(self) -> dict[str, Any]:
        k = self.reference.key
        latent = {name: getattr(k, name) for name in ("decoder", "conditioning") if getattr(k, name)}  # absent for pixel models, as before
        spacings = {"spacings": list(self.space.spacings)} if self.space.spacings != (1.0,) else {}  # absent for equal segments, as before
        solver = {"solver": self.config.candidate_sampler} if self.config.candidate_sampler != k.sampler else {}  # absent without --solver, as before
        return {"model": k.model, "sampler": k.sampler, "T": len(k.timesteps), "seed": k.seed, "n": k.n, "features": k.features, "segments": list(self.space.segment_counts), **spacings, **solver, **latent}

    def evaluate(self, schedule: Schedule) -> dict[str, Any]:
        """Generate from the reference noise with ``schedule``; rFID and the paired distance to the teacher."""
        start = time.perf_counter()
        images = generate_scheduled(self.model, schedule, self.reference.noise, batch_size=self.config.batch_size)
        wall = time.perf_counter() - start
        feats = self.net(images)
        macs = self.costs.schedule(schedule)
        return {
            "sampler": schedule.sampler, "macs": macs, "macs_speedup": round(self.costs.full * schedule.T / max(macs, 1), 4), "wall_seconds": round(wall, 4),
            "rfid": round(rfid(feats, self.reference.features), 5), "paired": round(paired_distance(feats, self.reference.features), 5),
        }

    def propose(self, trial: Any) -> Schedule:
        return self.space.suggest(trial).expand(self.timesteps, self.config.candidate_sampler)

    def genome_key(self, genome: Any) -> str:
        return genome.expand(self.timesteps, self.config.candidate_sampler).key


def baseline_schedules(timesteps: list[int], sampler: str, num_branches: int, config: SearchConfig) -> list[Schedule]:
    """The teacher, DDIM-k and DeepCache uniform N at every branch (or ``baseline_branches``), under the teacher's
    sampler; with a different ``--solver``, DDIM-k's and DeepCache's step plans once more under the solver (named
    ``ddim-25+dpmpp-2m``, family ``ddim+dpmpp-2m``), so searched schedules also meet the baselines of their own solver.
    A plan the solver runs exactly as the sampler does (DeepCache's under ddim-2m) is not scored twice."""
    T = len(timesteps)
    branches = config.baseline_branches if config.baseline_branches is not None else tuple(range(num_branches))
    classic = [ddim_k(timesteps, k, sampler) for k in config.ddim_ks if k < T]
    classic += [deepcache_uniform(timesteps, n, b, sampler) for n in config.baseline_intervals if n <= T for b in branches if b < num_branches]
    solver = config.candidate_sampler
    under_solver = [_under(s, solver) for s in classic if not same_trajectory(sampler, solver, s.active_timesteps, timesteps)]
    return [full(timesteps, sampler), *classic, *under_solver]


def _under(schedule: Schedule, sampler: str) -> Schedule:
    """The same step plan run with ``sampler``, named so tables tell the two apart."""
    meta = {**schedule.meta, "family": f"{schedule.meta['family']}+{sampler}"}
    return Schedule(schedule.steps, schedule.timesteps, sampler, f"{schedule.name}+{sampler}", meta)


STRATEGIES = ("evolution", "nsga2", "random")


def check_config(config: SearchConfig) -> None:
    """Every option that can be checked without work, checked before any work (no half-done run on a typo)."""
    from flexdiff.samplers import get_sampler

    get_sampler(config.sampler)
    if config.solver is not None:
        get_sampler(config.solver, fix="pick one with --solver")
    if config.strategy not in STRATEGIES:
        raise FlexdiffError(config.strategy, f"a strategy {', '.join(STRATEGIES)}", "pick one with --strategy")
    if config.n < 2 or config.validate_n < 2:
        raise FlexdiffError(f"--n {config.n} / --validate-n {config.validate_n}", "at least 2 images (rFID needs two per side)", "pass a larger --n")
    if config.trials < 0:
        raise FlexdiffError(config.trials, "--trials >= 0", "pass the number of schedules to evaluate")
    if config.workers < 1:
        raise FlexdiffError(config.workers, "--workers >= 1", "pass the number of worker processes")
    if config.speedup is not None and not 1 <= config.speedup < math.inf:  # written so that NaN fails too
        raise FlexdiffError(f"--speedup {config.speedup}", "a target speed-up >= 1", "pass e.g. --speedup 3")
    if config.max_macs is not None and not 0 < config.max_macs < math.inf:
        raise FlexdiffError(f"--max-macs {config.max_macs}", "a positive MACs budget per sample", "see `flexdiff inspect` for the full-step MACs")
    if config.validate_top < 1:
        raise FlexdiffError(f"--validate-top {config.validate_top}", "at least 1 Pareto schedule to re-score", "pass e.g. --validate-top 6")
    GenomeSpace(config.steps, config.segments, 1, config.spacings)  # segment counts in [1, T], positive spacings
    get_feature_network(config.features, path=config.features_path)
    check_conditioning_options(config)
    if config.storage is not None:
        open_storage(config.storage)  # a user's URL: reachable? (the default SQLite file is created with the run)


def check_conditioning_options(config: SearchConfig) -> None:
    """Prompt file, labels and guidance checked before any work (the model decides later whether it takes them)."""
    from flexdiff.pipelines import check_guidance, parse_labels, read_prompt_file

    if config.prompts is not None:
        read_prompt_file(config.prompts)
    if config.labels is not None:
        parse_labels(config.labels, None)
    check_guidance(config.guidance)


def build_context(config: SearchConfig) -> SearchContext:
    from flexdiff.pipelines import condition

    model = load_model(config.model, config.device)
    condition(model, prompts=config.prompts, negative_prompt=config.negative_prompt, guidance=config.guidance, labels=config.labels)
    timesteps = teacher_timesteps(model, config.sampler, config.steps)
    net = get_feature_network(config.features, model.device, config.features_path)
    num_branches = unet_layout(model.unet).num_branches
    space = GenomeSpace(len(timesteps), tuple(sorted(set(config.segments))), num_branches, tuple(sorted(set(config.spacings))))
    costs = measure_macs(model)
    n_batches = -(-config.n // (config.batch_size or config.n))
    with progress_bar("teacher reference", len(timesteps) * n_batches, enabled=config.progress) as advance:
        reference, status = load_or_build_reference(model, config.sampler, timesteps, config.seed, config.n, net, config.out, config.batch_size, on_step=advance)
    if config.progress and status != "reused":
        print(f"teacher reference {status} ({config.n} images)")
    ctx = SearchContext(config, model, timesteps, net, costs, space, reference)
    ctx.baselines = baseline_schedules(timesteps, config.sampler, num_branches, config)
    return ctx


def work(config: SearchConfig, context: SearchContext | None = None) -> None:
    """One worker: the baselines, then strategy trials until the study holds ``trials`` evaluated schedules."""
    ctx = context or build_context(config)
    storage = open_storage(config.storage_url)
    baseline_study = open_study(storage, ctx.study_name + ":baselines", make_sampler("random", ctx.space, ctx.genome_key, None, config.seed), ctx.fingerprint())
    with progress_bar("baselines", len(ctx.baselines), enabled=config.progress) as advance:
        advance(len({t.user_attrs.get("key") for t in evaluated(baseline_study)} & {s.key for s in ctx.baselines}))
        run_baselines(baseline_study, ctx.baselines, ctx.evaluate, on_done=advance)
    budgets = [ctx.max_macs] + [ctx.costs.full * len(ctx.timesteps) / x for x in config.elite_speedups]
    sampler = make_sampler(config.strategy, ctx.space, ctx.genome_key, budgets, config.seed, seeds=baseline_seeds(ctx, baseline_study))
    study = open_study(storage, ctx.study_name, sampler, ctx.fingerprint())
    known = {t.user_attrs["key"]: (float(t.values[0]), float(t.values[1])) for t in evaluated(baseline_study)}
    with progress_bar(f"search ({config.strategy})", config.trials, enabled=config.progress) as advance:
        advance(min(config.trials, len(evaluated(study))))
        complete = run_search(study, config.trials, ctx.propose, ctx.evaluate, on_done=advance, known=known)
    if not complete and config.progress:
        print(f"search stopped at {len(evaluated(study))} of {config.trials} trials: the {config.strategy} strategy proposed only schedules already "
              f"evaluated (or baselines) {EXHAUSTED_AFTER} times in a row; the space of --steps/--segments/--spacings holds no more for it")


def baseline_seeds(ctx: SearchContext, baseline_study: Any) -> list[tuple[Member, str]]:
    """The evaluated baselines that are genomes (DDIM-k, DeepCache whose interval fits the segments), with their keys."""
    seeds = []
    for t in evaluated(baseline_study):
        row = t.user_attrs["result"]
        schedule = _schedule_of(ctx, row)
        if schedule.sampler != ctx.config.candidate_sampler:
            continue  # a plan under another sampler is not a point of the searched space
        genome = ctx.space.genome_of(schedule)
        if genome is not None:
            seeds.append((Member(str(genome), float(row["macs"]), float(row["rfid"])), t.user_attrs["key"]))
    return seeds


def _worker_main(config_json: dict[str, Any], threads: int) -> None:
    torch.set_num_threads(threads)
    config = SearchConfig(**{**config_json, "out": Path(config_json["out"]), "segments": tuple(config_json["segments"]), "spacings": tuple(config_json["spacings"]), "progress": False,
                             "baseline_intervals": tuple(config_json["baseline_intervals"]), "ddim_ks": tuple(config_json["ddim_ks"]),
                             "elite_speedups": tuple(config_json["elite_speedups"]),
                             "baseline_branches": tuple(config_json["baseline_branches"]) if config_json["baseline_branches"] is not None else None})
    work(config)


def trial_rows(ctx: SearchContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(baseline rows, searched rows) of every evaluated trial, from the studies."""
    storage = open_storage(ctx.config.storage_url)
    import optuna

    rows = []
    for name, kind in ((ctx.study_name + ":baselines", "baseline"), (ctx.study_name, "searched")):
        study = optuna.load_study(study_name=name, storage=storage)
        rows += [{"trial": t.number, "kind": kind, "key": t.user_attrs["key"], **t.user_attrs["result"]} for t in evaluated(study)]
    return [r for r in rows if r["kind"] == "baseline"], [r for r in rows if r["kind"] == "searched"]


def _file_name(name: str, limit: int = 120) -> str:
    """``NAME.json``; a name too long for a file system (a genome of many segments) is cut and given a digest of itself."""
    if len(name) <= limit:
        return f"{name}.json"
    return f"{name[:limit - 13]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}.json"


def _schedule_of(ctx: SearchContext, row: dict[str, Any]) -> Schedule:
    from flexdiff.schedule import Step

    meta = {"family": row["family"], **({"genome": row["genome"]} if row.get("genome") else {})}
    return Schedule(tuple(Step.parse(s) for s in row["steps"]), tuple(ctx.timesteps), row.get("sampler", ctx.config.sampler), row["name"], meta)


def validate(ctx: SearchContext, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Re-score ``rows`` with ``validate_n`` images: rFID, paired, FID vs real data, wall-clock vs the plain teacher loop."""
    c = ctx.config
    noise = ctx.model.initial_noise(c.validate_n, c.seed)
    real_source = c.reference or REAL_REFERENCE.get(c.model)
    real = ctx.net(load_images(real_source)) if real_source else None
    total = 1 + len(rows)
    with progress_bar(f"validation ({c.validate_n} images)", total, enabled=c.progress) as advance:
        start = time.perf_counter()
        teacher_images = generate(ctx.model, noise, ctx.timesteps, c.sampler, batch_size=c.batch_size).clamp(-1, 1)
        teacher_wall = time.perf_counter() - start
        teacher_feats = ctx.net(teacher_images)
        advance()
        teacher = {"name": f"teacher ({c.sampler}-{len(ctx.timesteps)})", "wall_seconds": round(teacher_wall, 3), "macs": ctx.costs.full * len(ctx.timesteps),
                   "fid": round(frechet_distance(real, teacher_feats), 4) if real is not None else None, "real_reference": real_source}
        out = []
        for row in rows:
            schedule = _schedule_of(ctx, row)
            start = time.perf_counter()
            images = generate_scheduled(ctx.model, schedule, noise, batch_size=c.batch_size)
            wall = time.perf_counter() - start
            feats = ctx.net(images)
            out.append({**{k: row[k] for k in ("kind", "name", "family", "genome", "macs", "macs_speedup")}, "sampler": schedule.sampler,
                        "search_rfid": row["rfid"], "rfid": round(rfid(feats, teacher_feats), 5), "paired": round(paired_distance(feats, teacher_feats), 5),
                        "fid": round(frechet_distance(real, feats), 4) if real is not None else None,
                        "wall_seconds": round(wall, 3), "wall_speedup": round(teacher_wall / wall, 4), "steps": row["steps"]})
            advance()
    return teacher, out


def choose_for_validation(ctx: SearchContext, baselines: list[dict[str, Any]], searched: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Pareto schedules (searched, nearest the budget first, ``validate_top`` of them) and, per baseline family,
    the best baseline within the budget."""
    budget = ctx.max_macs
    front = [searched[i] for i in pareto_front([(r["macs"], r["rfid"]) for r in searched])]
    within = sorted([r for r in front if r["macs"] <= budget], key=lambda r: -r["macs"])
    beyond = sorted([r for r in front if r["macs"] > budget], key=lambda r: r["macs"])
    picked = (within + beyond)[: ctx.config.validate_top]
    for family in sorted({r["family"] for r in baselines} - {"teacher"}):
        candidates = [r for r in baselines if r["family"] == family and r["macs"] <= budget]
        if candidates:
            picked.append(min(candidates, key=lambda r: r["rfid"]))
    return picked


def search(config: SearchConfig, report: bool = True) -> dict[str, Any]:
    """Run (or resume) a search and write its artefacts (and ``OUT/report.html`` unless ``report`` is false); returns the results dictionary."""
    check_config(config)
    output_folder(config.out)
    ctx = build_context(config)  # builds the teacher reference once, before any worker starts
    workers = []
    if config.workers > 1:
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        spawn = multiprocessing.get_context("spawn")
        workers = [spawn.Process(target=_worker_main, args=(config.to_json(), threads)) for _ in range(config.workers - 1)]
        for p in workers:
            p.start()
        torch.set_num_threads(threads)
    work(config, ctx)
    for p in workers:
        p.join()
        if p.exitcode != 0:
            raise FlexdiffError(f"worker pid {p.pid} exit code {p.exitcode}", "every worker to finish", "rerun the same command to resume")
    baselines, searched = trial_rows(ctx)
    teacher, validated = validate(ctx, choose_for_validation(ctx, baselines, searched))
    results = write_results(ctx, baselines, searched, teacher, validated)
    if report:
        from flexdiff.report import write_run_report

        write_run_report(config.out, device=config.device, progress=config.progress)
    return results


def write_results(ctx: SearchContext, baselines: list[dict[str, Any]], searched: list[dict[str, Any]], teacher: dict[str, Any], validated: list[dict[str, Any]]) -> dict[str, Any]:
    c, out = ctx.config, ctx.config.out
    budget = ctx.max_macs
    within = [r for r in validated if r["macs"] <= budget]
    best = min(within, key=lambda r: (r["rfid"], r["macs"])) if within else None
    everything = baselines + searched
    front = [everything[i] for i in pareto_front([(r["macs"], r["rfid"]) for r in everything])]
    # the artefacts describe this run's front and budget only: files of an earlier run in OUT (a point since
    # dominated, a best for another --speedup) are removed once the new ones are written
    schedules_dir = out / "schedules"
    schedules_dir.mkdir(exist_ok=True)
    files = {schedules_dir / _file_name(row["name"]): row for row in front}
    for path, row in files.items():
        _schedule_of(ctx, row).save(path)
    for path in schedules_dir.glob("*.json"):
        if path not in files:
            path.unlink()
    if best is not None:
        _schedule_of(ctx, best).save(out / "best.json")
    else:
        (out / "best.json").unlink(missing_ok=True)
    results = {
        "config": c.to_json(), "study": ctx.study_name, "storage": c.storage_url, "teacher": teacher,
        "full_step_macs": ctx.costs.full, "partial_step_macs": list(ctx.costs.partial), "budget_macs": budget,
        "budget_speedup": round(ctx.costs.full * len(ctx.timesteps) / budget, 4),
        "best": best, "validated": validated, "pareto": [{k: r[k] for k in ("kind", "name", "macs", "macs_speedup", "rfid", "paired")} for r in front],
        "trials": {"baselines": baselines, "searched": searched},
        **run_provenance(out / "results.json"),  # command(s), versions, machine: what produced these numbers
    }
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(out / "results.json")
    return results
