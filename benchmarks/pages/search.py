"""Searched schedules against baselines and caching peers (``benchmarks/search_vs_baselines.py``,
``benchmarks/search_vs_peers.py``): one study per file, its picks per budget re-scored beside the best baseline or peer of
each family, so the page can say per budget who wins on FID and rFID. ``search_vs_peers.py --spread-from`` files re-score
the picks of one budget on more seeds and get their own table."""

from __future__ import annotations

from pathlib import Path

from ._format import Doc, Docs, code, num, provenance, rel, signed, table, times, yes
from ._schedules import classic, counts_text, schedule_label, teacher_name, winner
from ._section import Section

SEARCH_TITLES = {
    None: "DDIM on the searched steps (the paper's setting)",
    "ddim": "DDIM on the searched steps (the paper's setting)",
    "dpmpp-2m": "DPM-Solver++(2M) on the searched steps",
    "ddim-2m": "DDIM-2M on the searched steps (DDIM corrected to the teacher's own error)",
}

PEER_TITLES = {
    "search_vs_peers.json": "`builtin:digits-dit` (rectified flow), the peers beside",
    "search_vs_peers_unet_forecast.json": "The built-in UNet with the forecast gene",
    "search_vs_peers_unet_reuse.json": "The built-in UNet, reuse only",
    "search_vs_peers_spread.json": "How much of the 1/2 margin is noise: five seeds",
}


def sec_peers_spread(name: str, d: Doc) -> str:
    """search_vs_peers.py --spread-from: the picks of a budget re-scored on more seeds, paired differences."""
    seeds = ", ".join(map(str, d["seeds"]))
    rows = [
        [code(n), f"{num(v['fid']['mean'])} ± {num(v['fid']['std'])}", f"{num(v['rfid']['mean'], 3)} ± {num(v['rfid']['std'], 3)}" if "rfid" in v else ""]
        for n, v in d["schedules"].items()
    ]
    diffs = [
        [
            code(k),
            f"{signed(v['fid']['mean'])} ± {num(v['fid']['std'])}",
            f"{signed(v['rfid']['mean'], 3)} ± {num(v['rfid']['std'], 3)}",
            yes(d["searched_lower_on_mean"][k]),
        ]
        for k, v in d["differences"].items()
    ]
    return "\n\n".join(
        [
            f"The picks of budget {d['budgets']} in `{Path(d['from']).name}` re-scored on {d['n']} fresh images for each of seeds "
            f"{seeds} (seed 0: the noise the benchmark validated on); the same noise for every row, so the differences are paired.",
            provenance(name, d),
            table(["schedule", "FID (mean ± std)", "rFID (mean ± std)"], rows),
            table(["searched minus", "FID difference", "rFID difference", "searched lower on both means"], diffs),
        ]
    )


