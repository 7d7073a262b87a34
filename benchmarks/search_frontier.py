"""The cost-quality frontier of search methods, measured on a built-in teacher: what each search costs (teacher-image
equivalents: images x their MACs / the teacher's, measured from its studies) and how good its picks are on 1000
noises no search saw.

Methods (every one searches the budgets 1/2 and the elite budgets 1/3, 1/4, 1/5 in one study, ``--trials`` searched
schedules, the baselines within the largest budget; the search's own final validation is skipped, its cost left out):

- ``rfid-256``: the search as `make demo` ran it before this benchmark: rFID on 256 images, rungs 16/64 with the front
  pruner, trajectory reuse, every baseline scored (``all_baselines``, as it was) at branch 0.
- ``paired-N``: BudCache's setting: N noises (16, 8, 4), the paired distance as objective (a mean over images, unbiased
  at any N, where rFID on N images is not), no rungs, reuse. ``paired-8-t60``: 8 noises, half the trials (the cost
  of ``paired-4``, more noises per trial, fewer trials).
- ``paired-16-nsga2``: the same objective with ECAD's NSGA-II (Optuna's sampler) instead of the evolution.
- ``paired-16-one-budget``: OTCache's idea: one search at the tightest budget (1/5), the other budgets' plans moved
  from its pick by :func:`flexdiff.schedule.genome.moved_genome`'s rule (more segments of the same genes, at the same
  length: the MACs share scales with the segment count), the largest count within each budget.

- ``paired-N-validated``: the ``paired-N`` studies, each budget's pick chosen as `flexdiff search` chooses
  best.json: the front's two schedules nearest the budget and each baseline family's best, re-scored on 64 noises
  after the search's, the lowest paired distance (the re-checks' images are counted in its cost).
  ``paired-4-validated-16`` / ``-8``: the same re-check on 16 / 8 noises.

Per budget a method's pick is otherwise its lowest objective within the budget on its own N images (searched or
baseline row). Every pick of every method is then scored on the same ``--validate-n`` noises
of the seed's stream after image 256 (after every method's search images): rFID and paired distance against the
teacher's images from the same noise, FID against the held-out digits. ``--seeds`` repeats everything.

    cd benchmarks && python search_frontier.py --model builtin:digits --sampler ddim --solver ddim-2m --steps 50 --out results/search_frontier_unet.json
    cd benchmarks && python search_frontier.py --model builtin:digits-dit --sampler flow-euler --steps 20 --out results/search_frontier_dit.json

``--resummarise`` recomputes a file's summary and ``verdict`` (each budget cell ``within_reference``: picks at as many
seeds, mean rFID and FID no worse than ``rfid-256``'s worst seed; the cheapest method within it at every budget, or the
closest) from its runs.

(The committed JSONs, in order: the first five methods; ``--methods paired-16-one-budget,paired-4-validated,
paired-16-validated --merge`` on the UNet; ``--methods paired-8,paired-8-t60,paired-4-validated,paired-8-validated,
paired-16-validated --merge`` on the DiT; then, after DDIM-k's baselines gained every budget's own step count
(:func:`flexdiff.search.context.budget_ks`, commit 84d6607), ``--methods paired-4,paired-4-validated,paired-16,
paired-16-validated --merge --run-dir /tmp/sf-v2`` on the DiT, ``--methods paired-4,paired-4-validated,
paired-4-validated-16,paired-4-validated-8 --merge --run-dir /tmp/sf-v2`` on the UNet and ``--methods
paired-4-validated-16,paired-4-validated-8 --merge --run-dir /tmp/sf-v2`` on the DiT: those methods' runs are the
current code's, the others' the fixed list's (on 50 steps the rule adds DDIM-16 and DDIM-12 beside the list's 25, 10).
A merge keeps the other methods' runs, validated on the same noises. ``verdict.default`` names the method that is
`flexdiff search`'s defaults, :func:`default_method`.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import BUDGETS, write_result

from flexdiff.schedule import Genome
from flexdiff.schedule.genome import moved_genome
from flexdiff.search.artefacts import schedule_of_row
from flexdiff.search.config import SearchConfig, default_segments, objective_of
from flexdiff.search.context import build_context
from flexdiff.search.run import search, trial_rows
from flexdiff.search.validation import choose_for_validation, validate

#: name -> SearchConfig overrides (on top of the shared settings in :func:`main`)
METHODS: dict[str, dict[str, Any]] = {
    "rfid-256": {"n": 256, "objective": "rfid", "fidelity": (16, 64), "all_baselines": True, "baseline_branches": (0,)},
    "paired-16": {"n": 16, "objective": "paired"},
    "paired-8": {"n": 8, "objective": "paired"},
    "paired-8-t60": {"n": 8, "objective": "paired", "trials": 60},
    "paired-4": {"n": 4, "objective": "paired"},
    "paired-16-nsga2": {"n": 16, "objective": "paired", "strategy": "nsga2"},
    "paired-16-one-budget": {"n": 16, "objective": "paired", "speedup": float(max(BUDGETS)), "elite_speedups": ()},
    # the same studies, each budget's pick then chosen as `flexdiff search` chooses best.json: its front's two schedules
    # nearest the budget and each baseline family's best re-scored on RECHECK noises after the search's, lowest paired
    "paired-4-validated": {"n": 4, "objective": "paired", "folder": "paired-4", "recheck": 64},
    "paired-16-validated": {"n": 16, "objective": "paired", "folder": "paired-16", "recheck": 64},
    "paired-8-validated": {"n": 8, "objective": "paired", "folder": "paired-8", "recheck": 64},
    # the re-check on fewer noises: on the UNet the 64-noise re-check costs more than the 4-noise search itself
    "paired-4-validated-16": {"n": 4, "objective": "paired", "folder": "paired-4", "recheck": 16},
    "paired-4-validated-8": {"n": 4, "objective": "paired", "folder": "paired-4", "recheck": 8},
}
#: settings of a method that are not SearchConfig fields: the run folder it shares, the re-check's noises
EXTRA = ("folder", "recheck")
#: validation noises start here in every seed's stream: after the largest search's images
VALIDATION_START = 256


def picks(method: str, ctx: Any, baselines: list[dict[str, Any]], searched: list[dict[str, Any]], teacher_macs: float) -> dict[str, dict[str, Any]]:
    """Budget name -> the method's pick there (lowest objective within the budget on its own images)."""
    objective = ctx.config.objective
    rows = [r for r in baselines + searched if r.get("steps") and r.get("family") != "teacher"]
    out: dict[str, dict[str, Any]] = {}
    for fraction in BUDGETS:
        within = [r for r in rows if r["macs"] <= teacher_macs / fraction]
        if within:
            out[f"1/{fraction}"] = min(within, key=lambda r: (objective_of(r, objective), r["macs"]))
    if method.endswith("one-budget"):  # the tightest budget's pick, moved to the others by more segments of its genes
        origin = out.get(f"1/{max(BUDGETS)}")  # a baseline pick (DDIM-k) moves as its nearest genome
        genome = ctx.space.nearest_genome(schedule_of_row(origin, ctx.timesteps, ctx.config.sampler)) if origin else None
        for fraction in BUDGETS[:-1]:
            out.pop(f"1/{fraction}", None)
            if genome is None:
                continue
            T = len(ctx.timesteps)
            for count in range(T, len(genome.segments) - 1, -1):  # the most segments within the budget
                plan = _scaled(genome, count, T).expand(ctx.timesteps, ctx.config.candidate_sampler)
                macs = ctx.costs.schedule(plan)
                if macs <= teacher_macs / fraction:
                    out[f"1/{fraction}"] = {
                        "kind": "searched",
                        "name": plan.name,
                        "family": "genome",
                        "genome": plan.meta["genome"],
                        "macs": macs,
                        "macs_speedup": round(teacher_macs / macs, 4),
                        "steps": [str(s) for s in plan.steps],
                        "sampler": plan.sampler,
                        "rfid": float("nan"),
                        "paired": None,
                    }
                    break
    return out


