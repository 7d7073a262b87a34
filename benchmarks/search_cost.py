"""The same search with and without the cheap-search machinery: multi-fidelity pruning (``--fidelity``, a finite
``--prune-margin``) and exact trajectory reuse (``--reuse``), on the built-in UNet, at several search seeds.

Every run is a complete ``flexdiff search`` (same strategy, budgets, trial count, baselines; for each search seed in
``--search-seeds`` once per mode, each in a fresh run folder, so the teacher reference is built every time), timed
from start to results.json, with the wall seconds of each phase as ``results.json`` records them. The exhaustive
runs record their rungs (``--record-rungs``) with ``--prune-margin inf``: no candidate is stopped and no batch cut
(every candidate on all ``--n`` images in one batch, as without ``--fidelity``), but each evaluation keeps the rFID
and paired distance of its first 8 / 16 / 32 / 64 / 128 images, so the pruning rule can be replayed over the
exhaustive studies afterwards (:func:`flexdiff.search.fidelity.dominated`: baselines cheapest first, then the trials
in their order, a stopped one never a reference, within the search's budgets): per ladder and margin, how many
candidates and baselines it would stop, the image share it would evaluate, and how many of its stops are *false* (a
candidate whose full rFID was the best within one of its budgets). That table is how the default ladder and margin
are chosen.

Before each run its ``--dry-run`` estimate is taken and reported beside the measured time, per phase (for the fast
runs the point estimate, with its range: every candidate stopped at the first rung .. none stopped). The speed-up is
the exhaustive runs' total wall time over the fast runs' (and per seed). Then per budget 1/2 .. 1/5 each run's pick
by search rFID within the budget — ``best``: among everything it evaluated in full (what ``best.json`` answers; a
baseline's plan may win), ``searched``: among its searched schedules only — is re-scored on ``--validate-n`` images
of each seed in ``--validate-seeds`` (noise no search saw; rFID against the teacher's images from the same noise,
FID against the held-out digits). A search's result varies with its seed (its noise and its evolution's draws), so
the spread compared is over the search seeds: the fast picks are *within the seed spread* of the exhaustive ones
when their mean is at most the exhaustive picks' mean plus two standard deviations of them (rFID and FID each). The
searches' own final validation runs on ``--search-validate-n`` images (the demo's 256).

``--modes`` runs one mode at a time (each run's timing is kept beside its study as ``cost_run.json``), so the two
can be run, and the fast runs redone, separately on the same quiet machine:

    python benchmarks/search_cost.py --out benchmarks/results/search_cost.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import int_ranges, write_result

from flexdiff.search.config import SearchConfig
from flexdiff.search.context import build_context
from flexdiff.search.estimate import estimate
from flexdiff.search.fidelity import DEFAULT_MARGIN, DEFAULT_RUNGS, dominated
from flexdiff.search.run import search, trial_rows
from flexdiff.search.validation import validate

BUDGETS = ("1/2", "1/3", "1/4", "1/5")
#: what is compared per budget: the best schedule the search evaluated in full (a baseline's plan too), the best searched one
KINDS = ("best", "searched")
#: a finished run's timing, beside its study (``--modes``)
RECORD = "cost_run.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--solver", default="ddim-2m")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--fidelity", default=",".join(map(str, DEFAULT_RUNGS)), help="the fast search's rungs")
    parser.add_argument("--record-rungs", default="8,16,32,64,128", help="the rungs the exhaustive search records (nothing stopped) for the pruner replay")
    parser.add_argument("--prune-margin", type=float, default=DEFAULT_MARGIN)
    parser.add_argument("--margins", default="0.05,0.07,0.1,0.15,0.2", help="margins replayed over the exhaustive studies")
    parser.add_argument(
        "--ladders", default="16,64;8,64;16,32;32,128;16,64,128", help="rung ladders replayed over the exhaustive studies (';' between ladders)"
    )
    parser.add_argument("--search-seeds", default="0,1,2", help="each search is run once per seed, in both modes: the spread of what a search finds")
    parser.add_argument("--validate-n", type=int, default=1000)
    parser.add_argument("--validate-seeds", default="100", help="the noise the picks are re-scored on (apart from every search's own noise)")
    parser.add_argument("--search-validate-n", type=int, default=256, help="the searches' own final validation")
    parser.add_argument("--baseline-branches", default="0,1")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/search_cost"))
    parser.add_argument(
        "--modes",
        default="exhaustive,fast",
        help="the searches to run now (every search seed); the others' timings and studies are read from "
        "their run folders (an earlier invocation on this machine with the same settings), so the two can run at different times",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_cost.json"))
    parser.add_argument(
        "--refresh-estimates",
        action="store_true",
        help="only take each run's --dry-run estimate again (after a change to the estimate) and "
        "update it in --out beside the recorded wall time; nothing is searched or validated",
    )
    args = parser.parse_args()

    seeds = [int(s) for s in args.search_seeds.split(",")]
    base = SearchConfig(
        objective="rfid",
        all_baselines=True,
        out=args.run_dir,
        model=args.model,
        sampler=args.sampler,
        solver=args.solver,
        steps=args.steps,
        n=args.n,
        trials=args.trials,
        seed=0,
        speedup=3.0,
        elite_speedups=(2.0, 3.0, 4.0, 5.0),
        validate_n=args.search_validate_n,
        validate_top=2,
        fidelity=tuple(int_ranges(args.record_rungs)),
        prune_margin=float("inf"),
        baseline_branches=int_ranges(args.baseline_branches),
        segments=tuple(range(4, min(26, args.steps + 1))),
    )
    modes = {"exhaustive": base, "fast": replace(base, fidelity=tuple(int_ranges(args.fidelity)), prune_margin=args.prune_margin, reuse=True)}
    configs = {(mode, seed): replace(config, out=args.run_dir / f"{mode}-seed{seed}", seed=seed) for mode, config in modes.items() for seed in seeds}
    if args.refresh_estimates:
        refresh_estimates(args.out, configs)
        return
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    rerun = [key for key in configs if key[0] in args.modes.split(",")]
    missing = []
    for key in set(configs) - set(rerun):  # a run of an earlier invocation (same machine, same settings): its record
        record = configs[key].out / RECORD
        if record.is_file():
            runs[key] = json.loads(record.read_text())
        else:
            missing.append(name(key))
    expectations = {}
    for key in rerun:  # the estimates first (what --dry-run prints): the process is warm before any run
        config = configs[key]
        shutil.rmtree(config.out, ignore_errors=True)
        start = time.perf_counter()
        expectations[key] = estimate(build_context(config, reference=False), False, time.perf_counter() - start)
    for key in rerun:
        config, expected = configs[key], expectations[key]
        start = time.perf_counter()
        results = search(config)
        wall = time.perf_counter() - start
        runs[key] = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seed": key[1],
            "wall_seconds": round(wall, 1),
            **estimate_fields(expected, wall),
            "phase_seconds": results["phase_seconds"],
            "searched": len(results["trials"]["searched"]),
            "pruned": len(results["trials"]["pruned"]),
            "reuse": results.get("reuse"),
            "evaluations_seconds": round(sum(r.get("wall_seconds", 0.0) for r in results["trials"]["searched"] + results["trials"]["pruned"]), 1),
        }
        (config.out / RECORD).write_text(json.dumps(runs[key], indent=1))
        print(f"{name(key)}: {wall:.0f} s (estimate {expected.total:.0f} s), {runs[key]['searched']} searched, {runs[key]['pruned']} pruned")
    if missing:
        print(f"no {', '.join(sorted(missing))} run in {args.run_dir} yet: run it with --modes (the comparison needs both modes at every search seed)")
        return

    contexts = {key: build_context(replace(config, progress=False)) for key, config in configs.items()}
    ctx = contexts[("exhaustive", seeds[0])]
    teacher_macs = ctx.costs.full * len(ctx.timesteps)
    rows = {key: trial_rows(c) for key, c in contexts.items()}
    # per run, kind and budget the pick by search rFID: "best" among everything evaluated in full (what the search
    # answers: best.json may be a baseline), "searched" among the searched schedules only
    picks = {key: {kind: best_within(rows[key], teacher_macs, kind) for kind in KINDS} for key in contexts}
    ladders = [tuple(int_ranges(ladder)) for ladder in args.ladders.split(";")]
    calibration = [
        replay_all([(rows[("exhaustive", s)], picks[("exhaustive", s)]["searched"]) for s in seeds], float(m), args.n, ladder, ctx.budgets)
        for ladder in ladders
        for m in args.margins.split(",")
    ]
    unique = {row["key"]: row for key in picks for kind in KINDS for row in picks[key][kind].values()}
    scores: dict[str, list[dict[str, float]]] = {k: [] for k in unique}
    for seed in (int(s) for s in args.validate_seeds.split(",")):  # every picked schedule once per validation seed, however many picks it is
        seeded = replace(ctx, config=replace(ctx.config, seed=seed, validate_n=args.validate_n, progress=True))
        _, validated = validate(seeded, [dict(row, name=k) for k, row in unique.items()])
        for row in validated:
            scores[row["name"]].append({"rfid": row["rfid"], "fid": row["fid"]})

    budgets = [compare(budget, picks, scores, seeds) for budget in BUDGETS]
    wall = {mode: sum(runs[(mode, s)]["wall_seconds"] for s in seeds) for mode in modes}
    speedup = wall["exhaustive"] / wall["fast"]
    per_seed = {str(s): round(runs[("exhaustive", s)]["wall_seconds"] / runs[("fast", s)]["wall_seconds"], 3) for s in seeds}
    phases = {
        p: round(sum(runs[("exhaustive", s)]["phase_seconds"][p] for s in seeds) / max(sum(runs[("fast", s)]["phase_seconds"][p] for s in seeds), 1e-9), 3)
        for p in runs[("fast", seeds[0])]["phase_seconds"]
    }
    write_result(
        args.out,
        {
            "model": args.model,
            "sampler": args.sampler,
            "solver": args.solver,
            "T": args.steps,
            "n": args.n,
            "trials": args.trials,
            "fidelity": args.fidelity,
            "prune_margin": args.prune_margin,
            "record_rungs": args.record_rungs,
            "search_seeds": seeds,
            "validate_n": args.validate_n,
            "validate_seeds": args.validate_seeds,
            "runs": {name(key): runs[key] for key in sorted(runs)},
            "wall_seconds": {m: round(w, 1) for m, w in wall.items()},
            "wall_speedup": round(speedup, 3),
            "wall_speedup_per_seed": per_seed,
            "phase_speedups": phases,
            "pruner_replay": calibration,
            "budgets": budgets,
            "three_times_cheaper": speedup >= 3.0,
            "three_times_cheaper_every_seed": all(v >= 3.0 for v in per_seed.values()),
            "all_within_spread": {kind: all(b[kind] is not None and all(b[kind]["within_spread"].values()) for b in budgets) for kind in KINDS},
            "estimates_within_25_percent": {name(key): abs(r["estimate_error"]) <= 0.25 for key, r in sorted(runs.items())},
        },
    )
    print(f"wall speed-up {speedup:.2f}x over {len(seeds)} seeds (per seed {per_seed}); per phase {phases}")
    for row in calibration:
        print(
            f"rungs {row['rungs']} margin {row['margin']}: stops {row['stopped']} of {row['candidates']} ({row['image_share']:.0%} of the images) and "
            f"{row['baselines_stopped']} of {row['baselines']} baselines ({row['baseline_image_share']:.0%}), {row['false_stops']} false stops {row['false_stops_per_seed']}"
        )
    for b in budgets:
        for kind in KINDS:
            if b[kind] is not None:
                print(
                    b["budget"],
                    kind,
                    {m: (b[kind][m]["rfid"]["mean"], b[kind][m]["rfid"]["std"], b[kind][m]["fid"]["mean"]) for m in modes},
                    b[kind]["within_spread"],
                )


def name(key: tuple[str, int]) -> str:
    """A run's name: its mode and search seed (also its run folder)."""
    return f"{key[0]}-seed{key[1]}"