def sec_search(name: str, d: Doc) -> str:
    solver = d.get("solver")
    t = d["teacher"]
    intro = (
        f"One study on the same noise: {d['evaluated']['baselines']} baselines and {d['evaluated']['searched']} "
        f"`{d.get('strategy', 'evolution')}` trials on {d['n_search']} images (seed {d['seed']}). Teacher: {teacher_name(t['name'])}, FID "
        f"**{num(t['fid'])}** against `{t['real_reference']}`. Per budget, the searched schedules with the lowest "
        f"search rFID and the best baselines of each family of equal or higher cost were re-scored on "
        f"{d['validate_n']} images (rFID against the teacher, FID against held-out digits, wall-clock against the "
        "teacher's loop, one timing each) and each side picked by that rFID, never by FID. Margins = baseline minus "
        "searched (positive: the searched schedule is better); the winner column reads the margins."
    )
    parts = [intro]
    if solver and solver != "ddim":
        parts.append(
            f"The searched schedules run `{solver}` over their active steps of the teacher's grid; the teacher, its "
            "reference images and the classic baselines (families `ddim`, `deepcache`) keep DDIM. Families ending in "
            f"`+{solver}` are the same step plans run under `{solver}`: not classic baselines, shown so that the "
            "solver's own share of the gain is visible."
        )
    if solver == "ddim-2m":
        parts.append("A plan without null steps (DeepCache) runs exactly as DDIM under `ddim-2m`, so those `+ddim-2m` rows repeat the DDIM rows.")
    if d.get("peers") is not None:
        parts.append(
            "Peers (kind `peer`: diffusers' and cache-dit's caches run from their own code, MACs counted from "
            "what they computed) are compared like the baselines; a row marked *above the budget* is a family's "
            "cheapest setting where none reaches the budget. `beats_peers`: against every family but "
            "flexdiff's own uniform `forecast` plans; `..._at_budget`: only against families with a setting "
            "within the budget."
        )
    parts.append(provenance(name, d))
    h = d.get("headline")
    script = "search_vs_peers.py" if name.startswith("search_vs_peers") else "search_vs_baselines.py"
    parts.append(
        f"`headline` (the benchmark's acceptance pick, defined in `benchmarks/{script}`): "
        f"{schedule_label(h['schedule'])}, **{times(h['macs_speedup'])} MACs, {times(h['wall_speedup'])} wall-clock, "
        f"FID {num(h['fid'])}** against the teacher's {num(h['teacher_fid'])} ({rel(h['fid_ratio'])}), rFID "
        f"{num(h['rfid'])}; `within_5_percent`: {yes(h['within_5_percent'])}."
        if h
        else f"`headline` (defined in `benchmarks/{script}`): no searched schedule reached it."
    )
    rows: list[list[str]] = []
    genomes: list[str] = []
    summary: list[str] = []
    for b in d["budgets"]:
        s = b["searched_row"]
        comps = b["comparisons"]
        all_rows = [s] + [c["baseline"] for c in comps.values()]
        best_fid = min(r["fid"] for r in all_rows)
        best_rfid = min(r["rfid"] for r in all_rows)

        def cell(v: float, best: float) -> str:
            return f"**{num(v)}**" if v == best else num(v)

        rows.append(
            [
                b["budget"],
                schedule_label(s["name"]),
                s.get("sampler", "ddim"),
                counts_text(s),
                times(s["macs_speedup"]),
                times(s["wall_speedup"]),
                cell(s["fid"], best_fid),
                cell(s["rfid"], best_rfid),
                "",
                "",
                "",
            ]
        )
        seen: dict[tuple[float, float], str] = {}
        classic_notes = []
        for fam, c in comps.items():
            r = c["baseline"]
            label = code(r["name"])
            key = (r["fid"], r["rfid"])
            w = winner(c["fid_margin"], c["rfid_margin"])
            if key in seen:
                w += f"; same figures as {seen[key]}"
            else:
                seen[key] = code(r["name"])
            if not classic(fam):
                label += " (solver plan)"
            if not c.get("within_budget", True):
                label += " (above the budget)"
            rows.append(
                [
                    "",
                    label,
                    r.get("sampler", "ddim"),
                    counts_text(r),
                    times(r["macs_speedup"]),
                    times(r["wall_speedup"]),
                    cell(r["fid"], best_fid),
                    cell(r["rfid"], best_rfid),
                    signed(c["fid_margin"]),
                    signed(c["rfid_margin"]),
                    w,
                ]
            )
            if classic(fam):
                classic_notes.append(f"{code(r['name'])}: {winner(c['fid_margin'], c['rfid_margin']).replace('**', '')}")
        genomes.append(f"- {b['budget']}: `{s['genome']}` (`{s['name']}`)")
        line = f"- {b['budget']}: against the {'baselines and peers' if d.get('peers') is not None else 'classic baselines'}, winner " + "; ".join(
            classic_notes
        )
        line += "".join(f". `{k}`: {yes(v)}" for k, v in b.items() if k.startswith("beats_"))
        summary.append(line + ".")
    parts.append(
        table(["budget", "schedule", "sampler", "full / partial / null", "MACs x", "wall x", "FID", "rFID", "FID margin", "rFID margin", "winner"], rows)
    )
    parts.append("Bold: the lowest FID and the lowest rFID of each budget. Summary (read from the margins):\n\n" + "\n".join(summary))
    parts.append("Searched genomes (segment `branch:interval`, in order):\n\n" + "\n".join(genomes))
    return "\n\n".join(parts)


def render_peers(name: str, d: Doc, docs: Docs) -> str:
    """A peers study, or its ``--spread-from`` re-scoring (the file with paired ``differences``)."""
    return sec_peers_spread(name, d) if "differences" in d else sec_search(name, d)


SECTIONS = [
    Section(
        "search_vs_baselines",
        "Searched schedules against the baselines",
        40,
        ("search_vs_baselines*.json",),
        lambda name, d, docs: sec_search(name, d),
        subtitle=lambda name, d: SEARCH_TITLES.get(d.get("solver"), f"`--solver {d.get('solver')}`"),
        first=("search_vs_baselines.json", "search_vs_baselines_dpmpp.json", "search_vs_baselines_ddim2m.json"),
    ),
    Section(
        "search_vs_peers",
        "Searched schedules against the caching peers",
        50,
        ("search_vs_peers*.json",),
        render_peers,
        subtitle=lambda name, d: PEER_TITLES.get(name),
    ),
]
