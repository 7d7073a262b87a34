"""The same search with and without the cheap-search machinery: multi-fidelity pruning (``--fidelity``) and exact
trajectory reuse (``--reuse``), on the built-in UNet.

Both runs are complete ``flexdiff search`` runs (same seed, strategy, budget, trial count, baselines; each in a fresh
run folder, so the teacher reference is built in both), timed from start to results.json. Before each, the
``--dry-run`` estimate of that run is taken (for the fast run a range: no candidate stopped .. all stopped at the
first rung) and reported beside the measured time. Then, per budget 1/2 .. 1/5 (the evolution keeps an elite for
each), each run's best searched schedule by search rFID within the budget is re-scored on ``--validate-n`` images of
each seed in ``--seeds`` (rFID against the teacher's images from the same noise, FID against the held-out digits):
the fast run's pick is *within the seed spread* of the exhaustive run's when its mean over the seeds is at most the
exhaustive pick's mean plus two standard deviations of the exhaustive pick's per-seed values (rFID and FID each).

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
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--fidelity", default="32,64,128")
    parser.add_argument("--prune-margin", type=float, default=0.1)
    parser.add_argument("--validate-n", type=int, default=1000)
    parser.add_argument("--seeds", default="0,1,2", help="validation seeds of the spread")
    parser.add_argument("--baseline-branches", default="0,1")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/search_cost"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_cost.json"))
    args = parser.parse_args()

    base = SearchConfig(out=args.run_dir / "exhaustive", model=args.model, sampler=args.sampler, solver=args.solver, steps=args.steps, n=args.n, trials=args.trials,
                        seed=0, speedup=3.0, elite_speedups=(2.0, 3.0, 4.0, 5.0), validate_n=args.validate_n, validate_top=2,
                        baseline_branches=int_ranges(args.baseline_branches), segments=tuple(range(4, min(26, args.steps + 1))))
    modes = {"exhaustive": base,
             "fast": replace(base, out=args.run_dir / "fast", fidelity=tuple(int_ranges(args.fidelity)), prune_margin=args.prune_margin, reuse=True)}
    runs: dict[str, dict[str, Any]] = {}
    contexts = {}
    for name, config in modes.items():
        shutil.rmtree(config.out, ignore_errors=True)
        start = time.perf_counter()
        expected = estimate(build_context(config, reference=False), False, time.perf_counter() - start)  # what --dry-run prints
        start = time.perf_counter()
        results = search(config)
        wall = time.perf_counter() - start
        high = expected.total
        low = high - expected.phases["search"] + expected.search_low if expected.search_low is not None else high
        runs[name] = {"wall_seconds": round(wall, 1), "estimate_seconds": round(high, 1), "estimate_low_seconds": round(low, 1),
                      "estimate_error": round((high - wall) / wall, 4), "estimate_phases": {k: round(v, 1) for k, v in expected.phases.items()},
                      "searched": len(results["trials"]["searched"]), "pruned": len(results["trials"]["pruned"]), "reuse": results.get("reuse"),
                      "evaluations_seconds": round(sum(r.get("wall_seconds", 0.0) for r in results["trials"]["searched"] + results["trials"]["pruned"]), 1)}
        contexts[name] = build_context(config)
        print(f"{name}: {wall:.0f} s (estimate {low:.0f} .. {high:.0f} s), {runs[name]['searched']} searched, {runs[name]['pruned']} pruned")

    ctx = contexts["exhaustive"]
    teacher_macs = ctx.costs.full * len(ctx.timesteps)
    picks: dict[str, dict[str, dict[str, Any]]] = {}
    for name, c in contexts.items():
        baselines, searched = trial_rows(c)
        plan, _ = budget_plan(searched, baselines, teacher_macs, 1)
        picks[name] = {b["budget"]: next(r for r in searched if r["name"] == b["candidates"][0]) for b in plan if b.get("candidates")}
    scores: dict[str, dict[str, list[dict[str, float]]]] = {name: {b: [] for b in picks[name]} for name in picks}
    for seed in (int(s) for s in args.seeds.split(",")):
        seeded = replace(ctx, config=replace(ctx.config, seed=seed))
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
    write_result(args.out, {
        "model": args.model, "sampler": args.sampler, "solver": args.solver, "T": args.steps, "n": args.n, "trials": args.trials, "fidelity": args.fidelity,
        "prune_margin": args.prune_margin, "validate_n": args.validate_n, "seeds": args.seeds, "runs": runs, "wall_speedup": round(speedup, 3),
        "budgets": budgets, "three_times_cheaper": speedup >= 3.0, "all_within_spread": all(all(b["within_spread"].values()) for b in budgets),
        "estimates_within_25_percent": {name: abs(r["estimate_error"]) <= 0.25 or r["estimate_low_seconds"] <= r["wall_seconds"] <= r["estimate_seconds"] for name, r in runs.items()},
    })
    print(f"wall speed-up {speedup:.2f}x")
    for b in budgets:
        print(b["budget"], {n: (b[n]["schedule"][:40], b[n]["rfid"]["mean"], b[n]["fid"]["mean"]) for n in ("exhaustive", "fast")}, b["within_spread"])


if __name__ == "__main__":
    main()