def _scaled(genome: Genome, count: int, T: int) -> Genome:
    """``genome`` with ``count`` segments of its genes over the same ``T`` steps: :func:`moved_genome` from a
    notional step count at which ``count`` segments keep the searched segments' share (the same mapping)."""
    notional = max(len(genome.segments), round(T * len(genome.segments) / count))
    return moved_genome(genome, notional, T) if notional != T else genome


def run_method(method: str, base: SearchConfig, root: Path) -> dict[str, Any]:
    settings = METHODS[method]
    config = replace(base, **{k: v for k, v in settings.items() if k not in EXTRA}, out=root / settings.get("folder", method))
    start = time.perf_counter()
    results = search(config)
    wall = time.perf_counter() - start
    ctx = build_context(replace(config, progress=False), reference=False)
    baselines, searched = trial_rows(ctx)
    spent = {k: v for k, v in results["teacher_image_equivalents"].items() if k != "validation"}
    chosen = picks(method, ctx, baselines, searched, ctx.costs.full * len(ctx.timesteps))
    if "recheck" in settings:
        start = time.perf_counter()
        chosen, spent["validation"] = rechecked(ctx, baselines, searched, settings["recheck"])
        wall += time.perf_counter() - start
    return {
        "ctx": ctx,
        "picks": chosen,
        "wall_seconds": round(wall, 1),
        "teacher_image_equivalents": spent,
        "search_cost": round(sum(spent.values()), 1),
        "trials": len(searched),
    }


