"""The same search with and without the cheap-search machinery: multi-fidelity pruning (``--fidelity``) and exact
trajectory reuse (``--reuse``), on the built-in UNet.

Both runs are complete ``flexdiff search`` runs (same seed, strategy, budget, trial count, baselines; each in a fresh
run folder, so the teacher reference is built in both), timed from start to results.json, with the wall seconds of
each phase as ``results.json`` records them. The exhaustive run passes the same rungs with ``--prune-margin inf``: no
candidate is stopped and no batch cut (every candidate on all ``--n`` images in one batch, as without ``--fidelity``),
but each evaluation records the rFID of its first 32 / 64 / 128 images, so the pruning rule can be replayed over the
exhaustive study afterwards (:func:`flexdiff.search.fidelity.dominated`, trials in their order, a stopped one never a
reference): per margin, how many candidates it would stop, the image share it would evaluate, and whether it would
stop a schedule the exhaustive search picks at a budget. That table is how the default margin is chosen.

Before each run, the ``--dry-run`` estimate of that run is taken (for the fast run a range: no candidate stopped ..
all stopped at the first rung) and reported beside the measured time, per phase. Then, per budget 1/2 .. 1/5 (the
evolution keeps an elite for each), each run's best searched schedule by search rFID within the budget is re-scored
on ``--validate-n`` images of each seed in ``--seeds`` (rFID against the teacher's images from the same noise, FID
against the held-out digits): the fast run's pick is *within the seed spread* of the exhaustive run's when its mean
over the seeds is at most the exhaustive pick's mean plus two standard deviations of the exhaustive pick's per-seed
values (rFID and FID each). The searches' own final validation runs on ``--search-validate-n`` images (the demo's
256): the 1000-image scores of this benchmark are its own.

    python benchmarks/search_cost.py --out benchmarks/results/search_cost.json
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import budget_plan, int_ranges, write_result

from flexdiff.search.fidelity import DEFAULT_MARGIN, dominated

from flexdiff.search.config import SearchConfig
from flexdiff.search.context import build_context
from flexdiff.search.estimate import estimate
from flexdiff.search.run import search, trial_rows
from flexdiff.search.validation import validate

BUDGETS = ("1/2", "1/3", "1/4", "1/5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--solver", default="ddim-2m")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--fidelity", default="32,64,128")
    parser.add_argument("--prune-margin", type=float, default=DEFAULT_MARGIN)
    parser.add_argument("--margins", default="0.05,0.1,0.2,0.3,0.5,1", help="margins replayed over the exhaustive study")
    parser.add_argument("--validate-n", type=int, default=1000)
    parser.add_argument("--search-validate-n", type=int, default=256, help="the searches' own final validation")
    parser.add_argument("--seeds", default="0,1,2", help="validation seeds of the spread")
    parser.add_argument("--baseline-branches", default="0,1")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/search_cost"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_cost.json"))
    args = parser.parse_args()

    base = SearchConfig(out=args.run_dir / "exhaustive", model=args.model, sampler=args.sampler, solver=args.solver, steps=args.steps, n=args.n, trials=args.trials,
                        seed=0, speedup=3.0, elite_speedups=(2.0, 3.0, 4.0, 5.0), validate_n=args.search_validate_n, validate_top=2,
                        fidelity=tuple(int_ranges(args.fidelity)), prune_margin=float("inf"),
                        baseline_branches=int_ranges(args.baseline_branches), segments=tuple(range(4, min(26, args.steps + 1))))
    modes = {"exhaustive": base,
             "fast": replace(base, out=args.run_dir / "fast", prune_margin=args.prune_margin, reuse=True)}
    runs: dict[str, dict[str, Any]] = {}
    contexts = {}
    expectations = {}
    for name, config in modes.items():  # both estimates first (what --dry-run prints): the process is warm before either run
        shutil.rmtree(config.out, ignore_errors=True)
        start = time.perf_counter()
        expectations[name] = estimate(build_context(config, reference=False), False, time.perf_counter() - start)
    for name, config in modes.items():
        expected = expectations[name]
        start = time.perf_counter()
        results = search(config)
        wall = time.perf_counter() - start
        high = expected.total
        low = high - expected.phases["search"] + expected.search_low if expected.search_low is not None else high
        runs[name] = {"wall_seconds": round(wall, 1), "estimate_seconds": round(high, 1), "estimate_low_seconds": round(low, 1),
                      "estimate_error": round((high - wall) / wall, 4), "estimate_phases": {k: round(v, 1) for k, v in expected.phases.items()},
                      "phase_seconds": results["phase_seconds"],
                      "searched": len(results["trials"]["searched"]), "pruned": len(results["trials"]["pruned"]), "reuse": results.get("reuse"),
                      "evaluations_seconds": round(sum(r.get("wall_seconds", 0.0) for r in results["trials"]["searched"] + results["trials"]["pruned"]), 1)}
        contexts[name] = build_context(config)
        print(f"{name}: {wall:.0f} s (estimate {low:.0f} .. {high:.0f} s), {runs[name]['searched']} searched, {runs[name]['pruned']} pruned")

    ctx = contexts["exhaustive"]
    teacher_macs = ctx.costs.full * len(ctx.timesteps)
    picks: dict[str, dict[str, dict[str, Any]]] = {}
    rows: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for name, c in contexts.items():
        baselines, searched = rows[name] = trial_rows(c)
        plan, _ = budget_plan(searched, baselines, teacher_macs, 1)
        picks[name] = {b["budget"]: next(r for r in searched if r["name"] == b["candidates"][0]) for b in plan if b.get("candidates")}
    calibration = [replay_pruner(*rows["exhaustive"], float(m), args.n, picks["exhaustive"]) for m in args.margins.split(",")]
    scores: dict[str, dict[str, list[dict[str, float]]]] = {name: {b: [] for b in picks[name]} for name in picks}
    for seed in (int(s) for s in args.seeds.split(",")):
        seeded = replace(ctx, config=replace(ctx.config, seed=seed, validate_n=args.validate_n))
        rows = [dict(row, name=f"{name}|{budget}|{row['name']}") for name in picks for budget, row in picks[name].items()]
        _, validated = validate(seeded, rows)
        for row in validated:
            name, budget, _ = row["name"].split("|")
            scores[name][budget].append({"rfid": row["rfid"], "fid": row["fid"]})

    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0, "values": values}

    budgets = []
    for budget in BUDGETS:
        if budget not in picks["exhaustive"] or budget not in picks["fast"]:
            continue
        entry: dict[str, Any] = {"budget": budget}
        for name in ("exhaustive", "fast"):
            entry[name] = {"schedule": picks[name][budget]["name"], "macs_speedup": picks[name][budget]["macs_speedup"],
                           **{m: stats([s[m] for s in scores[name][budget]]) for m in ("rfid", "fid")}}
        entry["within_spread"] = {m: entry["fast"][m]["mean"] <= entry["exhaustive"][m]["mean"] + 2 * entry["exhaustive"][m]["std"] for m in ("rfid", "fid")}
        budgets.append(entry)
    speedup = runs["exhaustive"]["wall_seconds"] / runs["fast"]["wall_seconds"]
    phases = {k: round(runs["exhaustive"]["phase_seconds"][k] / max(runs["fast"]["phase_seconds"][k], 1e-9), 3) for k in runs["fast"]["phase_seconds"]}
    write_result(args.out, {
        "model": args.model, "sampler": args.sampler, "solver": args.solver, "T": args.steps, "n": args.n, "trials": args.trials, "fidelity": args.fidelity,
        "prune_margin": args.prune_margin, "validate_n": args.validate_n, "seeds": args.seeds, "runs": runs, "wall_speedup": round(speedup, 3),
        "phase_speedups": phases, "pruner_replay": calibration,
        "budgets": budgets, "three_times_cheaper": speedup >= 3.0, "all_within_spread": all(all(b["within_spread"].values()) for b in budgets),
        "estimates_within_25_percent": {name: abs(r["estimate_error"]) <= 0.25 or r["estimate_low_seconds"] <= r["wall_seconds"] <= r["estimate_seconds"] for name, r in runs.items()},
    })
    print(f"wall speed-up {speedup:.2f}x; per phase {phases}")
    for row in calibration:
        print(f"margin {row['margin']}: stops {row['stopped']} of {row['candidates']}, evaluates {row['image_share']:.0%} of the images, stops picks {row['stops_picks']}")
    for b in budgets:
        print(b["budget"], {n: (b[n]["schedule"][:40], b[n]["rfid"]["mean"], b[n]["fid"]["mean"]) for n in ("exhaustive", "fast")}, b["within_spread"])


def replay_pruner(baselines: list[dict[str, Any]], searched: list[dict[str, Any]], margin: float, n: int, picks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The front pruner at ``margin`` replayed over a study that recorded its rungs without stopping anything: trials
    in their order, each compared at every rung with the baselines and the earlier trials it would not have stopped."""
    done = [r for r in baselines if r.get("rungs")]
    stopped: dict[str, int] = {}
    images = 0
    for row in sorted(searched, key=lambda r: r["trial"]):
        at = next((int(m) for m, v in sorted(row["rungs"].items(), key=lambda kv: int(kv[0])) if dominated(done, row["macs"], int(m), v, margin)), None)
        if at is None:
            done.append(row)
        else:
            stopped[row["name"]] = at
        images += at or n
    return {"margin": margin, "candidates": len(searched), "stopped": len(stopped),
            "stopped_at": {str(m): sum(1 for a in stopped.values() if a == m) for m in sorted(set(stopped.values()))},
            "image_share": round(images / max(1, n * len(searched)), 4), "stops_picks": sorted(b for b, r in picks.items() if r["name"] in stopped)}


if __name__ == "__main__":
    main()