def stats(values: list[float]) -> dict[str, Any]:
    return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0, "values": values}


def compare(
    budget: str, picks: dict[tuple[str, int], dict[str, dict[str, dict[str, Any]]]], scores: dict[str, list[dict[str, float]]], seeds: list[int]
) -> dict[str, Any]:
    """Per kind, each mode's picks within ``budget`` over the search seeds (re-scored: the mean over the validation
    seeds), their mean and spread; the fast search is *within the seed spread* of the exhaustive one when its mean
    over the search seeds is at most the exhaustive mean plus two standard deviations of the exhaustive picks (rFID
    and FID each). None for a kind when a mode has no such schedule within the budget at any seed."""
    entry: dict[str, Any] = {"budget": budget}
    for kind in KINDS:
        side: dict[str, Any] = {}
        for mode in ("exhaustive", "fast"):
            found = [(s, row) for s in seeds if (row := picks[(mode, s)][kind].get(budget)) is not None]
            if not found:
                break
            per_seed = [
                {
                    "seed": s,
                    "schedule": row["name"],
                    "macs_speedup": row["macs_speedup"],
                    "search_rfid": row["rfid"],
                    **{m: round(statistics.mean(x[m] for x in scores[row["key"]]), 4) for m in ("rfid", "fid")},
                }
                for s, row in found
            ]
            side[mode] = {
                "picks": per_seed,
                "seeds_without": [s for s in seeds if picks[(mode, s)][kind].get(budget) is None],
                **{m: stats([p[m] for p in per_seed]) for m in ("rfid", "fid")},
            }
        else:
            side["within_spread"] = {m: side["fast"][m]["mean"] <= side["exhaustive"][m]["mean"] + 2 * side["exhaustive"][m]["std"] for m in ("rfid", "fid")}
            entry[kind] = side
            continue
        entry[kind] = None
    return entry


