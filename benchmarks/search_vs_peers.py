"""Searched schedules against the caching peers at 1/2, 1/3, 1/4 and 1/5 of the teacher's MACs, on a transformer.

One search on ``builtin:digits-dit`` (the flow-euler teacher of ``--steps``); in the same study, as baselines beside
the searched genomes: Euler-k step cutting, static DBCache-style uniform intervals at every (F, B) branch (with
``--forecast`` also their forecasting twins), diffusers' own ``FirstBlockCache``, ``TaylorSeer``,
``PyramidAttentionBroadcast`` and ``MagCache`` (calibrated on the model first) through their ``apply_*`` functions, and
cache-dit's DBCache alone and with its TaylorSeer calibrator through its ``enable_cache``, each at a sweep of its
settings (``SearchConfig.peers``, :mod:`flexdiff.search.peers`), on the same reference noise and against the same
teacher images. A peer's MACs are counted from what it computed in its
search-size run (``FlopCounterMode`` over the whole run, per image). Per budget: the searched schedules with the
lowest search rFID within it against each family's best of equal or higher cost (within the budget; a family with no
setting that reaches the budget: its cheapest, marked ``within_budget`` false); all of them re-scored with
``--validate-n`` images (rFID, FID against the held-out digits, wall-clock against the teacher's loop) and picked by
validated rFID, never by FID. ``headline``: the best searched schedule with >= 3x MACs and >= 2.7x wall-clock
speed-up, and its FID against the teacher's. Verdicts per budget: ``beats_peers`` (against item 5's families: every
family but flexdiff's own ``forecast`` plans) and ``beats_baselines`` (every family), each also ``..._at_budget``
(only the families with a setting at the budget).

    python benchmarks/search_vs_peers.py --n 128 --trials 200 --validate-n 1000 --forecast --baseline-branches 0,2,4,5,9,14 --out benchmarks/results/search_vs_peers.json

With ``--forecast`` the genome may make each segment's partial steps forecast (TaylorSeer's first order) instead of
replay; on the built-in UNet (peers there: none of diffusers' block caches applies to a UNet) the reuse-only and
forecast searches side by side:

    python benchmarks/search_vs_peers.py --model builtin:digits --sampler ddim --steps 50 --no-peers --forecast --run-dir runs/svp_unet_forecast --out benchmarks/results/search_vs_peers_unet_forecast.json

How much of a margin is noise (as ``seed_spread.py`` for the UNet): ``--spread-from`` an earlier output re-scores the
budgets' searched pick and the rows it was compared with on ``--spread-seeds`` (``--validate-n`` fresh images each,
seed 0 being the noise the benchmark validated on), with the run's own settings (same arguments, same ``--run-dir``:
nothing is searched again), and writes per row and per searched-minus-baseline pair the mean and standard deviation:

    python benchmarks/search_vs_peers.py --n 128 --trials 200 --steps 20 --baseline-branches 0,2,4,5,9,14 --forecast --run-dir runs/svp_forecast --spread-from benchmarks/results/search_vs_peers.json --spread-seeds 0,1,2,3,4 --spread-budgets 1/2 --spread-families taylorseer,forecast,ddim,magcache --out benchmarks/results/search_vs_peers_spread.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from common import (
    budget_plan,
    budget_summary,
    headline,
    int_ranges,
    print_budgets,
    write_result,
)

from flexdiff.search.config import SearchConfig
from flexdiff.search.context import build_context
from flexdiff.search.peers import PEERS
from flexdiff.search.run import trial_rows, work
from flexdiff.search.validation import validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits-dit")
    parser.add_argument("--sampler", default="flow-euler")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--validate-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--forecast", action="store_true", help="a reuse/forecast gene per segment")
    parser.add_argument("--no-peers", action="store_true", help="searched schedules and the study's baselines only")
    parser.add_argument("--baseline-intervals", default="2-6,8,10", help="DBCache / DeepCache uniform intervals N")
    parser.add_argument("--baseline-branches", default=None, help="branches of the uniform baselines, e.g. 0,1,2,4 (default: all)")
    parser.add_argument("--ddim-ks", default="3-20", help="step-cutting baselines (Euler-k / DDIM-k)")
    parser.add_argument("--candidates", type=int, default=2, help="per budget and family: candidates re-scored with --validate-n images")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/search_vs_peers"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_vs_peers.json"))
    parser.add_argument("--spread-from", type=Path, default=None, help="an earlier output: re-score its picks on --spread-seeds instead of searching")
    parser.add_argument("--spread-seeds", default="0,1,2,3,4")
    parser.add_argument("--spread-budgets", default="1/2")
    parser.add_argument("--spread-families", default=None, help="families compared with the searched pick to re-score (default: all)")
    args = parser.parse_args()

    config = SearchConfig(
        objective="rfid",
        all_baselines=True,
        out=args.run_dir,
        model=args.model,
        sampler=args.sampler,
        steps=args.steps,
        n=args.n,
        trials=args.trials,
        seed=args.seed,
        speedup=3.0,
        elite_speedups=(2.0, 3.0, 4.0, 5.0),
        validate_n=args.validate_n,
        baseline_intervals=int_ranges(args.baseline_intervals),
        ddim_ks=tuple(k for k in int_ranges(args.ddim_ks) if k < args.steps),
        segments=tuple(range(3, args.steps + 1)),
        forecast=args.forecast,
        peers=() if args.no_peers else tuple(PEERS.names()),
        baseline_branches=int_ranges(args.baseline_branches) if args.baseline_branches else None,
    )
    config.out.mkdir(parents=True, exist_ok=True)
    if args.spread_from is not None:
        return spread(config, args)
    start = time.perf_counter()
    ctx = build_context(config)
    work(config, ctx)
    rows, searched = trial_rows(ctx)
    baselines, peers = [r for r in rows if r["kind"] != "peer"], [r for r in rows if r["kind"] == "peer"]
    search_wall = time.perf_counter() - start
    T, teacher_macs = len(ctx.timesteps), ctx.costs.full * len(ctx.timesteps)

    plan, picks = budget_plan(searched, baselines + peers, teacher_macs, args.candidates)
    teacher, rows = validate(ctx, list(picks.values()))
    # the acceptance's baselines (item 5): every family but flexdiff's own uniform forecast plans (`forecast`)
    peer_families = tuple(sorted({r["family"] for r in baselines + peers} - {"teacher", "forecast"}))
    summary = budget_summary(plan, {r["name"]: r for r in rows}, {"beats_baselines": None, "beats_peers": peer_families})
    write_result(
        args.out,
        {
            "headline": headline(rows, teacher),
            "model": args.model,
            "sampler": args.sampler,
            "T": T,
            "teacher": teacher,
            "n_search": args.n,
            "trials": args.trials,
            "forecast": args.forecast,
            "validate_n": args.validate_n,
            "seed": args.seed,
            "study": ctx.study_name,
            "search_wall_seconds": round(search_wall, 1),
            "evaluated": {"baselines": len(baselines), "searched": len(searched), "peers": len(peers)},
            "peers": peers,
            "budgets": summary,
        },
    )
    print_budgets(summary, teacher)


def spread(config: SearchConfig, args: argparse.Namespace) -> None:
    """The picks of ``--spread-budgets`` in ``--spread-from``, validated again on each of ``--spread-seeds``."""
    earlier = json.loads(args.spread_from.read_text())
    families = set(args.spread_families.split(",")) if args.spread_families else None
    peers = {r["name"]: r for r in earlier["peers"]}  # a validated peer row lacks its setting: the study's row has it
    rows: dict[str, dict[str, Any]] = {}
    pairs: list[tuple[str, str]] = []
    for entry in (b for b in earlier["budgets"] if b["budget"] in args.spread_budgets.split(",")):
        searched = entry["searched_row"]
        compared = [c["baseline"] for f, c in entry["comparisons"].items() if families is None or f in families]
        for row in [searched, *compared]:
            rows[row["name"]] = {**peers.get(row["name"], {}), **row, "rfid": row["search_rfid"]}
        pairs += [(searched["name"], b["name"]) for b in compared]
    ctx = build_context(config)
    seeds = [int(s) for s in args.spread_seeds.split(",")]
    scores: dict[str, dict[str, list[float]]] = {name: {"fid": [], "rfid": []} for name in [*rows, "teacher"]}
    for seed in seeds:  # fresh noise per seed, the same for every row: the differences are paired
        teacher, scored = validate(dataclasses.replace(ctx, config=dataclasses.replace(config, seed=seed, validate_n=args.validate_n)), list(rows.values()))
        scores["teacher"]["fid"].append(teacher["fid"])
        for r in scored:
            scores[r["name"]]["fid"].append(r["fid"])
            scores[r["name"]]["rfid"].append(r["rfid"])
        print(f"seed {seed}: " + ", ".join(f"{r['name']} FID {r['fid']:.2f} rFID {r['rfid']:.3f}" for r in scored), flush=True)

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "values": [round(v, 4) for v in values],
        }

    differences = {f"{a} - {b}": {m: stats([x - y for x, y in zip(scores[a][m], scores[b][m])]) for m in ("fid", "rfid")} for a, b in pairs}
    write_result(
        args.out,
        {
            "model": config.model,
            "from": str(args.spread_from),
            "budgets": args.spread_budgets,
            "seeds": seeds,
            "n": args.validate_n,
            "schedules": {name: {m: stats(v) for m, v in s.items() if v} for name, s in scores.items()},
            "differences": differences,
            "searched_lower_on_mean": {k: v["fid"]["mean"] < 0 and v["rfid"]["mean"] < 0 for k, v in differences.items()},
        },
    )
    for k, v in differences.items():
        print(f"{k}: dFID {v['fid']['mean']:+.2f} +- {v['fid']['std']:.2f}, drFID {v['rfid']['mean']:+.3f} +- {v['rfid']['std']:.3f}")


if __name__ == "__main__":
    main()
