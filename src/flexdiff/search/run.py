"""``flexdiff search``: the whole job from a model to a schedule file, a Pareto table and validated numbers.

Phases: teacher reference (cached) -> baselines -> strategy trials (Optuna; resumable, shareable by workers) ->
final validation of the Pareto schedules with more samples (rFID, FID against real data when the model has a
reference set, measured wall-clock) -> ``results.json``, ``best.json``, one schedule file per Pareto point.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import torch

from flexdiff.errors import FlexdiffError, output_folder
from flexdiff.schedule import Schedule
from flexdiff.search.artefacts import schedule_of_row, write_results
from flexdiff.search.config import SearchConfig, check_config
from flexdiff.search.context import SearchContext, build_context
from flexdiff.search.estimate import estimate
from flexdiff.search.fidelity import FrontPruner
from flexdiff.search.strategies import make_sampler
from flexdiff.search.strategies.evolution import Member
from flexdiff.search.study import (
    EXHAUSTED_AFTER,
    INTERRUPT,
    done,
    evaluated,
    open_storage,
    open_study,
    pruned,
    run_baselines,
    run_search,
    spent,
)
from flexdiff.search.validation import choose_for_validation, validate
from flexdiff.utils.progress import progress_bar


def work(config: SearchConfig, context: SearchContext | None = None, phases: dict[str, float] | None = None) -> None:
    """One worker: the baselines, then strategy trials until the study holds ``trials`` evaluated schedules.
    ``phases`` gets the wall seconds of each (``baselines``, ``search``)."""
    phases = {} if phases is None else phases
    began = time.perf_counter()
    ctx = context or build_context(config)
    storage = open_storage(config.storage_url)
    baseline_study = open_study(storage, ctx.study_name + ":baselines", make_sampler("random", ctx.space, ctx.genome_key, None, config.seed), ctx.fingerprint())
    finished = {t.user_attrs.get("key") for t in done(baseline_study)}
    budgets = ctx.budgets
    if config.cuts:  # plan baselines meet each other on the rungs too, the cheapest first (search/fidelity.py)
        ctx.pruner = FrontPruner(config.prune_margin, budgets=budgets)
    with progress_bar("baselines", len(ctx.baselines), enabled=config.progress) as advance:
        advance(len(finished & {s.key for s in ctx.baselines}))
        run_baselines(baseline_study, cheapest_first(ctx), ctx.evaluate, on_done=advance)
    if ctx.peers:
        with progress_bar("peers", len(ctx.peers), enabled=config.progress) as advance:
            advance(len(finished & {r.key for r in ctx.peers}))
            run_baselines(baseline_study, ctx.peers, lambda run, _: ctx.evaluate_peer(run), on_done=advance)
    phases["baselines"] = time.perf_counter() - began
    began = time.perf_counter()
    sampler = make_sampler(config.strategy, ctx.space, ctx.genome_key, budgets, config.seed, seeds=baseline_seeds(ctx, baseline_study))
    study = open_study(storage, ctx.study_name, sampler, ctx.fingerprint())
    known = {t.user_attrs["key"]: (float(t.values[0]), float(t.values[1])) for t in evaluated(baseline_study)}
    if config.cuts:  # candidates meet the baselines and each other on the rungs (search/fidelity.py)
        ctx.pruner = FrontPruner(config.prune_margin, [t.user_attrs["result"] for t in evaluated(baseline_study)], budgets)
    with progress_bar(f"search ({config.strategy})", config.trials, enabled=config.progress) as advance:
        advance(min(config.trials, spent(study)))
        complete = run_search(study, config.trials, ctx.propose, ctx.evaluate, on_done=advance, known=known)
    phases["search"] = time.perf_counter() - began
    if not complete and config.progress:
        print(
            f"search stopped at {spent(study)} of {config.trials} trials: the {config.strategy} strategy proposed only schedules already "
            f"evaluated (or baselines) {EXHAUSTED_AFTER} times in a row; the space of --steps/--segments/--spacings holds no more for it"
        )


def cheapest_first(ctx: SearchContext) -> list[Schedule]:
    """The plan baselines by MACs, at equal MACs those of the searched schedules' solver first: on the rungs a
    baseline can only be stopped by a cheaper (or equal) one evaluated before it."""
    return sorted(ctx.baselines, key=lambda s: (ctx.costs.schedule(s), s.sampler != ctx.config.candidate_sampler))


def check_studies(ctx: SearchContext) -> None:
    """Open (or create) both studies of the search under its fingerprint: refused when one exists for other settings."""
    storage = open_storage(ctx.config.storage_url)
    for name in (ctx.study_name + ":baselines", ctx.study_name):
        open_study(storage, name, None, ctx.fingerprint())


def baseline_seeds(ctx: SearchContext, baseline_study: Any) -> list[tuple[Member, str]]:
    """The evaluated plan baselines as genomes, with their keys: themselves when segment-shaped (DDIM-k, DeepCache
    whose interval fits the segments), else their nearest genome (``projected``)."""
    seeds = []
    for t in evaluated(baseline_study):
        row = t.user_attrs["result"]
        if row.get("steps") is None:
            continue  # a caching peer: no plan, not a point of the searched space
        schedule = schedule_of_row(row, ctx.timesteps, ctx.config.sampler)
        if schedule.sampler != ctx.config.candidate_sampler:
            continue  # a plan under another sampler is not a point of the searched space
        genome = ctx.space.nearest_genome(schedule)
        if genome is not None:
            projected = ctx.genome_key(genome) != schedule.key
            seeds.append((Member(str(genome), float(row["macs"]), float(row["rfid"]), projected, row.get("paired")), t.user_attrs["key"]))
    return seeds


def _worker_main(config_json: dict[str, Any], threads: int) -> None:
    torch.set_num_threads(threads)
    with INTERRUPT.armed():  # Ctrl-C reaches the whole process group: each worker records its evaluation in flight, then stops
        work(SearchConfig.from_json(config_json, progress=False))


def trial_rows(ctx: SearchContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(baseline rows, searched rows) of every evaluated trial, from the studies; the baseline rows include the caching
    peers' (``kind`` peer)."""
    storage = open_storage(ctx.config.storage_url)
    import optuna

    rows = []
    for name, kind in ((ctx.study_name + ":baselines", "baseline"), (ctx.study_name, "searched")):
        study = optuna.load_study(study_name=name, storage=storage)
        rows += [{"trial": t.number, "kind": kind, "key": t.user_attrs["key"], **t.user_attrs["result"]} for t in evaluated(study)]
    return [r for r in rows if r["kind"] != "searched"], [r for r in rows if r["kind"] == "searched"]


