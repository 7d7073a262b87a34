"""``flexdiff search``: the Flexiffusion schedule search with the baselines beside it."""

from __future__ import annotations

from pathlib import Path

import typer

from flexdiff.cli._app import (
    CLIP,
    CONTROL_IMAGES,
    DEVICE,
    DTYPE,
    FEATURE_WEIGHTS,
    FRAMES,
    GUIDANCE,
    HEIGHT,
    INCEPTION,
    LABELS,
    MODEL,
    NEGATIVE_PROMPT,
    NO_REPORT,
    PIPELINE_KWARGS,
    PROMPTS,
    SAMPLER,
    SEARCH_FEATURES,
    SEED,
    TEACHER_STEPS,
    VARIANT,
    WIDTH,
    auto_features,
    call_options,
    choices,
    command,
    features_path,
    floats,
    ints,
)
from flexdiff.errors import FlexdiffError
from flexdiff.samplers import sampler_names

try:
    from flexdiff.search.strategies import strategy_names

    STRATEGY_HELP = f"search strategy: {choices(strategy_names())} (evolution = Flexiffusion's)"
except FlexdiffError as exc:  # the search extra is not installed: running the command says so in one line
    STRATEGY_HELP = f"search strategy ({exc.fix})"


def peer_names(text: str | None) -> tuple[str, ...]:
    """``--peers``: ``all`` (every registered peer) or a comma-separated list (checked with the config)."""
    if not text:
        return ()
    if text.strip() == "all":
        from flexdiff.search.peers import PEERS

        return tuple(PEERS.names())
    return tuple(name.strip() for name in text.split(",") if name.strip())


def rungs(text: str, n: int) -> tuple[int, ...]:
    """``--fidelity``: ``auto`` (the measured default ladder, its rungs below ``--n``), ``none``, or image counts."""
    from flexdiff.search.fidelity import DEFAULT_RUNGS

    if text.strip().lower() == "auto":
        return tuple(m for m in DEFAULT_RUNGS if m < n)
    return () if text.strip().lower() == "none" else ints(text, "--fidelity", 2, n - 1, "image counts")


