"""Searched schedules against the baselines at budgets of 1/2, 1/3, 1/4 and 1/5 of the teacher's MACs.

One search (one study: baselines and searched genomes on the same noise), then for each budget: the searched
schedule (not a baseline) with the lowest search rFID within the budget, against the best DDIM-k and the best
DeepCache setting of equal or higher cost (within the budget; if none, the cheapest one above it). All of them are
re-scored with --validate-n images: rFID against the teacher and FID against held-out digits. Margins are reported.

    python benchmarks/search_vs_baselines.py --n 256 --trials 150 --validate-n 1000 [--baseline-branches 0,1,2,3] --out benchmarks/results/search_vs_baselines.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import write_result

from flexdiff.search.run import SearchConfig, build_context, trial_rows, validate, work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--strategy", default="evolution")
    parser.add_argument("--validate-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-branches", default=None, help="DeepCache branches, e.g. 0,1,2,3 (default: all)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/search_vs_baselines"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_vs_baselines.json"))
    args = parser.parse_args()

    # the widest budget (1/2) bounds the evolution's parent selection; the front covers the rest
    config = SearchConfig(out=args.run_dir, model=args.model, n=args.n, trials=args.trials, strategy=args.strategy, seed=args.seed,
                          speedup=2.0, validate_n=args.validate_n,
                          baseline_branches=tuple(int(b) for b in args.baseline_branches.split(",")) if args.baseline_branches else None)
    config.out.mkdir(parents=True, exist_ok=True)
    ctx = build_context(config)
    work(config, ctx)
    baselines, searched = trial_rows(ctx)
    teacher_macs = ctx.costs.full * len(ctx.timesteps)

    picks: dict[str, dict] = {}
    plan = []
    for fraction in (2, 3, 4, 5):
        budget = teacher_macs / fraction
        within = [r for r in searched if r["macs"] <= budget]
        if not within:
            plan.append({"budget": f"1/{fraction}", "searched": None})
            continue
        best = min(within, key=lambda r: (r["rfid"], r["macs"]))
        entry = {"budget": f"1/{fraction}", "budget_macs": budget, "searched": best["name"], "baselines": {}}
        picks[best["name"]] = best
        for family in ("ddim", "deepcache"):
            fam = [r for r in baselines if r["family"] == family and r["macs"] >= best["macs"]]
            window = [r for r in fam if r["macs"] <= budget]
            chosen = min(window, key=lambda r: r["rfid"]) if window else (min(fam, key=lambda r: r["macs"]) if fam else None)
            if chosen is not None:
                entry["baselines"][family] = chosen["name"]
                picks[chosen["name"]] = chosen
        plan.append(entry)

    teacher, rows = validate(ctx, list(picks.values()))
    scored = {r["name"]: r for r in rows}
    summary = []
    for entry in plan:
        if entry["searched"] is None:
            summary.append(entry)
            continue
        s = scored[entry["searched"]]
        result = {**entry, "searched_row": s, "comparisons": {}}
        for family, name in entry["baselines"].items():
            b = scored[name]
            result["comparisons"][family] = {
                "baseline": b, "fid_margin": round(b["fid"] - s["fid"], 4), "rfid_margin": round(b["rfid"] - s["rfid"], 5),
                "searched_wins": b["fid"] > s["fid"] and b["rfid"] > s["rfid"],
            }
        summary.append(result)
    write_result(args.out, {
        "model": args.model, "teacher": teacher, "n_search": args.n, "trials": args.trials, "strategy": args.strategy, "validate_n": args.validate_n,
        "seed": args.seed, "study": ctx.study_name, "evaluated": {"baselines": len(baselines), "searched": len(searched)}, "budgets": summary,
    })
    print(f"teacher FID {teacher['fid']}")
    for r in summary:
        if r.get("searched") is None:
            print(f"{r['budget']}: no searched schedule within budget")
            continue
        s = r["searched_row"]
        line = f"{r['budget']}: {s['name']} {s['macs_speedup']:.2f}x wall {s['wall_speedup']:.2f}x FID {s['fid']:.2f} rFID {s['rfid']:.3f}"
        for family, c in r["comparisons"].items():
            b = c["baseline"]
            line += f" | {b['name']} {b['macs_speedup']:.2f}x FID {b['fid']:.2f} (margin {c['fid_margin']:+.2f}) rFID {b['rfid']:.3f} (margin {c['rfid_margin']:+.3f})"
        print(line)


if __name__ == "__main__":
    main()