def rechecked(ctx: Any, baselines: list[dict[str, Any]], searched: list[dict[str, Any]], noises: int) -> tuple[dict[str, dict[str, Any]], float]:
    """Per budget, best.json's choice: :func:`choose_for_validation` at that budget re-scored on ``noises`` noises after
    the search's (:func:`validate` with ``validate_n`` = ``noises``, ``validate_top`` 2), the lowest paired distance;
    and the teacher-image equivalents of those re-checks (the teacher's images once, then each row's)."""
    teacher_macs = ctx.costs.full * len(ctx.timesteps)
    chosen, images = {}, float(noises)
    check = replace(ctx, config=replace(ctx.config, validate_n=noises, validate_top=2, progress=False))
    for fraction in BUDGETS:
        check.config = replace(check.config, max_macs=teacher_macs / fraction, speedup=None)
        rows = [r for r in choose_for_validation(check, baselines, searched) if r["macs"] <= teacher_macs / fraction]
        if not rows:
            continue
        _, scored = validate(check, rows)
        images += noises * sum(r["macs"] / teacher_macs for r in rows)
        best = min(scored, key=lambda r: (r["paired"], r["macs"]))
        chosen[f"1/{fraction}"] = next(r for r in rows if r["name"] == best["name"] and r.get("sampler") == best["sampler"])
    return chosen, round(images, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--solver", default=None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--validate-n", type=int, default=1000)
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/flexdiff-search-frontier"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--merge", action="store_true", help="keep the runs of the other methods already in --out (same settings, same validation noise)")
    parser.add_argument("--resummarise", action="store_true", help="only recompute --out's summary and verdict from its runs (nothing is searched)")
    args = parser.parse_args()
    if args.resummarise:
        d = json.loads(args.out.read_text())
        d["summary"] = summary(d["runs"], [m for m in METHODS if any(r["method"] == m for r in d["runs"])])
        d["verdict"] = verdict(d["summary"])
        args.out.write_text(json.dumps(d, indent=2) + "\n")
        return

    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        base = SearchConfig(
            out=args.run_dir,
            model=args.model,
            sampler=args.sampler,
            solver=args.solver,
            steps=args.steps,
            segments=default_segments(args.steps),
            trials=args.trials,
            speedup=float(BUDGETS[0]),
            elite_speedups=tuple(float(b) for b in BUDGETS[1:]),
            reuse=True,
            validate_n=2,
            validate_top=1,
            features="digits",
            seed=seed,
        )
        root = args.run_dir / f"{Path(args.model).name.replace(':', '-')}-T{args.steps}-seed{seed}"
        done = {m: run_method(m, base, root) for m in methods}
        ctx = next(iter(done.values()))["ctx"]
        ctx = replace(ctx, config=replace(ctx.config, n=VALIDATION_START, validate_n=args.validate_n, progress=True))
        unique = {(row["name"], row.get("sampler")): row for d in done.values() for row in d["picks"].values()}
        teacher, validated = validate(ctx, [dict(row, kind=row.get("kind", "searched")) for row in unique.values()])
        scored = {(r["name"], r["sampler"]): r for r in validated}
        for method, d in done.items():
            entry = {
                "method": method,
                "seed": seed,
                "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in METHODS[method].items()},
                "trials": d["trials"],
                "wall_seconds": d["wall_seconds"],
                "teacher_image_equivalents": d["teacher_image_equivalents"],
                "search_cost": d["search_cost"],
                "budgets": {},
            }
            for budget, row in d["picks"].items():
                v = scored[(row["name"], row.get("sampler"))]
                entry["budgets"][budget] = {
                    "name": row["name"],
                    "kind": row.get("kind"),
                    "macs_speedup": v["macs_speedup"],
                    "search_objective": row.get(METHODS[method].get("objective", "rfid")),
                    "rfid": v["rfid"],
                    "paired": v["paired"],
                    "fid": v["fid"],
                }
            runs.append(entry)
            print(
                f"seed {seed} {method}: cost {entry['search_cost']:,.0f} TIE, {entry['wall_seconds']:.0f} s; "
                + "; ".join(f"{b} {e['macs_speedup']:.2f}x rFID {e['rfid']:.3f} FID {e['fid']:.2f}" for b, e in entry["budgets"].items())
            )
        runs.append({"method": "teacher", "seed": seed, "fid": teacher["fid"], "noise_images": teacher["noise_images"]})
    if args.merge and args.out.exists():  # the other methods' runs, validated on the same noises (validation is deterministic per seed)
        earlier = json.loads(args.out.read_text())
        runs = [r for r in earlier["runs"] if r["method"] not in methods and r["method"] != "teacher"] + runs
        methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    write_result(
        args.out,
        {
            "model": args.model,
            "sampler": args.sampler,
            "solver": args.solver,
            "steps": args.steps,
            "trials": args.trials,
            "seeds": seeds,
            "validate_n": args.validate_n,
            "validation_start": VALIDATION_START,
            "budgets": [f"1/{b}" for b in BUDGETS],
            "runs": runs,
            "summary": (table := summary(runs, methods)),
            "verdict": verdict(table),
        },
    )