def estimate_fields(expected: Any, wall: float) -> dict[str, Any]:
    """A run's ``--dry-run`` estimate beside its measured ``wall`` seconds: the point estimate, its range (with rungs:
    every candidate stopped at the first rung .. none stopped), the relative error and the phases."""
    rest = expected.total - expected.phases["search"]
    low, high = (rest + expected.search_low, rest + expected.search_high) if expected.search_low is not None else (expected.total, expected.total)
    return {
        "estimate_seconds": round(expected.total, 1),
        "estimate_low_seconds": round(low, 1),
        "estimate_high_seconds": round(high, 1),
        "estimate_error": round((expected.total - wall) / wall, 4),
        "estimate_phases": {k: round(v, 1) for k, v in expected.phases.items()},
    }


def refresh_estimates(out: Path, configs: dict[tuple[str, int], SearchConfig]) -> None:
    """Take each run's estimate again (the warm process first, as before the runs) and put it beside the wall time
    ``out`` recorded for that run; the file keeps every measured figure and says when the estimates were retaken."""
    data = json.loads(out.read_text())
    for key, config in configs.items():
        scratch = replace(config, out=config.out.parent / f"{config.out.name}-estimate")
        shutil.rmtree(scratch.out, ignore_errors=True)
        start = time.perf_counter()
        expected = estimate(build_context(scratch, reference=False), False, time.perf_counter() - start)
        shutil.rmtree(scratch.out, ignore_errors=True)
        run = data["runs"][name(key)]
        run.update(estimate_fields(expected, run["wall_seconds"]))
        print(f"{name(key)}: estimate {expected.total:.0f} s for {run['wall_seconds']:.0f} s measured")
    data["estimates_within_25_percent"] = {k: abs(r["estimate_error"]) <= 0.25 for k, r in data["runs"].items()}
    data["estimates_retaken"] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(out)


