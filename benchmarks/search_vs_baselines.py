"""Searched schedules against the baselines at budgets of 1/2, 1/3, 1/4 and 1/5 of the teacher's MACs.

One search (one study: baselines and searched genomes on the same noise), then for each budget: the searched
schedules (not baselines) with the lowest search rFID within the budget (--candidates of them), against the best
DDIM-k and DeepCache settings (and, with ``--solver``, the same two families run under the solver) of equal or higher cost (within the budget; if none, the cheapest one above it). All
of them are re-scored with --validate-n images (rFID against the teacher, FID against held-out digits, wall-clock
against the teacher's loop); each side is then picked by the validated rFID, never by FID. Margins are reported.
`headline` is issue 4's first acceptance figure: the searched schedule with the lowest validated rFID among those
with >= 3x MACs and >= 2.7x wall-clock speed-up, and its FID against the teacher's.

    python benchmarks/search_vs_baselines.py --n 256 --trials 200 --validate-n 1000 --baseline-branches 0-3 --out benchmarks/results/search_vs_baselines.json

With ``--solver dpmpp-2m`` the teacher stays DDIM-50 (its reference images, FID and the classic baselines) and the
searched schedules run DPM-Solver++(2M) over their active steps of the same grid:

    python benchmarks/search_vs_baselines.py --solver dpmpp-2m --n 256 --trials 120 --candidates 2 --validate-n 1000 --baseline-branches 0-3 --run-dir runs/svb_dpm --out benchmarks/results/search_vs_baselines_dpmpp.json

and with ``--solver ddim-2m`` (DDIM corrected to the teacher's own error where a step skips grid points):

    python benchmarks/search_vs_baselines.py --solver ddim-2m --n 256 --trials 120 --candidates 2 --validate-n 1000 --baseline-branches 0-3 --run-dir runs/svb_ddim2m --out benchmarks/results/search_vs_baselines_ddim2m.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
from flexdiff.search.run import trial_rows, work
from flexdiff.search.validation import validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--strategy", default="evolution")
    parser.add_argument("--validate-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-branches", default=None, help="DeepCache branches, e.g. 0,1,2,3 (default: all)")
    parser.add_argument("--baseline-intervals", default="2-8,10", help="DeepCache intervals N")
    parser.add_argument("--ddim-ks", default="4-25", help="DDIM-k baselines (every k: the comparison at a budget is the nearest k of equal or higher cost)")
    parser.add_argument(
        "--solver",
        default=None,
        help="sampler of the searched schedules on the teacher's DDIM grid (ddim-2m or dpmpp-2m); DDIM-k and DeepCache are then scored under both",
    )
    parser.add_argument(
        "--spacings", default=",".join(f"{x:g}" for x in SearchConfig.spacings), help="segment-boundary powers of the genome (1 = equal segments only)"
    )
    parser.add_argument("--speedup", type=float, default=3.0, help="the budget the evolution's elite is drawn from (the front covers the rest)")
    parser.add_argument("--candidates", type=int, default=3, help="per budget and family: candidates re-scored with --validate-n images")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/search_vs_baselines"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_vs_baselines.json"))
    args = parser.parse_args()

    config = SearchConfig(
        objective="rfid",
        all_baselines=True,
        out=args.run_dir,
        model=args.model,
        solver=args.solver,
        n=args.n,
        trials=args.trials,
        strategy=args.strategy,
        seed=args.seed,
        speedup=args.speedup,
        elite_speedups=(2.0, 3.0, 4.0, 5.0),
        spacings=tuple(float(x) for x in args.spacings.split(",")),
        validate_n=args.validate_n,
        baseline_intervals=int_ranges(args.baseline_intervals),
        ddim_ks=int_ranges(args.ddim_ks),
        baseline_branches=int_ranges(args.baseline_branches) if args.baseline_branches else None,
    )
    config.out.mkdir(parents=True, exist_ok=True)
    ctx = build_context(config)
    work(config, ctx)
    baselines, searched = trial_rows(ctx)
    teacher_macs = ctx.costs.full * len(ctx.timesteps)

    # stage 1 (search-size rFID): per budget the top searched candidates and each family's; stage 2 re-scores them all
    plan, picks = budget_plan(searched, baselines, teacher_macs, args.candidates)
    teacher, rows = validate(ctx, list(picks.values()))
    summary = budget_summary(plan, {r["name"]: r for r in rows}, {"beats_classic_baselines": ("ddim", "deepcache")})
    write_result(
        args.out,
        {
            "headline": headline(rows, teacher),
            "model": args.model,
            "teacher": teacher,
            "n_search": args.n,
            "trials": args.trials,
            "strategy": args.strategy,
            "solver": config.candidate_sampler,
            "spacings": list(config.spacings),
            "validate_n": args.validate_n,
            "seed": args.seed,
            "study": ctx.study_name,
            "evaluated": {"baselines": len(baselines), "searched": len(searched)},
            "budgets": summary,
        },
    )
    print_budgets(summary, teacher)


if __name__ == "__main__":
    main()