#: the search every method is compared with: the demo's settings before this benchmark
REFERENCE = "rfid-256"


def within_reference(cell: dict[str, Any], ref: dict[str, Any] | None) -> bool:
    """A method's budget cell is within the reference's spread: picks at as many seeds, mean validated rFID and FID no
    worse than the reference's worst seed (4 decimals: the JSON's rounding)."""
    return ref is not None and cell["seeds"] == ref["seeds"] and all(round(cell[m]["mean"], 4) <= round(ref[m]["max"], 4) for m in ("rfid", "fid"))


def why_out(cell: dict[str, Any] | None, ref: dict[str, Any]) -> str:
    """Why a method's budget cell is out of the reference's spread, from the numbers: seeds without a pick, or which
    mean is above the reference's worst seed (and the method's own worst seed, which shows one seed's miss)."""
    if cell is None or cell["seeds"] < ref["seeds"]:
        return f"a pick at {0 if cell is None else cell['seeds']} of {ref['seeds']} seeds (no schedule found within the budget at the others)"
    return "; ".join(
        f"mean {m} {cell[m]['mean']:.3f} (seeds {cell[m]['min']:.3f}-{cell[m]['max']:.3f}) above the reference's worst seed {ref[m]['max']:.3f}"
        for m in ("rfid", "fid")
        if round(cell[m]["mean"], 4) > round(ref[m]["max"], 4)
    )


def default_method() -> str | None:
    """The method that is `flexdiff search`'s defaults: SearchConfig's noises and objective, its final validation's
    noises as the re-check (best.json is chosen there)."""
    fields = SearchConfig.__dataclass_fields__
    want = {"n": fields["n"].default, "objective": fields["objective"].default, "recheck": fields["validate_n"].default}
    return next((m for m, s in METHODS.items() if {k: v for k, v in s.items() if k != "folder"} == want), None)


def verdict(out: dict[str, Any]) -> dict[str, Any]:
    """Marks every method's budget cells ``within_reference`` and says which method is the cheapest within the
    reference's spread at every budget the reference has (``best``, None if none), else the one out at the fewest
    budgets, cheaper first (``closest``), with each method's cost share and budgets out of spread."""
    ref = out.get(REFERENCE)
    if ref is None:
        return {}
    methods = {}
    for method, m in out.items():
        if method == REFERENCE:
            continue
        for budget, cell in m["budgets"].items():
            cell["within_reference"] = within_reference(cell, ref["budgets"].get(budget))
        missing = [b for b in ref["budgets"] if not m["budgets"].get(b, {}).get("within_reference")]
        methods[method] = {
            "cost_share": round(m["search_cost_mean"] / ref["search_cost_mean"], 4),
            "out_of_spread": missing,
            "why": {b: why_out(m["budgets"].get(b), ref["budgets"][b]) for b in missing},
        }
    ranked = sorted(methods, key=lambda k: (len(methods[k]["out_of_spread"]), methods[k]["cost_share"]))
    best = next((k for k in ranked if not methods[k]["out_of_spread"]), None)
    default = default_method()
    return {
        "reference": REFERENCE,
        "default": default if default in out else None,
        "best": best,
        "closest": ranked[0] if ranked and best is None else None,
        "methods": methods,
    }


def summary(runs: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Per method: mean search cost, and per budget mean / min / max over seeds of the validated rFID and FID."""
    out: dict[str, Any] = {}
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        per: dict[str, Any] = {}
        for budget in sorted({b for r in mine for b in r["budgets"]}):
            cells = [r["budgets"][budget] for r in mine if budget in r["budgets"]]
            per[budget] = {
                metric: {
                    "mean": round(statistics.mean(c[metric] for c in cells), 4),
                    "min": min(c[metric] for c in cells),
                    "max": max(c[metric] for c in cells),
                }
                for metric in ("rfid", "fid", "macs_speedup")
            } | {"seeds": len(cells)}
        out[method] = {
            "search_cost_mean": round(statistics.mean(r["search_cost"] for r in mine), 1),
            "wall_seconds_mean": round(statistics.mean(r["wall_seconds"] for r in mine), 1),
            "budgets": per,
        }
    return out


if __name__ == "__main__":
    main()