def pruned_rows(ctx: SearchContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The partial scores (``pruned_at``, ``rungs``, ``paired_rungs``) of every candidate the multi-fidelity pruner
    stopped: (plan baselines, searched candidates)."""
    storage = open_storage(ctx.config.storage_url)
    return tuple(
        [
            {"trial": t.number, "kind": "pruned", "key": t.user_attrs["key"], **t.user_attrs["result"]}
            for t in pruned(open_study(storage, name, None, ctx.fingerprint()))
        ]
        for name in (ctx.study_name + ":baselines", ctx.study_name)
    )


def search(config: SearchConfig, dry_run: bool = False) -> dict[str, Any]:
    """Run (or resume) a search and write its artefacts; returns the results dictionary (the CLI writes the report).
    The expected wall time is printed first (:mod:`flexdiff.search.estimate`); ``dry_run`` stops there, having
    written nothing, and returns ``{"estimate": ...}``."""
    check_config(config, connect=not dry_run)
    output_folder(config.out, create=False, staged=True)  # a file in the way (or a read-only place to stage in) is one line before any work
    began = time.perf_counter()
    ctx = build_context(config, reference=False)
    expected = estimate(ctx, ctx.load_reference(build=False), time.perf_counter() - began)
    ctx.expected_images = {k: round(v, 1) for k, v in expected.images.items()}
    if config.progress or dry_run:
        print("\n".join(expected.lines()))
    if dry_run:
        return {
            "estimate": {
                "seconds": round(expected.total, 1),
                "phases": {k: round(v, 1) for k, v in expected.phases.items()},
                "search_low_seconds": expected.search_low,
                "search_high_seconds": expected.search_high,
                "probe": expected.probe,
                "teacher_image_equivalents": ctx.expected_images,
            }
        }
    output_folder(config.out)
    check_studies(ctx)  # a study made for other settings is refused before the teacher cache could be rebuilt over another run's
    phases = {"setup": time.perf_counter() - began}  # this process's wall seconds per phase (a resumed run: what it did this time)
    began = time.perf_counter()
    ctx.load_reference()  # the teacher reference once, before any worker starts
    phases["reference"] = time.perf_counter() - began
    workers = []
    if config.workers > 1:
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        spawn = multiprocessing.get_context("spawn")
        workers = [spawn.Process(target=_worker_main, args=(config.to_json(), threads)) for _ in range(config.workers - 1)]
        for p in workers:
            p.start()
        torch.set_num_threads(threads)
    with INTERRUPT.armed():
        work(config, ctx, phases)
    INTERRUPT.check()  # Ctrl-C: the evaluation in flight was recorded; stop here (exit 130), resumable
    for p in workers:
        p.join()
        if p.exitcode != 0:
            raise FlexdiffError(f"worker pid {p.pid} exit code {p.exitcode}", "every worker to finish", "rerun the same command to resume")
    began = time.perf_counter()
    baselines, searched = trial_rows(ctx)
    teacher, validated = validate(ctx, choose_for_validation(ctx, baselines, searched))
    phases["validation"] = time.perf_counter() - began
    return write_results(ctx, baselines, searched, teacher, validated, pruned_rows(ctx), {k: round(v, 2) for k, v in phases.items()})