@command
def search(
    out: Path = typer.Option(..., "--out", help="run folder: study.db, teacher cache, results.json, best.json, schedules/"),
    model: str = MODEL,
    sampler: str = SAMPLER,
    steps: int = TEACHER_STEPS,
    solver: str | None = typer.Option(
        None,
        "--solver",
        help=f"sampler the searched schedules run with on the teacher's steps (default: --sampler; one of {', '.join(sampler_names())}; ddim-2m = DDIM corrected to the teacher's error where it skips steps); DDIM-k and DeepCache are then also scored under it",
    ),
    speedup: float = typer.Option(3.0, "--speedup", help="target MACs speed-up: the budget is teacher MACs / X"),
    max_macs: float | None = typer.Option(None, "--max-macs", help="budget in MACs per sample (overrides --speedup)"),
    n: int | None = typer.Option(
        None,
        "--n",
        help="images (noises) each schedule is scored on during the search (default: 4, measured in docs/search.md, or one per prompt of --prompts if more)",
    ),
    objective: str = typer.Option(
        "paired",
        "--objective",
        help="what the search minimises on its --n images: paired (mean feature distance of each image to the teacher's from the same noise: unbiased at a few noises), or rfid (Flexiffusion's; use with --n 256)",
    ),
    trials: int = typer.Option(120, "--trials", help="searched schedules to evaluate (baselines come on top)"),
    strategy: str = typer.Option("evolution", "--strategy", help=STRATEGY_HELP),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL shared by workers (default: sqlite in OUT)"),
    study: str | None = typer.Option(None, "--study", help="study name (default: derived from the setup, so reruns resume)"),
    workers: int = typer.Option(1, "--workers", help="worker processes on this machine"),
    seed: int = SEED,
    segments: str | None = typer.Option(
        None, "--segments", help="segment counts the genome may use: a list (5,7,10) or a range (default 4-25, capped at --steps)"
    ),
    spacings: str = typer.Option(
        "1",
        "--spacings",
        help="segment-boundary powers the genome may use, e.g. 0.8,1,1.5: 1 = equal segments (Flexiffusion), >1 = shorter segments towards the clean end, <1 = towards the noisy end",
    ),
    forecast: bool = typer.Option(
        False,
        "--forecast",
        help="let each segment's partial steps forecast the reused feature from the last two full steps (TaylorSeer's first order) instead of replaying it",
    ),
    fidelity: str = typer.Option(
        "auto",
        "--fidelity",
        help="multi-fidelity evaluation: image counts (rungs, below --n) at which a candidate that cannot enter the front within a budget is stopped early, e.g. 16,64; auto: 16,64 (those below --n; measured: docs/search.md); none: every candidate on all --n",
    ),
    prune_margin: float | None = typer.Option(
        None,
        "--prune-margin",
        help="with rungs: stop a candidate when, within each budget at or above its MACs, a fully evaluated schedule had a paired distance this much lower (relative, at 64 images; scaled by sqrt(64/m) at m images; default 0.1, measured: docs/search.md; inf: record the rungs, stop nothing)",
    ),
    reuse: bool = typer.Option(
        True,
        "--reuse/--no-reuse",
        help="exact trajectory reuse: a candidate whose first steps equal an evaluated schedule's (the teacher's, a parent's) starts from that run (bit-identical; memory bounded by --reuse-mb)",
    ),
    reuse_mb: int = typer.Option(512, "--reuse-mb", help="with --reuse: MiB of stored runs per worker (least recently used go first)"),
    peers: str | None = typer.Option(
        None,
        "--peers",
        help="caching peers scored beside the baselines in the same study and table, at every setting of their sweep: all, or a comma-separated list (first-block-cache, taylorseer, pyramid-attention-broadcast, magcache; cache-dit-dbcache[-taylorseer] with the peers extra); transformers only",
    ),
    validate_n: int = typer.Option(
        16,
        "--validate-n",
        help="images per schedule in the final validation, on noises the search never saw: best.json is the lowest paired distance there "
        "(1000 for an rFID or FID that means something)",
    ),
    validate_top: int = typer.Option(2, "--validate-top", help="Pareto schedules re-scored in the final validation"),
    baseline_branches: str | None = typer.Option(None, "--baseline-branches", help="DeepCache baseline branches (default: all)"),
    all_baselines: bool = typer.Option(
        False,
        "--all-baselines",
        help="also score the baselines costlier than the budget (rows for context; by default they are skipped: neither a pick nor a parent)",
    ),
    features: str = SEARCH_FEATURES,
    batch_size: int | None = typer.Option(None, "--batch-size"),
    prompts: Path | None = PROMPTS,
    negative_prompt: str | None = NEGATIVE_PROMPT,
    guidance: float | None = GUIDANCE,
    labels: str | None = LABELS,
    control_images: Path | None = CONTROL_IMAGES,
    clip: Path | None = CLIP,
    inception: Path | None = INCEPTION,
    feature_weights: str | None = FEATURE_WEIGHTS,
    device: str = DEVICE,
    dtype: str | None = DTYPE,
    variant: str | None = VARIANT,
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    frames: int | None = FRAMES,
    pipeline_kwargs: str | None = PIPELINE_KWARGS,
    no_report: bool = NO_REPORT,
    dry_run: bool = typer.Option(False, "--dry-run", help="print the expected wall time (measured step costs x the settings) and stop; nothing is written"),
) -> None:
    """Flexiffusion search: the schedules closest to the teacher (rFID) for each cost, baselines beside."""
    from flexdiff.search.config import SearchConfig, default_segments
    from flexdiff.search.run import search as run_search
    from flexdiff.search.table import print_results

    if n is None:  # every prompt of the file is seen at least once (image i takes prompt i mod P)
        from flexdiff.models.conditioning import read_prompt_file

        n = max(SearchConfig.n, len(read_prompt_file(prompts)) if prompts else 0)
    config = SearchConfig(
        out=out,
        model=model,
        sampler=sampler,
        steps=steps,
        solver=solver,
        speedup=None if max_macs is not None else speedup,
        max_macs=max_macs,
        n=n,
        objective=objective,
        trials=trials,
        strategy=strategy,
        storage=storage,
        study=study,
        workers=workers,
        seed=seed,
        segments=ints(segments, "--segments", 1, steps, "segment counts") if segments else default_segments(steps),
        spacings=floats(spacings, "--spacings"),
        forecast=forecast,
        peers=peer_names(peers),
        fidelity=rungs(fidelity, n),
        **({"prune_margin": prune_margin} if prune_margin is not None else {}),
        reuse=reuse,
        reuse_mb=reuse_mb,
        features=auto_features(features, clip, inception),
        validate_n=validate_n,
        validate_top=validate_top,
        batch_size=batch_size,
        device=device,
        torch_dtype=dtype,
        variant=variant,
        baseline_branches=ints(baseline_branches, "--baseline-branches", 0, None, "branches") if baseline_branches else None,
        all_baselines=all_baselines,
        features_path=str(p) if (p := features_path(features, clip, inception, feature_weights)) else None,
        prompts=str(prompts) if prompts else None,
        negative_prompt=negative_prompt,
        guidance=guidance,
        labels=labels,
        control_images=str(control_images) if control_images else None,
        call_options=call_options(height, width, frames, pipeline_kwargs),
    )
    if dry_run:
        run_search(config, dry_run=True)
        return
    print_results(run_search(config))
    if not no_report:
        from flexdiff.report import write_run_report

        write_run_report(out, device=device)