def best_within(rows: tuple[list[dict[str, Any]], list[dict[str, Any]]], teacher_macs: float, kind: str) -> dict[str, dict[str, Any]]:
    """Per budget 1/2 .. 1/5 the row of lowest search rFID within it: among the plan baselines (not the teacher) and
    the searched schedules (``best``), or the searched ones only (``searched``)."""
    baselines, searched = rows
    pool = searched + ([r for r in baselines if r.get("steps") and r.get("family") != "teacher"] if kind == "best" else [])
    picks = {}
    for budget in BUDGETS:
        within = [r for r in pool if r["macs"] <= teacher_macs / int(budget.split("/")[1])]
        if within:
            picks[budget] = min(within, key=lambda r: (r["rfid"], r["macs"]))
    return picks


def replay_pruner(
    baselines: list[dict[str, Any]],
    searched: list[dict[str, Any]],
    margin: float,
    n: int,
    picks: dict[str, dict[str, Any]],
    rungs: tuple[int, ...],
    budgets: list[float],
) -> dict[str, Any]:
    """The front pruner at ``margin`` on the ladder ``rungs`` replayed over a study that recorded its rungs without
    stopping anything: the plan baselines in their order (cheapest first; the teacher's never stopped), then the trials
    in theirs, each compared at every rung with the rows before it that it would not have stopped, within the search's
    ``budgets`` (:func:`flexdiff.search.fidelity.dominated`). A *false stop* is a stopped candidate whose full rFID
    was the best within one of its budgets among the rows before it: one the search needed."""
    done: list[dict[str, Any]] = []
    stopped: dict[str, int] = {}
    images = {"baselines": 0, "searched": 0}
    false = 0
    for kind, rows in (("baselines", baselines), ("searched", searched)):
        for row in sorted(rows, key=lambda r: r["trial"]):
            if row.get("kind") == "peer":
                continue
            exempt = row.get("family") == "teacher"
            at = None if exempt else next((m for m in rungs if dominated(done, row["macs"], m, row["paired_rungs"][str(m)], margin, budgets)), None)
            if at is None:
                done.append(row)
            else:
                stopped[row["name"]] = at
                limits = [b for b in budgets if b >= row["macs"]]
                false += any(all(not (r["macs"] <= b and r["rfid"] <= row["rfid"]) for r in done) for b in limits)
            images[kind] += at or n
    plans = [r for r in baselines if r.get("kind") != "peer"]
    return {
        "margin": margin,
        "rungs": list(rungs),
        "candidates": len(searched),
        "stopped": sum(1 for r in searched if r["name"] in stopped),
        "baselines": len(plans),
        "baselines_stopped": sum(1 for r in plans if r["name"] in stopped),
        "stopped_at": {str(m): sum(1 for r in searched if stopped.get(r["name"]) == m) for m in rungs},
        "image_share": round(images["searched"] / max(1, n * len(searched)), 4),
        "baseline_image_share": round(images["baselines"] / max(1, n * len(plans)), 4),
        "false_stops": false,
        "stops_picks": sorted(b for b, r in picks.items() if r["name"] in stopped),
    }


def replay_all(
    studies: list[tuple[tuple[list[dict[str, Any]], list[dict[str, Any]]], dict[str, dict[str, Any]]]],
    margin: float,
    n: int,
    rungs: tuple[int, ...],
    budgets: list[float],
) -> dict[str, Any]:
    """:func:`replay_pruner` over each exhaustive study (one per search seed, with its picks), summed: the counts
    added, the image shares averaged, the false stops and stopped picks also per seed."""
    each = [replay_pruner(*rows, margin, n, picks, rungs, budgets) for rows, picks in studies]
    total = {k: sum(r[k] for r in each) for k in ("candidates", "stopped", "baselines", "baselines_stopped", "false_stops")}
    return {
        "margin": margin,
        "rungs": list(rungs),
        **total,
        "stopped_at": {str(m): sum(r["stopped_at"][str(m)] for r in each) for m in rungs},
        "image_share": round(statistics.mean(r["image_share"] for r in each), 4),
        "baseline_image_share": round(statistics.mean(r["baseline_image_share"] for r in each), 4),
        "false_stops_per_seed": [r["false_stops"] for r in each],
        "stops_picks_per_seed": [r["stops_picks"] for r in each],
    }


if __name__ == "__main__":
    main()
