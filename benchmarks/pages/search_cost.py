"""A cheaper search (``benchmarks/search_cost.py``): pruning and reuse must save time without changing what the search
picks, so the page shows the wall-clock saved per search seed, the pruner replay behind the defaults, and each mode's
picks re-scored on noise no search saw."""

from __future__ import annotations

from ._format import Doc, Docs, num, pct, provenance, signed, spread, table, times
from ._schedules import schedule_label
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    """benchmarks/search_cost.py: the same search with and without pruning and reuse, at several search seeds; the
    pruner replay over the exhaustive studies that chose the default ladder and margin; each run's picks re-scored
    on noise no search saw, compared over the search seeds."""
    runs = d["runs"]
    phases = list(next(iter(runs.values()))["phase_seconds"])
    fast = f"`--fidelity {d['fidelity']} --prune-margin {d['prune_margin']:g} --reuse`"
    run_rows = []
    for key, r in runs.items():
        mode, _, seed = key.partition("-seed")
        span = (
            f" ({num(r['estimate_low_seconds'], 0)} .. {num(r['estimate_high_seconds'], 0)} s)"
            if r.get("estimate_high_seconds") and r["estimate_high_seconds"] != r["estimate_seconds"]
            else ""
        )
        run_rows.append(
            [
                mode if mode == "exhaustive" else fast,
                seed,
                f"{num(r['wall_seconds'], 0)} s",
                f"{num(r['estimate_seconds'], 0)} s ({signed(100 * r['estimate_error'], 0)} %){span}",
                f"{r['searched']} / {r['pruned']}",
                *(f"{num(r['phase_seconds'][p], 0)} s" for p in phases),
            ]
        )
    per_seed = ", ".join(f"seed {s}: {times(v)}" for s, v in d["wall_speedup_per_seed"].items())
    verdict = (
        f"**{times(d['wall_speedup'])} less wall time** with pruning and reuse over the {len(d['search_seeds'])} search seeds "
        f"({num(d['wall_seconds']['exhaustive'], 0)} s against {num(d['wall_seconds']['fast'], 0)} s; {per_seed})"
        + ("." if d["three_times_cheaper"] else ": **not** the 3x asked for.")
        + ("" if d["three_times_cheaper_every_seed"] or not d["three_times_cheaper"] else " **Not at every seed.**")
    )
    replay = [
        [
            ",".join(map(str, r["rungs"])),
            num(r["margin"]),
            f"{r['stopped']} / {r['candidates']}",
            pct(r["image_share"], 0),
            f"{r['baselines_stopped']} / {r['baselines']}",
            pct(r["baseline_image_share"], 0),
            " + ".join(map(str, r["false_stops_per_seed"])),
        ]
        for r in d["pruner_replay"]
    ]
    picks = []
    for b in d["budgets"]:
        for kind in ("best", "searched"):
            entry = b.get(kind)
            if entry is None:
                picks.append([b["budget"], kind, "(none within the budget in one mode)", "", "", "", ""])
                continue
            for mode in ("exhaustive", "fast"):
                e = entry[mode]
                schedules = "; ".join(f"{p['seed']}: {schedule_label(p['schedule'], bold=False)} {num(p['rfid'])}" for p in e["picks"])
                schedules += "".join(f"; {s}: none" for s in e["seeds_without"])
                within = "" if mode == "exhaustive" else ", ".join(f"{m}: {'yes' if entry['within_spread'][m] else '**no**'}" for m in ("rfid", "fid"))
                picks.append(
                    [
                        b["budget"] if mode == "exhaustive" else "",
                        kind if mode == "exhaustive" else "",
                        mode,
                        schedules,
                        spread(e["rfid"]),
                        spread(e["fid"]),
                        within,
                    ]
                )
    spread_note = ", ".join(f"{k}: {'every budget' if v else '**not every budget**'}" for k, v in d["all_within_spread"].items())
    return "\n\n".join(
        [
            f"{d['model']}, `--sampler {d['sampler']} --solver {d['solver']}`, T = {d['T']}, {d['n']} images, {d['trials']} trials, budgets 1/2 .. 1/5, "
            f"search seeds {', '.join(map(str, d['search_seeds']))}. " + verdict,
            table(["run", "search seed", "wall", "`--dry-run` estimate (error; range)", "searched / stopped", *phases], run_rows),
            f"The pruning rule replayed over the exhaustive studies (rungs {d['record_rungs']} recorded; a *false stop*: a stopped candidate whose full rFID "
            "was the best within one of its budgets when it was stopped):",
            table(["rungs", "margin at 64", "searched stopped", "their images", "baselines stopped", "their images", "false stops per seed"], replay),
            f"Each run's pick per budget re-scored on {d['validate_n']} images of validation seed {d['validate_seeds']} (noise no search saw); per mode the "
            "picks of the search seeds (seed: schedule rFID), their mean ± std over the search seeds; *within*: the fast mean at most the exhaustive mean plus "
            f"two standard deviations. Within the spread: {spread_note}.",
            table(["budget", "pick", "mode", "per search seed", "rFID", "FID", "within"], picks),
            provenance(name, d),
        ]
    )


SECTIONS = [Section("search_cost", "A cheaper search: pruning and reuse", 100, ("search_cost.json",), render)]
