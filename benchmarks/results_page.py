"""Write docs/results.md from the benchmark outputs in benchmarks/results/*.json.

Every figure on the page is read from those files; this script holds only the prose that says what each benchmark
measures. Sections are rendered in a fixed order, rows in file order (or sorted), floats with fixed precision, so the
same JSON files always give the same page byte for byte.

    python benchmarks/results_page.py            # writes docs/results.md
    python benchmarks/results_page.py --check    # exit 1 if docs/results.md is not what this script would write

Standard library only (json, pathlib, argparse, shlex, math, decimal), so it runs without the package installed.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"
RESULTS_LINK = "../benchmarks/results"  # relative to docs/


# ----------------------------------------------------------------------------------------------------------------
# formatting


def num(x: float, nd: int = 2) -> str:
    """Fixed-point, rounded half up from the shortest decimal form of ``x`` (35.415 -> '35.42', as a reader rounds)."""
    q = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-nd), rounding=ROUND_HALF_UP)
    s = f"{q:f}"
    if s.startswith("-") and q == 0:
        s = s[1:]
    return s


def signed(x: float, nd: int = 2) -> str:
    s = num(x, nd)
    return s if s.startswith("-") or float(s) == 0 else "+" + s


def times(x: float, nd: int = 2) -> str:
    return num(x, nd) + "x"


def pct(ratio: float, nd: int = 1) -> str:
    return num(100 * ratio, nd) + " %"


def rel(ratio: float, nd: int = 1) -> str:
    """A ratio to a reference as a signed percentage change (1.0185 -> '+1.8 %')."""
    return signed(100 * (ratio - 1), nd) + " %"


def spread(s: dict[str, float]) -> str:
    return f"{num(s['mean'])} ± {num(s['std'])}"


def integer(x: int) -> str:
    return f"{x:,}"


def giga(x: float) -> str:
    return num(x / 1e9, 1)


def mega(x: float) -> str:
    return num(x / 1e6, 2) + " M"


def minsec(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s"


def yes(flag: Any) -> str:
    return "yes" if flag else "no"


def code(s: str) -> str:
    return f"`{s}`"


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def file_link(name: str) -> str:
    return f"[`benchmarks/results/{name}`]({RESULTS_LINK}/{name})"


def command_of(d: dict[str, Any]) -> str:
    c = d.get("command")
    if isinstance(c, list):
        return shlex.join(str(a) for a in c)
    return str(c) if c else "(not recorded)"


def machine_text(m: dict[str, Any] | None) -> str:
    if not m:
        return "not recorded in this file"
    gpu = f"GPU {m['cuda']}" if m.get("cuda") else "no GPU"
    return (f"{m.get('cores_visible')}-core {m.get('cpu')} CPU, {gpu}, torch {m.get('torch')} "
            f"(torch threads: {m.get('torch_threads')}), Python {m.get('python')}, {m.get('platform')}")


def provenance(name: str, d: dict[str, Any], machine_note: str | None = None) -> str:
    cmd = command_of(d)
    words = cmd.split()
    where = ""
    if len(words) > 1 and words[1].endswith(".py") and "/" not in words[1]:
        where = " (as recorded: run inside `benchmarks/`)"
    lines = [f"- File: {file_link(name)}", f"- Command: `{cmd}`{where}"]
    lines.append(f"- Date: {d['date']}" if d.get("date") else "- Date: not recorded in this file")
    lines.append(f"- Machine: {machine_note or machine_text(d.get('machine'))}")
    return "\n".join(lines)


def anchor(key: str) -> str:
    return f'<a id="{key}"></a>'


# ----------------------------------------------------------------------------------------------------------------
# schedules


def parse_genome_name(name: str) -> list[tuple[int, int]] | None:
    """'genome-b0i3_b2i1f' -> [(0, 3), (2, 1)] (``f``: forecast partial steps); None for a baseline name."""
    if not name.startswith("genome-"):
        return None
    body = name[len("genome-"):].split("@")[0]
    segs = []
    for part in body.split("_"):
        b, i = part[1:].split("i")
        segs.append((int(b), int(i.rstrip("f"))))
    return segs


def step_counts(steps: list[str]) -> tuple[int, int, int]:
    full = sum(1 for s in steps if s == "full")
    partial = sum(1 for s in steps if s.startswith(("partial", "forecast")))
    null = sum(1 for s in steps if s == "null")
    return full, partial, null


def counts_text(row: dict[str, Any]) -> str:
    if row.get("steps"):
        return " / ".join(str(c) for c in step_counts(row["steps"]))
    if "counts" in row:
        c = row["counts"]
        return f"{c['full']} / {c['partial']} / {c['null']}"
    return ""


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def schedule_label(name: str, sampler: str | None = None, bold: bool = True) -> str:
    segs = parse_genome_name(name)
    if segs is None:
        return code(name)
    partial = sum(i - 1 for _, i in segs)
    solver = f", {sampler}" if sampler else ""
    word = "**searched**" if bold else "searched"
    return f"{word}{solver} ({plural(len(segs), 'segment')}, {plural(partial, 'partial step')})"


def winner(fid_margin: float, rfid_margin: float) -> str:
    """Margins are baseline minus searched: positive means the searched schedule is better."""
    def side(m: float) -> str:
        return "searched" if m > 0 else ("baseline" if m < 0 else "tie")
    f, r = side(fid_margin), side(rfid_margin)
    if f == r:
        return f"**{f}** (both)" if f == "baseline" else f"{f} (both)"
    return f"FID: {'**baseline**' if f == 'baseline' else f}, rFID: {'**baseline**' if r == 'baseline' else r}"


def classic(family: str) -> bool:
    return "+" not in family


# ----------------------------------------------------------------------------------------------------------------
# sections


def sec_teacher_quality(name: str, d: dict[str, Any]) -> str:
    rows = [
        [f"teacher, {d['sampler']} samples ({d['n']}) vs held-out digits ({d['n_reference']})", f"**{num(d['fid_teacher_vs_heldout'])}**"],
        [f"{d['n']} real training images vs the same held-out digits (the floor at this sample size)", f"**{num(d['fid_train_vs_heldout'])}**"],
        ["ratio (teacher / floor)", f"**{num(d['ratio'])}**"],
        ["acceptance: ratio at most", num(d["acceptance_ratio_max"])],
        ["sampling wall-clock", f"{num(d['sampling_wall_seconds'], 1)} s"],
    ]
    return "\n\n".join([
        f"How good is the built-in teacher `{d['model']}`? FID of its samples against the held-out digits, beside the FID of as many "
        f"real training images against the same held-out set (`{d['features']}` features, seed {d['seed']}).",
        provenance(name, d),
        table(["measurement", "value"], rows),
    ])


def sec_step_types(name: str, d: dict[str, Any]) -> str:
    rows = []
    for s in d["schedules"]:
        rows.append([code(s["schedule"]), counts_text(s), times(s["macs_speedup"]), times(s["wall_speedup"]),
                     pct(s["wall_vs_macs_gap"]), yes(s["within_15pct"]), num(s["rfid_vs_teacher"]), num(s["fid_vs_heldout"])])
    full = d["full_step_macs_per_sample"]
    lat = d["step_latency"]
    brows = []
    for b, macs in enumerate(d["partial_step_macs_per_sample"]):
        brows.append([str(b), mega(macs), pct(macs / full), f"{num(lat['partial'][b], 3)} s", pct(lat["partial"][b] / lat["full"])])
    text = [
        f"Measured wall-clock speed-up against MACs speed-up on the built-in model ({d['n']} images, {d['teacher']} "
        f"teacher, seed {d['seed']}): the whole sampling loop is timed (median of {d['repeats']} repeats, schedules "
        "interleaved so drift hits all alike) and compared with the plain loop without hooks. rFID is FID against "
        "the teacher's own images from the same noise, FID against the held-out digits (at this sample size FID "
        "against real data is noisy, which is why the search scores rFID).",
        provenance(name, d),
        f"Plain loop: {num(d['plain_loop_wall_seconds'], 1)} s (median; all: "
        + ", ".join(num(x, 1) for x in d["plain_loop_wall_seconds_all"]) + " s). Hook overhead of an all-full schedule: "
        f"**{signed(100 * d['hook_overhead_all_full'], 1)} %** (`hook_overhead_under_3pct`: {yes(d['hook_overhead_under_3pct'])}). "
        f"Teacher FID at this n: {num(d['fid_teacher_vs_heldout'])}. The gap is `wall_vs_macs_gap` "
        "(1 - wall speed-up / MACs speed-up); `within_15pct` is the benchmark's own check.",
        table(["schedule", "full / partial / null", "MACs x", "wall x", "gap", "within_15pct", "rFID", "FID"], rows),
        f"Cost of one step per branch (full step: {mega(full)}MACs per sample; per-call latency at batch "
        f"{lat['batch_size']}: full {num(lat['full'], 3)} s). A partial step at a shallow branch costs a larger share "
        "of a full step's time than of its MACs on this CPU: its few convolutions have few channels, where oneDNN "
        "runs far below its peak, and the SiLU / GroupNorm passes do not shrink with the MACs.",
        table(["branch", "partial-step MACs", "share of full (MACs)", "latency", "share of full (time)"], brows),
    ]
    return "\n\n".join(text)


def sec_rfid_vs_fid(name: str, d: dict[str, Any]) -> str:
    s = d["schedules"]
    rfid_total = d["rfid_eval_seconds_total"] + d["teacher_reference_seconds_once"]
    summary = [
        ["Kendall tau (rFID vs FID)", f"**{num(d['kendall_tau'])}**"],
        ["p-value", f"{d['p_value']:.0e}"],
        ["acceptance: tau at least", num(d["acceptance_tau_min"])],
        ["schedules (random genomes)", str(len(s))],
        ["MACs speed-up range", f"{times(min(x['macs_speedup'] for x in s))} to {times(max(x['macs_speedup'] for x in s))}"],
        ["FID range", f"{num(min(x['fid'] for x in s), 1)} to {num(max(x['fid'] for x in s), 1)}"],
        ["time to score all by rFID (incl. the teacher reference, built once)", f"{num(rfid_total, 1)} s"],
        ["time to score all by FID", f"{num(d['fid_eval_seconds_total'], 1)} s"],
        ["evaluation time saved", f"**{pct(d['time_saved_fraction'], 0)}**"],
    ]
    rows = [[code(x["genome"]), times(x["macs_speedup"]), num(x["rfid"]), num(x["fid"])]
            for x in sorted(s, key=lambda x: (x["rfid"], x["genome"]))]
    return "\n\n".join([
        f"Does rFID rank schedules like FID against real data? rFID on {d['n_rfid']} images (the search's sample "
        f"size) against the {d['teacher']} teacher's images from the same noise; FID on {d['n_fid']} images against "
        f"{d['n_real_reference']} held-out real digits; both with the `digits` features, seed {d['seed']}.",
        provenance(name, d),
        table(["measurement", "value"], summary),
        "The schedules, by rFID:",
        table(["genome", "MACs x", "rFID", "FID"], rows),
    ])


def teacher_name(name: str) -> str:
    """'teacher (ddim-50)' -> '`ddim-50`'."""
    inner = name[len("teacher ("):-1] if name.startswith("teacher (") and name.endswith(")") else name
    return code(inner)


SEARCH_TITLES = {
    None: "DDIM on the searched steps (the paper's setting)",
    "ddim": "DDIM on the searched steps (the paper's setting)",
    "dpmpp-2m": "DPM-Solver++(2M) on the searched steps",
    "ddim-2m": "DDIM-2M on the searched steps (DDIM corrected to the teacher's own error)",
}


def sec_peers_spread(name: str, d: dict[str, Any]) -> str:
    """search_vs_peers.py --spread-from: the picks of a budget re-scored on more seeds, paired differences."""
    seeds = ", ".join(map(str, d["seeds"]))
    rows = [[code(n), f"{num(v['fid']['mean'])} ± {num(v['fid']['std'])}", f"{num(v['rfid']['mean'], 3)} ± {num(v['rfid']['std'], 3)}" if "rfid" in v else ""]
            for n, v in d["schedules"].items()]
    diffs = [[code(k), f"{signed(v['fid']['mean'])} ± {num(v['fid']['std'])}", f"{signed(v['rfid']['mean'], 3)} ± {num(v['rfid']['std'], 3)}",
              yes(d["searched_lower_on_mean"][k])] for k, v in d["differences"].items()]
    return "\n\n".join([
        f"The picks of budget {d['budgets']} in `{Path(d['from']).name}` re-scored on {d['n']} fresh images for each of seeds "
        f"{seeds} (seed 0: the noise the benchmark validated on); the same noise for every row, so the differences are paired.",
        provenance(name, d),
        table(["schedule", "FID (mean ± std)", "rFID (mean ± std)"], rows),
        table(["searched minus", "FID difference", "rFID difference", "searched lower on both means"], diffs)])


def sec_search(name: str, d: dict[str, Any]) -> str:
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
            "solver's own share of the gain is visible.")
    if solver == "ddim-2m":
        parts.append("A plan without null steps (DeepCache) runs exactly as DDIM under `ddim-2m`, so those "
                     "`+ddim-2m` rows repeat the DDIM rows.")
    if d.get("peers") is not None:
        parts.append("Peers (kind `peer`: diffusers' and cache-dit's caches run from their own code, MACs counted from "
                     "what they computed) are compared like the baselines; a row marked *above the budget* is a family's "
                     "cheapest setting where none reaches the budget. `beats_peers`: against every family but "
                     "flexdiff's own uniform `forecast` plans; `..._at_budget`: only against families with a setting "
                     "within the budget.")
    parts.append(provenance(name, d))
    h = d.get("headline")
    script = "search_vs_peers.py" if name.startswith("search_vs_peers") else "search_vs_baselines.py"
    parts.append(
        f"`headline` (the benchmark's acceptance pick, defined in `benchmarks/{script}`): "
        f"{schedule_label(h['schedule'])}, **{times(h['macs_speedup'])} MACs, {times(h['wall_speedup'])} wall-clock, "
        f"FID {num(h['fid'])}** against the teacher's {num(h['teacher_fid'])} ({rel(h['fid_ratio'])}), rFID "
        f"{num(h['rfid'])}; `within_5_percent`: {yes(h['within_5_percent'])}." if h else
        f"`headline` (defined in `benchmarks/{script}`): no searched schedule reached it.")
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

        rows.append([b["budget"], schedule_label(s["name"]), s.get("sampler", "ddim"), counts_text(s),
                     times(s["macs_speedup"]), times(s["wall_speedup"]), cell(s["fid"], best_fid),
                     cell(s["rfid"], best_rfid), "", "", ""])
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
            rows.append(["", label, r.get("sampler", "ddim"), counts_text(r), times(r["macs_speedup"]),
                         times(r["wall_speedup"]), cell(r["fid"], best_fid), cell(r["rfid"], best_rfid),
                         signed(c["fid_margin"]), signed(c["rfid_margin"]), w])
            if classic(fam):
                classic_notes.append(f"{code(r['name'])}: {winner(c['fid_margin'], c['rfid_margin']).replace('**', '')}")
        genomes.append(f"- {b['budget']}: `{s['genome']}` (`{s['name']}`)")
        line = f"- {b['budget']}: against the {'baselines and peers' if d.get('peers') is not None else 'classic baselines'}, winner " + "; ".join(classic_notes)
        line += "".join(f". `{k}`: {yes(v)}" for k, v in b.items() if k.startswith("beats_"))
        summary.append(line + ".")
    parts.append(table(["budget", "schedule", "sampler", "full / partial / null", "MACs x", "wall x", "FID", "rFID",
                        "FID margin", "rFID margin", "winner"], rows))
    parts.append("Bold: the lowest FID and the lowest rFID of each budget. Summary (read from the margins):\n\n"
                 + "\n".join(summary))
    parts.append("Searched genomes (segment `branch:interval`, in order):\n\n" + "\n".join(genomes))
    return "\n\n".join(parts)


def seed_label(key: str, entry: dict[str, Any]) -> str:
    if key == "teacher":
        return "teacher"
    base, _, solver = key.rpartition(" (")
    solver = solver.rstrip(")")
    if parse_genome_name(base) is not None:
        return schedule_label(base, solver)
    return f"{code(base)} ({solver})"


def seed_pairs(d: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for key, diff in d["differences"].items():
        a, b = key.split(" - ")
        out.append((a, b, diff))
    return out


def lower_count(a: list[float], b: list[float]) -> int:
    return sum(1 for x, y in zip(a, b) if x < y)


def sec_seed_spread(name: str, d: dict[str, Any], docs: dict[str, dict[str, Any]]) -> str:
    sch = d["schedules"]
    seeds = d["seeds"]
    source_seeds = sorted({docs[Path(r).name]["seed"] for r in d["results"] if Path(r).name in docs and "seed" in docs[Path(r).name]})
    reused = [s for s in seeds if s in source_seeds]
    intro = (
        f"The validated schedules of budget(s) {d['budget']} from "
        + ", ".join(code(r) for r in d["results"])
        + f", run again on {d['n']} images from each of the noise seeds {', '.join(str(s) for s in seeds)} (same "
        "model, same teacher grid): FID against the held-out digits, rFID against the teacher's images from the same "
        "seed. Mean ± sample standard deviation over the seeds; differences are paired (one noise per seed for both "
        "schedules)." + (f" Seed {', '.join(str(s) for s in reused)} is the noise the search benchmark validated on, "
                         "so it reproduces those figures." if reused else
                         " None of these seeds is the noise the search benchmark validated on."))
    rows = []
    genomes = []
    for key, e in sch.items():
        rows.append([seed_label(key, e), e.get("budget", d["budget"] if key != "teacher" else ""),
                     times(e["macs_speedup"]), " / ".join(num(x) for x in e["fid"]), spread(e["fid_spread"]),
                     " / ".join(num(x) for x in e["rfid"]) if "rfid" in e else "",
                     spread(e["rfid_spread"]) if "rfid_spread" in e else ""])
        base = key.rpartition(" (")[0]
        if parse_genome_name(base) is not None:
            genomes.append(f"- `{base}`")
    drows = []
    for a, b, diff in seed_pairs(d):
        sa, sb = sch[a], sch[b]
        f_low = f"{lower_count(sa['fid'], sb['fid'])} of {len(seeds)}"
        se = diff["fid"]["std"] / math.sqrt(len(seeds))
        tstat = num(diff["fid"]["mean"] / se, 1) if se > 0 else ""
        if "rfid" in diff:
            r_low = f"{lower_count(sa['rfid'], sb['rfid'])} of {len(seeds)}"
            rcell = spread(diff["rfid"])
            both = diff["fid"]["mean"] < 0 and diff["rfid"]["mean"] < 0
            worse = diff["fid"]["mean"] > 0 and diff["rfid"]["mean"] > 0
            w = "searched (both means)" if both else ("**baseline** (both means)" if worse else
                ("FID: " + ("searched" if diff["fid"]["mean"] < 0 else "**baseline**") + ", rFID: "
                 + ("searched" if diff["rfid"]["mean"] < 0 else "**baseline**")))
        else:
            r_low, rcell, w = "", "", "(teacher: reference)"
        drows.append([seed_label(a, sa), seed_label(b, sb), spread(diff["fid"]), f_low, tstat, rcell, r_low, w])
    parts = [intro]
    if name == "seed_spread_confirm.json":
        parts.append(
            "**Declared before it was run** (in `benchmarks/seed_spread.py`, commit bc4677e): on these seeds, noise "
            "no search or validation had used, the searched DDIM-2M schedule confirms the result of its budget only "
            "if its mean FID and mean rFID are both lower than those of each baseline the benchmark picked there.")
    parts.append(provenance(name, d))
    parts.append(table(["schedule", "budget", "MACs x", "FID per seed", "FID mean ± sd", "rFID per seed", "rFID mean ± sd"], rows))
    parts.append("Paired differences (first minus second; negative: the first is better). `t` = mean / (sd / sqrt(seeds)) of the FID difference.")
    parts.append(table(["schedule", "minus", "FID diff mean ± sd", "lower FID on", "t (FID)", "rFID diff mean ± sd", "lower rFID on", "winner"], drows))
    if name == "seed_spread_confirm.json":
        verdicts = []
        for a, b, diff in seed_pairs(d):
            if b == "teacher" or "rfid" not in diff:
                continue
            ok = sch[a]["fid_spread"]["mean"] < sch[b]["fid_spread"]["mean"] and sch[a]["rfid_spread"]["mean"] < sch[b]["rfid_spread"]["mean"]
            verdicts.append((b, ok))
        confirmed = all(ok for _, ok in verdicts) and bool(verdicts)
        parts.append(f"**Verdict: {'confirmed' if confirmed else 'not confirmed'}** ("
                     + "; ".join(f"against {seed_label(b, sch[b])}: {'both means lower' if ok else 'not both lower'}" for b, ok in verdicts) + ").")
    if genomes:
        parts.append("Searched genomes:\n\n" + "\n".join(genomes))
    return "\n\n".join(parts)


def seed_union(docs: list[tuple[str, dict[str, Any]]]) -> str:
    """Pairs that appear in several seed_spread files with disjoint seeds: the counts over all their seeds."""
    pooled: dict[tuple[str, str], list[tuple[str, list[int], list[float], list[float], list[float], list[float]]]] = {}
    for name, d in docs:
        for a, b, diff in seed_pairs(d):
            if "rfid" not in diff:
                continue
            sa, sb = d["schedules"][a], d["schedules"][b]
            pooled.setdefault((a, b), []).append((name, d["seeds"], sa["fid"], sb["fid"], sa["rfid"], sb["rfid"]))
    lines = []
    for (a, b), items in sorted(pooled.items()):
        if len(items) < 2:
            continue
        seeds = [s for it in items for s in it[1]]
        if len(set(seeds)) != len(seeds):
            continue
        f = sum(lower_count(it[2], it[3]) for it in items)
        r = sum(lower_count(it[4], it[5]) for it in items)
        exceptions = [str(s) for it in items for s, x, y in zip(it[1], it[2], it[3]) if not x < y]
        files = ", ".join(code(it[0]) for it in items)
        lines.append(f"- {seed_label(a, {})} against {seed_label(b, {})}, seeds {min(seeds)}-{max(seeds)} ({files}): "
                     f"lower FID on {f} of {len(seeds)} seeds, lower rFID on {r} of {len(seeds)}"
                     + (f"; FID not lower on seed(s) {', '.join(exceptions)}" if exceptions else "") + ".")
    if not lines:
        return ""
    return "Pooled over the files above (same schedules, disjoint seeds):\n\n" + "\n".join(lines)


def sec_spacing(name: str, d: dict[str, Any]) -> str:
    ks = sorted({r["k"] for r in d["rows"]})
    powers = sorted({r["spacing"] for r in d["rows"]})
    by = {(r["k"], r["spacing"]): r for r in d["rows"]}
    ref = [p for p in powers if p == 1.0]
    headers = ["k"] + [(f"**p = {num(p, 2)}** (DDIM-k)" if p == 1.0 else f"p = {num(p, 2)}") for p in powers]
    rows = []
    notes = []
    for k in ks:
        rows.append([f"{k}: FID / rFID"] + [f"{num(by[(k, p)]['fid'])} / {num(by[(k, p)]['rfid'])}" if (k, p) in by else "" for p in powers])
        if ref and (k, ref[0]) in by:
            r0 = by[(k, ref[0])]
            both = [num(p, 2) for p in powers if (k, p) in by and p != ref[0] and by[(k, p)]["fid"] < r0["fid"] and by[(k, p)]["rfid"] < r0["rfid"]]
            fid_only = [num(p, 2) for p in powers if (k, p) in by and p != ref[0] and by[(k, p)]["fid"] < r0["fid"] and not by[(k, p)]["rfid"] < r0["rfid"]]
            rfid_only = [num(p, 2) for p in powers if (k, p) in by and p != ref[0] and by[(k, p)]["rfid"] < r0["rfid"] and not by[(k, p)]["fid"] < r0["fid"]]
            notes.append(f"- k = {k}: powers better than equal segments on both metrics: {', '.join(both) or 'none'}; "
                         f"lower FID only: {', '.join(fid_only) or 'none'}; lower rFID only: {', '.join(rfid_only) or 'none'}.")
    best = ", ".join(f"k = {k}: p = {num(v, 2)}" for k, v in sorted(d["best_spacing_by_fid"].items(), key=lambda kv: int(kv[0])))
    return "\n\n".join([
        "Does moving the segment boundaries help? DDIM-k with its k full steps at the starts of segments of spacing "
        "power p: segment s starts at floor(T (1 - (1 - s/k)^p)), so p > 1 packs the steps towards t = 0 and p < 1 "
        f"towards the noisy end; the equal-segment row is DDIM-k itself. {d['n']} samples from the same noise (seed "
        f"{d['seed']}); FID against held-out digits, rFID against the teacher's DDIM-50 images (teacher FID "
        f"{num(d['teacher_fid'])}). Quality only: the per-row seconds in the JSON are not a timing claim. This "
        "benchmark decides the default of `flexdiff search --spacings`.",
        provenance(name, d),
        table(headers, rows),
        "\n".join(notes) + f"\n- `best_spacing_by_fid`: {best}.",
    ])


def sec_sd15(name: str, d: dict[str, Any]) -> str:
    fam = d["full_step_gmacs_by_op_family"]
    b1, b2 = d["batch1"], d["batch2_cfg"]
    summary = [
        ["parameters (published)", f"{integer(d['parameters'])} ({integer(d['published_parameters'])})"],
        ["full step, one UNet call", f"**{num(d['full_step_gmacs'], 1)} GMACs**"],
        ["full step with CFG (batch 2)", f"{num(d['full_step_gmacs_cfg_batch2'], 1)} GMACs"],
    ]
    for k in sorted(fam):
        summary.append([f"of which {k}", f"{num(fam[k], 1)} GMACs"])
    summary += [
        ["convolutions + linear layers only (what module-based counters see)", f"**{num(d['full_step_gmacs_conv_and_linear_only'], 1)} GMACs**"],
        ["published figure", f"{num(d['published_gmacs'], 1)} GMACs"],
        ["convolutions + linear vs published", signed(100 * d["conv_and_linear_only_vs_published"], 2) + " %"],
        ["full step wall-clock, batch 1 / batch 2 (best of rounds)", f"{num(b1['full_seconds_min'], 1)} s / {num(b2['full_seconds_min'], 1)} s"],
        ["`all_within_15pct` (every wall ratio close to its MACs ratio, the benchmark's check)", yes(d["all_within_15pct"])],
        ["benchmark wall-clock", minsec(d["total_seconds"])],
    ]
    rows = []
    gaps = []
    for b in d["branches"]:
        w2 = pct(b["batch2_wall_ratio"]) if "batch2_wall_ratio" in b else ""
        g2 = signed(100 * b["batch2_wall_vs_macs"], 1) + " %" if "batch2_wall_vs_macs" in b else ""
        rows.append([str(b["branch"]), code(b["skip"]), giga(b["partial_macs"]), pct(b["macs_ratio"]),
                     pct(b["batch1_wall_ratio"]), w2, signed(100 * b["batch1_wall_vs_macs"], 1) + " % / " + (g2 or "-"),
                     yes(b["within_15pct"])])
        gaps.append((abs(b["batch1_wall_vs_macs"]), "batch 1", b["branch"]))
        if "batch2_wall_vs_macs" in b:
            gaps.append((abs(b["batch2_wall_vs_macs"]), "batch 2", b["branch"]))
    g = max(gaps)
    reach = d["reachable_speedups_batch1"]
    dc = [r for r in reach if r["schedule"].startswith("deepcache-")]
    ns = sorted({int(r["schedule"].split("-")[1][1:]) for r in dc})
    brs = sorted({int(r["schedule"].split("-b")[1]) for r in dc})
    cell = {(int(r["schedule"].split("-")[1][1:]), int(r["schedule"].split("-b")[1])): r for r in dc}
    rrows = [[f"N = {n}"] + [times(cell[(n, b)]["macs_speedup"]) if (n, b) in cell else "" for b in brs] for n in ns]
    ddim = sorted((r for r in reach if r["schedule"].startswith("ddim-")), key=lambda r: int(r["schedule"].split("-")[1]))
    pred = [[code(r["schedule"]), counts_text(r), times(r["macs_speedup"]), times(r["predicted_wall_speedup"])]
            for r in [cell[(n, brs[0])] for n in ns if (n, brs[0]) in cell] + ddim]
    return "\n\n".join([
        f"{d['model']}: cost only, no quality claim (cost does not depend on the weights). Input: one "
        f"{'x'.join(str(x) for x in d['latent_shape'])} latent with {'x'.join(str(x) for x in d['encoder_states'])} text "
        "encoder states; batch 2 is one image under classifier-free guidance (both halves in one UNet call). MACs "
        "come from flexdiff's cost model (FlopCounterMode plus the CPU fused-attention formula) per op family, so the "
        "difference to the published figure can be located. Wall-clock: each round runs one full step (which fills "
        "the cache of every branch) then a partial step at each branch through the same hooks as `flexdiff sample`; "
        "partial / full is the best-of-rounds ratio (robust to other jobs taking the CPU in bursts). `--macs-only` "
        "recounts the MACs in seconds on the meta device.",
        provenance(name, d),
        table(["measurement", "value"], summary),
        "Partial steps, share of a full step (MACs against measured wall-clock; batch 2 only where timed):",
        table(["branch", "skip", "GMACs", "MACs", "wall b1", "wall b2 (CFG)", "wall - MACs, b1 / b2", "within_15pct"], rows),
        f"Largest gap between a wall ratio and its MACs ratio: {signed(100 * g[0], 1)} % ({g[1]}, branch {g[2]}).",
        "Reachable MACs speed-ups over a DDIM-50 teacher, DeepCache uniform N at each branch (columns), batch 1:",
        table(["DeepCache"] + [f"b{b}" for b in brs], rrows),
        f"MACs against predicted wall-clock speed-up (from the measured step times, batch 1), DeepCache at branch {brs[0]} and DDIM-k:",
        table(["schedule", "full / partial / null", "MACs x", "predicted wall x"], pred),
    ])


def related_machine(name: str, d: dict[str, Any], docs: dict[str, dict[str, Any]]) -> str | None:
    out = d.get("config", {}).get("out")
    for other, od in sorted(docs.items()):
        if other != name and od.get("base_run") == out and od.get("machine"):
            return (f"not recorded in this file (a `flexdiff compress` `results.json`); {code(other)}, which reuses "
                    f"this run's folder `{out}`, records {machine_text(od['machine'])}")
    return None


def sec_compress_run(name: str, d: dict[str, Any], docs: dict[str, dict[str, Any]]) -> str:
    c, t, s = d["config"], d["teacher"], d["student"]
    secs = d["seconds"]
    phases = [k for k in secs if k != "this_process"]
    hist = d["retrain"]["history"]
    intro = (
        f"`flexdiff compress` on `{c['model']}` with data `{c['data']}`: budget {num(c['macs_ratio'])} of the "
        f"teacher's MACs and {num(c['params_ratio'])} of its parameters, `--minutes {num(c['minutes'], 0)}`, "
        f"`--alpha {c['alpha']}`, seed {c['seed']}; FID with DDIM-50, {c['fid_n']} samples against "
        f"`{c['reference']}` (`{c['features']}` features). {c['distill_steps_per_block']} distillation steps per "
        f"block; retraining planned for {c['retrain_steps']} steps, last logged step {hist[-1]['step']} "
        f"(`cut_by_deadline`: {yes(d['retrain']['cut_by_deadline'])}).")
    main = [
        ["teacher", mega(t["macs"]), integer(t["params"]), num(t["fid"]), ""],
        ["student", f"{mega(s['macs'])} (**{pct(s['macs_ratio'])}**)", f"{integer(s['params'])} (**{pct(s['params_ratio'])}**)",
         f"**{num(s['fid'])}**", rel(s["fid"] / t["fid"])],
    ]
    blocks = [[b["block"], b["choice"], f"{mega(b['macs'])} / {mega(b['teacher_macs'])}", pct(b["macs"] / b["teacher_macs"], 0),
               f"{integer(b['params'])} / {integer(b['teacher_params'])}", num(b["loss"], 4)] for b in d["blocks"]]
    tsec = [[k, num(secs[k], 1) + " s"] for k in phases]
    tsec.append(["sum of phases", f"{num(sum(secs[k] for k in phases), 1)} s ({minsec(sum(secs[k] for k in phases))})"])
    tsec.append(["this process (`this_process`)", f"{num(secs['this_process'], 1)} s ({minsec(secs['this_process'])})"])
    return "\n\n".join([
        intro,
        provenance(name, d, related_machine(name, d, docs)),
        table(["", "MACs per step", "parameters", "FID", "vs teacher"], main),
        "Per-block choices (width of each residual layer relative to the teacher's; block loss relative to the "
        "teacher's output power):",
        table(["block", "choice", "MACs student / teacher", "share", "parameters student / teacher", "loss"], blocks),
        "Phase wall-clock:",
        table(["phase", "seconds"], tsec),
    ])


def sec_compress_ablation(name: str, d: dict[str, Any]) -> str:
    a, b = d["a_alpha"], d["b_search"]
    arms = [("(a) " + a["base_alpha"] + " (the run's own)", a["base_alpha"], "local", a["base"])]
    for k, v in a["arms"].items():
        arms.append(("(a) " + k, k, "local (same)", v))
    g = b["global"]
    arms.append((f"(b) global ranking of {g['samples']} sampled whole students (output loss, shared weights)", a["base_alpha"], "global", g))
    best = min(v["student_fid"] for *_, v in arms)
    rows = []
    for label, alpha, choice, v in arms:
        fid = num(v["student_fid"])
        rows.append([label, code(alpha), choice, f"{pct(v['macs_ratio'])} / {pct(v['params_ratio'])}",
                     f"**{fid}**" if v["student_fid"] == best else fid, rel(v["student_fid"] / v["teacher_fid"]),
                     num(v["final_loss"]["feature"], 3), num(v["final_loss"]["output"], 4)])
    best_label = [label for label, *_, v in arms if v["student_fid"] == best][0]
    loc, glo = b["local"], b["global"]
    lg = "local" if loc["student_fid"] < glo["student_fid"] else "global"
    return "\n\n".join([
        f"DiffNAS ablations on the built-in teacher. One {num(d['minutes'], 0)}-minute `flexdiff compress` run "
        f"(budget {num(d['macs_ratio'])}, seed {d['seed']}, `--alpha {d['base_alpha']}`, run dir `{d['base_run']}`); "
        "the other arms reuse its recorded features and trained supernets and retrain for the same number of steps "
        f"({a['base']['retrain_steps']}) with the same seed, differing in one thing: (a) the retraining loss weight "
        "alpha, (b) block-wise local search against one global ranking of whole sampled students. FID: DDIM-50, "
        f"{d['fid_n']} samples against held-out digits (teacher {num(a['base']['teacher_fid'])}). The `--alphas` "
        "value is one quoted argument when rerun.",
        provenance(name, d),
        table(["arm", "alpha", "block choice", "MACs / params", "FID", "vs teacher", "final block feature loss", "final output loss"], rows),
        f"- Lowest FID: {best_label}.\n"
        f"- (b) {lg} search wins: local {num(loc['student_fid'])} against global {num(glo['student_fid'])}. Scoring "
        f"every candidate block by block took {num(b['local_search_scoring_seconds'], 1)} s, ranking {glo['samples']} "
        f"whole students {num(glo['ranking_seconds'], 1)} s.",
    ])


def sec_compress_combined(name: str, d: dict[str, Any]) -> str:
    c = d["c_combined"]
    pick = c["best"]
    rows = []
    for r in sorted(c["rows"], key=lambda r: (r["kind"] != "searched", -r["total_speedup"], r["name"])):
        is_pick = r["name"] == pick["name"]
        notes = []
        if is_pick:
            notes.append("**the pick**")
        elif r["kind"] == "baseline":
            if r["fid"] < pick["fid"] and r["total_speedup"] >= pick["total_speedup"]:
                notes.append("**baseline: lower FID at equal or higher reduction**")
            if r["rfid_vs_student"] < pick["rfid_vs_student"]:
                notes.append("**baseline: lower rFID than the pick**")
        label = schedule_label(r["name"], r["sampler"], bold=False) if r["kind"] == "searched" else f"{code(r['name'])} (baseline)"
        rows.append([label, times(r["total_speedup"]), num(r["fid"]), rel(r["fid_ratio"]), num(r["rfid_vs_student"]), "; ".join(notes)])
    tgt = c["target"]
    return "\n\n".join([
        f"The Flexiffusion search on a compressed student (base run `{d['base_run']}`, `--alpha {d['base_alpha']}`, "
        f"{pct(c['student_macs_ratio'])} of the teacher's MACs) at a schedule speed-up of "
        f"{times(c['schedule_speedup_on_student'])} on the student, so that the total against the teacher's DDIM-50 "
        "reaches the target. Every validated schedule is listed with its total MACs reduction and FID against "
        f"held-out digits ({d['fid_n']} samples; teacher {num(c['teacher_fid'])}); the pick is the lowest validated "
        "rFID against the student's own DDIM-50 images, never FID.",
        provenance(name, d),
        table(["schedule on the student", "total MACs reduction", "FID", "vs teacher", "rFID vs student", "note"], rows),
        f"Target: total MACs reduction at least {times(tgt['total_speedup'])} with FID at most "
        f"{rel(tgt['fid_ratio_max'])} of the teacher's. **Met: {yes(c['met'])}** ({times(pick['total_speedup'])} at "
        f"FID {num(pick['fid'])}, {rel(pick['fid_ratio'])}). Best baseline by the benchmark's pick: "
        f"`{c['best_baseline']['name']}` ({times(c['best_baseline']['total_speedup'])}, FID {num(c['best_baseline']['fid'])}).",
    ])


def sec_compile(name: str, d: dict[str, Any]) -> str:
    rows = [[s["step"], f"{num(s['eager_seconds'], 3)} s", f"{num(s['compiled_seconds'], 3)} s", times(s["compile_speedup"]),
             f"{num(s['compile_seconds'], 0)} s", f"{s['max_abs_diff_vs_eager']:.1e}"] for s in d["steps"]]
    faster = [s["step"] for s in d["steps"] if s["compile_speedup"] > 1]
    summary = (f"{d['model']}, latents {'x'.join(str(v) for v in d['latent_shape'])}, batch {d['batch']}, backend `{d['backend']}` on `{d['device']}`. "
               f"The schedule has {d['step_types']} step types; dynamo captured {d['unique_graphs']} graphs with {d['graph_breaks']} graph breaks"
               f" ({'one graph per step type' if d['one_graph_per_step_type'] else 'NOT one graph per step type'}). "
               + (f"Compiled is faster for: {', '.join(faster)}; slower or equal for the rest." if faster and len(faster) < len(d["steps"])
                  else "Compiled is faster for every step." if faster else "Compiled is not faster for any step on this machine: eager wins here."))
    return "\n\n".join([summary, table(["step", "eager", "compiled", "speed-up", "compile time", "max abs diff (eps)"], rows), provenance(name, d)])


def sec_search_cost(name: str, d: dict[str, Any]) -> str:
    """benchmarks/search_cost.py: the same search with and without pruning and reuse, at several search seeds; the
    pruner replay over the exhaustive studies that chose the default ladder and margin; each run's picks re-scored
    on noise no search saw, compared over the search seeds."""
    runs = d["runs"]
    phases = list(next(iter(runs.values()))["phase_seconds"])
    fast = f"`--fidelity {d['fidelity']} --prune-margin {d['prune_margin']:g} --reuse`"
    run_rows = []
    for key, r in runs.items():
        mode, _, seed = key.partition("-seed")
        span = f" ({num(r['estimate_low_seconds'], 0)} .. {num(r['estimate_high_seconds'], 0)} s)" if r.get("estimate_high_seconds") and r["estimate_high_seconds"] != r["estimate_seconds"] else ""
        run_rows.append([mode if mode == "exhaustive" else fast, seed, f"{num(r['wall_seconds'], 0)} s", f"{num(r['estimate_seconds'], 0)} s ({signed(100 * r['estimate_error'], 0)} %){span}",
                         f"{r['searched']} / {r['pruned']}", *(f"{num(r['phase_seconds'][p], 0)} s" for p in phases)])
    per_seed = ", ".join(f"seed {s}: {times(v)}" for s, v in d["wall_speedup_per_seed"].items())
    verdict = (f"**{times(d['wall_speedup'])} less wall time** with pruning and reuse over the {len(d['search_seeds'])} search seeds "
               f"({num(d['wall_seconds']['exhaustive'], 0)} s against {num(d['wall_seconds']['fast'], 0)} s; {per_seed})"
               + ("." if d["three_times_cheaper"] else ": **not** the 3x asked for.")
               + ("" if d["three_times_cheaper_every_seed"] or not d["three_times_cheaper"] else " **Not at every seed.**"))
    replay = [[",".join(map(str, r["rungs"])), num(r["margin"]), f"{r['stopped']} / {r['candidates']}", pct(r["image_share"], 0),
               f"{r['baselines_stopped']} / {r['baselines']}", pct(r["baseline_image_share"], 0), " + ".join(map(str, r["false_stops_per_seed"]))]
              for r in d["pruner_replay"]]
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
                picks.append([b["budget"] if mode == "exhaustive" else "", kind if mode == "exhaustive" else "", mode, schedules, spread(e["rfid"]), spread(e["fid"]), within])
    spread_note = ", ".join(f"{k}: {'every budget' if v else '**not every budget**'}" for k, v in d["all_within_spread"].items())
    return "\n\n".join([
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
    ])


def coverage_table(d: dict[str, Any]) -> str:
    """The coverage suite's pipelines (benchmarks/coverage.py), one row each."""
    rows = []
    for key, r in d["pipelines"].items():
        nulls = r["null_steps"]
        nulls = "refused in one line" if nulls.startswith("refused") else nulls
        denoisers = ", ".join(f"`{v}`" + (f" ({a})" if len(r["denoisers"]) > 1 else "") for a, v in r["denoisers"].items())
        rows.append([key, f"`{r['pipeline']}`" + (" (video)" if r["video"] else ""), denoisers, f"`{r['scheduler']}`", yes(r["all_full_equal"]),
                     f"{yes(r['caching_changes_output'])}, {pct(r['caching_linear_share'], 0)} of the linear calls", nulls, yes(r["disable_restores"])])
    return table(["case", "pipeline", "denoiser", "scheduler", "all-full = plain call", "caching schedule changes it", "null steps", "disable restores"], rows)


def coverage_sweep(d: dict[str, Any]) -> str:
    """The sweep over every exported pipeline's denoiser: accepted transformer classes, refusals, unbuilt."""
    verdicts = d["sweep"]
    accepted = sorted(n for n, v in verdicts.items() if v == "accepted (transformer)")
    unets = sorted(n for n, v in verdicts.items() if v == "accepted")
    refused = sorted(n for n, v in verdicts.items() if v.startswith("refused"))
    unbuilt = sorted(n for n, v in verdicts.items() if v.startswith("not built"))
    return (f"Every pipeline class diffusers {d['diffusers']} exports, by its denoiser class ({len(verdicts)} classes, built on the meta device and "
            f"given flexdiff's hooks as `enable` gives them): **{len(accepted)} transformer classes accepted** ({', '.join(code(n) for n in accepted)}); "
            f"{len(unets)} UNet classes accepted ({', '.join(code(n) for n in unets)}); {len(refused)} refused in one line, each naming the class and the "
            f"reason ({', '.join(code(n) for n in refused)}); {len(unbuilt)} not built from their defaults ({', '.join(code(n) for n in unbuilt)}). None crashed.")


def scale_cost_table(d: dict[str, Any]) -> str:
    """The default search's teacher-image equivalents per phase on real-scale transformers (MACs of published configs),
    with today's defaults and those before the search frontier."""
    rows = []
    for name, by_setting in d["models"].items():
        for setting, m in by_setting.items():
            c = m["settings"]
            what = (f"{c['objective']} on {c['n']} images, {c['trials']} trials, " + (f"rungs {', '.join(map(str, c['rungs']))}, " if c["rungs"] else "")
                    + ("every baseline, " if c["all_baselines"] else "baselines within the budget, ") + f"validation {c['validate_n']} x {c['validate_top']}")
            rows.append([name, f"{setting}: {what}", *(f"{m['teacher_image_equivalents'][k]:,.0f}" for k in ("reference", "baselines", "search", "validation")),
                         f"**{m['total_teacher_image_equivalents']:,.0f}**", f"{m['total_pmacs']:,.0f}",
                         f"{m['gpu_hours_at_assumed_seconds']:,.1f}" if m.get("gpu_hours_at_assumed_seconds") is not None else "–"])
    cfg = d["settings"]
    return (f"`flexdiff search` at its defaults ({cfg['steps']} steps, budget 1/{cfg['speedup']:g}) on a {d['resolution']} folder, now and before the "
            "search frontier was measured, in teacher-image equivalents (images generated x their MACs / the teacher's MACs per image: what "
            "`search --dry-run` prints), from the published configs' MACs (`transformer_cost.json`); nothing generated. GPU-hours convert them at an "
            f"**assumed** {d['assumed_seconds_per_image']:g} s per FLUX.1-dev image ({d['assumption']}).\n\n"
            + table(["model", "defaults", "reference", "baselines", "search", "validation", "total", "PMACs", "GPU-hours (assumed s/image)"], rows))


def scale_cost_headline(d: dict[str, Any]) -> str:
    """The README's line: the default search's teacher-image equivalents at real scale, before and now."""
    return "; ".join(f"{name}: {m['before']['total_teacher_image_equivalents']:,.0f} before, **{m['now']['total_teacher_image_equivalents']:,.0f}** now"
                     for name, m in d["models"].items()) + f" teacher-image equivalents ({d['resolution']}, {d['settings']['steps']} steps, budget 1/{d['settings']['speedup']:g})."


def step_transfer_table(d: dict[str, Any]) -> str:
    """A schedule searched at T0 moved to other step counts, beside a search at each and its best baseline."""
    labels = {"transferred": f"searched at T = {d['searched_at']}, moved", "searched_here": "searched at this T", "best_baseline": "best baseline at this T"}
    rows = []
    for e in d["steps"]:
        for key, label in labels.items():
            r = e.get(key)
            if r is not None:
                rows.append([str(e["T"]), label, f"`{r['name']}`", f"{r['macs_speedup']:.2f}x", num(r["rfid"], 3), num(r["fid"], 2), num(e["teacher_fid"], 2)])
    def verdict(e: dict[str, Any]) -> str:
        moved, base = e["transferred"], e.get("best_baseline")
        if base is None:
            return "no baseline within the budget"
        cheaper, better = moved["macs_speedup"] >= base["macs_speedup"], moved["rfid"] < base["rfid"]
        if cheaper == better:
            return "the moved plan is cheaper and closer (rFID)" if better else "**the baseline is cheaper and closer**"
        return (f"the moved plan is cheaper ({moved['macs_speedup']:.2f}x against {base['macs_speedup']:.2f}x), **the baseline closer**" if cheaper
                else f"the moved plan is closer, the baseline cheaper ({base['macs_speedup']:.2f}x against {moved['macs_speedup']:.2f}x)")
    verdicts = "; ".join(f"T = {e['T']}: {verdict(e)}" for e in d["steps"])
    speedups = [e["transferred"]["macs_speedup"] for e in d["steps"]]
    s = d["search_settings"]
    return (f"`{d['model']}`, teacher `{d['sampler']}` at each T, candidates under `{d['solver']}`; every search with the demo's settings ({s['n']} images, "
            f"{s['trials']} trials, budget 1/{s['speedup']:g}, rungs {', '.join(map(str, s['rungs']))}, reuse); the picks by search rFID within the budget, "
            f"re-scored on {d['validate_n']} images no search saw. The schedule searched at T = {d['searched_at']} (`{d['origin']}`) moved to each T by "
            "`flexdiff.schedule.for_steps` (segments of the searched length in steps, round(S T / T0) of them, each with the searched plan's share of "
            f"active steps over its part of the trajectory: the MACs share is kept, to rounding): the moved plan runs at {min(speedups):.2f}x to "
            f"{max(speedups):.2f}x. Per T: " + verdicts + ".\n\n"
            + table(["T", "schedule", "name", "MACs x", "rFID", "FID", "teacher FID"], rows))


#: the search the frontier's methods are measured against: the demo's settings before the frontier was measured
FRONTIER_REFERENCE = "rfid-256"


def frontier_within(d: dict[str, Any], method: str, budget: str) -> bool | None:
    """Whether ``method``'s mean validated rFID and FID at ``budget`` are no worse than the worst seed of the reference
    search (within its 3-seed spread or better); None where either has no pick there at some seed."""
    ref, mine = d["summary"].get(FRONTIER_REFERENCE, {}).get("budgets", {}).get(budget), d["summary"][method]["budgets"].get(budget)
    if ref is None or mine is None or mine["seeds"] != ref["seeds"]:  # a mean over other seeds is no comparison
        return None
    return all(round(mine[m]["mean"], 4) <= round(ref[m]["max"], 4) for m in ("rfid", "fid"))


def fewer_seeds(d: dict[str, Any], cell: dict[str, Any]) -> str:
    """A budget cell's note where some seeds' searches found nothing within it."""
    return f" ({cell['seeds']} of {len(d['seeds'])} seeds)" if cell["seeds"] < len(d["seeds"]) else ""


def search_frontier_table(d: dict[str, Any]) -> str:
    """Each search method's cost (teacher-image equivalents) and its picks' validated rFID / FID per budget."""
    summary, budgets = d["summary"], d["budgets"]
    ref_cost = summary.get(FRONTIER_REFERENCE, {}).get("search_cost_mean")
    teacher = [r["fid"] for r in d["runs"] if r["method"] == "teacher"]
    rows = []
    for method, m in summary.items():
        cells = []
        for b in budgets:
            c = m["budgets"].get(b)
            within = frontier_within(d, method, b)
            mark = "" if within is None or method == FRONTIER_REFERENCE else (" ✓" if within else " ✗")
            cells.append("–" if c is None else f"{c['macs_speedup']['mean']:.2f}x, rFID {c['rfid']['mean']:.2f} ({c['rfid']['min']:.2f}–{c['rfid']['max']:.2f}), "
                                                  f"FID {c['fid']['mean']:.2f}{mark}{fewer_seeds(d, c)}")
        share = f" (1/{ref_cost / m['search_cost_mean']:.1f})" if ref_cost and method != FRONTIER_REFERENCE else ""
        rows.append([f"`{method}`", f"{m['search_cost_mean']:,.0f}{share}", f"{m['wall_seconds_mean']:.0f}", *cells])
    return (f"`{d['model']}`, teacher `{d['sampler']}`-{d['steps']}" + (f", candidates under `{d['solver']}`" if d.get("solver") else "")
            + f"; {d['trials']} searched schedules per search, seeds {', '.join(map(str, d['seeds']))}. Cost: teacher-image equivalents of the search "
            "(reference + baselines + trials; its own validation left out, except the `-validated` methods' re-checks), mean over seeds, and its share of the reference search's; wall: seconds on "
            f"the machine below. Each pick re-scored on {d['validate_n']} noises no search saw (images {d['validation_start']} on of each seed's stream; "
            f"teacher FID {min(teacher):.2f}–{max(teacher):.2f}): mean (min–max over seeds). ✓: mean rFID and FID no worse than `{FRONTIER_REFERENCE}`'s "
            "worst seed at that budget; ✗: worse on one.\n\n"
            + table(["method", "cost (TIE)", "wall s", *budgets], rows))


def frontier_headline(d: dict[str, Any]) -> str:
    """The README's compact frontier: per method its search cost and its picks' mean validated rFID / FID per budget."""
    summary, budgets = d["summary"], d["budgets"]
    rows = [[f"`{method}`", f"{m['search_cost_mean']:,.0f}",
             *("–" if (c := m["budgets"].get(b)) is None else f"{c['rfid']['mean']:.2f} / {c['fid']['mean']:.1f}" + {True: " ✓", False: " ✗", None: ""}[
                 None if method == FRONTIER_REFERENCE else frontier_within(d, method, b)] + fewer_seeds(d, c) for b in budgets)] for method, m in summary.items()]
    teacher = [r["fid"] for r in d["runs"] if r["method"] == "teacher"]
    return (f"`{d['model']}` ({d['sampler']}-{d['steps']}), {len(d['seeds'])} seeds, each pick on {d['validate_n']} noises no search saw "
            f"(teacher FID {statistics.mean(teacher):.1f}); cells: mean rFID / FID; ✓ no worse than `{FRONTIER_REFERENCE}`'s worst seed on both.\n\n"
            + table(["search", "cost (TIE)", *budgets], rows))


def real_width_headline(d: dict[str, Any]) -> str:
    """The README's line on wall-clock at real width: wall / MACs of the searched mixes per model."""
    parts = []
    for key, m in d["models"].items():
        searched = [r for r in d["summary"][key] if r["family"] == "searched"]
        ratios = ", ".join(f"{r['budget']} {r['macs_speedup']:.2f}x MACs -> {r['predicted_wall_speedup']:.2f}x wall" for r in searched)
        e2e = "; ".join(f"{e['macs_speedup']:.2f}x MACs measured {e['measured_wall_speedup']:.2f}x whole-loop" for e in m["end_to_end"])
        parts.append(f"- {m['model'].split(' (')[0]}: {ratios} (per-kind sums; {e2e})")
    return f"Searched step mixes at real width, random weights, {d['machine'].get('cpu', d['device'])} ({d['device']}):\n\n" + "\n".join(parts)


def real_width_table(d: dict[str, Any]) -> str:
    """Wall-clock against MACs speed-up of the searched step mixes on real-width models (random weights)."""
    parts = []
    for key, m in d["models"].items():
        rows = [[f"`{r['mix']}`", r["family"], r["budget"] or "–", f"{r['macs_speedup']:.2f}x", f"{r['predicted_wall_speedup']:.2f}x", f"{r['wall_over_macs']:.2f}"]
                for r in d["summary"][key]]
        e2e = "; ".join(f"`{e['name']}`: measured {e['measured_wall_speedup']:.2f}x (paired median {e['measured_wall_speedup_paired_median']:.2f}x) against "
                        f"{e['predicted_wall_speedup']:.2f}x predicted, MACs {e['macs_speedup']:.2f}x" for e in m["end_to_end"])
        full = next(k for k in m["kinds"] if k["kind"] == "full")
        parts.append(f"**{m['model']}** (`{m['class']}`, {m['parameters'] / 1e6:,.0f} M parameters, latent {'x'.join(map(str, m['latent_shape']))}, "
                     f"{m['sampler']}-{m['T']}): a full step {m['full_step_gmacs']:,.1f} GMACs, {full['seconds_min']:.2f} s (best of {d['repeats']}). "
                     f"Whole sampling loops, interleaved: {e2e}.\n\n" + table(["step mix", "family", "budget", "MACs x", "wall x (per-kind sum)", "wall / MACs"], rows))
    return (f"Real-width denoisers built from published configs with random weights on `{d['device']}`: {d['timing']}. Mixes: the built-in teachers' "
            f"searched schedules with their branches mapped to the real model ({d['mapping_rule']['unet']}; {d['mapping_rule']['transformer']}), and "
            "uniform DeepCache / DDIM-k plans for context.\n\n" + "\n\n".join(parts))


def sec_coverage(name: str, d: dict[str, Any]) -> str:
    return "\n\n".join([
        "`flexdiff.enable` on tiny pipelines built with diffusers' classes at the sizes of diffusers' own test dummy components "
        "(random weights, random prompt embeddings, `tests/coverage/`). The caching schedule alternates full steps with partial "
        "steps at branch 1 (DeepCache on a UNet, the (F, B) residual on a transformer), full wherever a second denoiser takes over; "
        "null steps drop every other step. Shares of linear-layer calls on tiny random models say which work is skipped, not how "
        "fast a real model runs.",
        coverage_table(d),
        coverage_sweep(d),
        provenance(name, d),
    ])


def sec_other(name: str, d: dict[str, Any]) -> str:
    return "No renderer for this file yet; its provenance:\n\n" + provenance(name, d)


# (key, title, files in order, renderer)
FAMILIES: list[tuple[str, str, Callable[[str], bool]]] = [
    ("teacher_quality", "The built-in teachers", lambda n: n.startswith("teacher_quality")),
    ("step_types", "Step types: wall-clock against MACs", lambda n: n == "step_types.json"),
    ("rfid_vs_fid", "rFID ranks schedules like FID", lambda n: n == "rfid_vs_fid.json"),
    ("search_vs_baselines", "Searched schedules against the baselines", lambda n: n.startswith("search_vs_baselines")),
    ("search_vs_peers", "Searched schedules against the caching peers", lambda n: n.startswith("search_vs_peers")),
    ("seed_spread", "How much of a margin is noise: more seeds", lambda n: n.startswith("seed_spread")),
    ("spacing", "Spacing of the segment boundaries", lambda n: n == "spacing.json"),
    ("sd15_cost", "Cost at Stable Diffusion v1.5 scale", lambda n: n == "sd15_cost.json"),
    ("compile", "torch.compile under a schedule", lambda n: n.startswith("compile")),
    ("search_cost", "A cheaper search: pruning and reuse", lambda n: n == "search_cost.json"),
    ("compress_run", "Compression runs on the built-in teacher", lambda n: n.startswith("compress_run")),
    ("compress_ablation", "DiffNAS ablations", lambda n: n == "compress_ablation.json"),
    ("compress_combined", "Student plus a schedule searched for it", lambda n: n == "compress_combined.json"),
    ("coverage", "Which diffusers pipelines enable covers", lambda n: n == "coverage.json"),
    ("search_cost_at_scale", "What a search costs at real scale", lambda n: n == "search_cost_at_scale.json"),
    ("step_transfer", "One search for every step count", lambda n: n.startswith("step_transfer")),
    ("search_frontier", "What a search costs against what it finds", lambda n: n.startswith("search_frontier")),
    ("real_width_wall", "Wall-clock at real width", lambda n: n == "real_width_wall.json"),
]

# preferred order inside a family; other files of the family follow, sorted by name
ORDER = ["search_vs_baselines.json", "search_vs_baselines_dpmpp.json", "search_vs_baselines_ddim2m.json",
         "seed_spread.json", "seed_spread_confirm.json", "seed_spread_ddim2m.json",
         "compress_run.json", "compress_run_dynamic.json", "compress_run_constant.json"]

SUBTITLES = {
    "seed_spread.json": "The 1/2 budget on five seeds",
    "seed_spread_confirm.json": "Confirmation on fresh noise",
    "seed_spread_ddim2m.json": "The other budgets on five seeds",
    "compress_run.json": "The acceptance run",
    "compress_run_dynamic.json": "The same budget with the default decaying alpha",
    "compress_run_constant.json": "A shorter constant-alpha run",
    "search_vs_peers.json": "`builtin:digits-dit` (rectified flow), the peers beside",
    "search_vs_peers_unet_forecast.json": "The built-in UNet with the forecast gene",
    "search_vs_peers_unet_reuse.json": "The built-in UNet, reuse only",
    "search_vs_peers_spread.json": "How much of the 1/2 margin is noise: five seeds",
    "search_frontier_unet.json": "The built-in UNet (DDIM-50, candidates under DDIM-2M)",
    "search_frontier_dit.json": "The built-in DiT (rectified flow, Euler-20)",
}


def sec_reproduced(results: Path = RESULTS) -> str | None:
    """Reruns in ``benchmarks/results/reproduced/`` (after a change that must not move a figure) beside the committed
    figures they reproduce: step types (MACs, rFID, FID, wall-clock) and seed-spread seeds."""
    folder = results / "reproduced"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return None
    parts = [anchor("reproduced"), "## Reproduced after the package restructuring",
             "The same commands rerun on the restructured package (`reproduced/`), beside the committed figures. MACs and "
             "image-quality figures are deterministic (one seed); wall-clock is one shared-VM timing of each and moves "
             "with the machine's load."]
    for path in files:
        new = json.loads(path.read_text())
        rel = f"reproduced/{path.name}"
        parts.append(f"### `{rel}`\n\n" + provenance(rel, new))
        if path.name == "step_types.json":
            old = json.loads((results / "step_types.json").read_text())
            rows = [["full-step MACs", integer(old["full_step_macs_per_sample"]), integer(new["full_step_macs_per_sample"])],
                    ["partial-step MACs, branches 0..8", "same" if old["partial_step_macs_per_sample"] == new["partial_step_macs_per_sample"] else "differ",
                     ", ".join(integer(v) for v in new["partial_step_macs_per_sample"])],
                    ["teacher FID vs held-out", num(old["fid_teacher_vs_heldout"], 3), num(new["fid_teacher_vs_heldout"], 3)],
                    ["hook overhead, all-full schedule", pct(old["hook_overhead_all_full"]), pct(new["hook_overhead_all_full"])]]
            for o, n in zip(old["schedules"], new["schedules"]):
                rows.append([f"{o['schedule']}: rFID / FID / wall speed-up",
                             f"{num(o['rfid_vs_teacher'])} / {num(o['fid_vs_heldout'], 3)} / {times(o['wall_speedup'])}",
                             f"{num(n['rfid_vs_teacher'])} / {num(n['fid_vs_heldout'], 3)} / {times(n['wall_speedup'])}"])
            parts.append(table(["figure", "committed (`step_types.json`)", "rerun"], rows))
        elif path.name.startswith("seed_spread_confirm_seed"):
            old = json.loads((results / "seed_spread_confirm.json").read_text())
            rows = []
            for key, entry in new["schedules"].items():
                before = old["schedules"].get(key, {})
                for metric in ("fid", "rfid"):
                    if metric not in entry:
                        continue
                    by_seed = dict(zip(old["seeds"], before.get(metric, [])))
                    for seed, value in zip(new["seeds"], entry[metric]):
                        rows.append([seed_label(key, entry), metric.replace("rfid", "rFID").replace("fid", "FID"), str(seed),
                                     num(by_seed[seed], 4) if seed in by_seed else "–", num(value, 4)])
            parts.append(table(["schedule", "metric", "seed", "committed (`seed_spread_confirm.json`)", "rerun"], rows))
    return "\n\n".join(parts)


def load_all(results: Path = RESULTS) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def ordered(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def render(results: Path = RESULTS) -> str:
    docs = load_all(results)
    out = [
        "# Measured results",
        "<!-- GENERATED by benchmarks/results_page.py from benchmarks/results/*.json: do not edit by hand; "
        "rerun `python benchmarks/results_page.py` after a benchmark writes new JSON. -->",
        "Every figure on this page is read from the JSON files in [`benchmarks/results/`](../benchmarks/results/), "
        "which each benchmark script in `benchmarks/` writes with its exact command, date and machine; rerun any of "
        "them with the command shown in its section. Wall-clock figures on a shared CPU VM vary by a few percent "
        "from run to run; the scripts interleave and pair their repeats to cancel drift. Vocabulary: "
        "[concepts](concepts.md); how the search and compression work: [search](search.md), [compress](compress.md).",
        "**Validation noise.** Since 2026-12-07 a search validates on noises after its own (`search_frontier_*`, `step_transfer`, "
        "`real_width_wall` and the demo were run so). The search benchmarks dated earlier (`search_vs_*`, `seed_spread*` at seed 0, "
        "`compress_combined`) validated on the seed's stream from its first image: their 1000 validation images "
        "contain the 128 or 256 the search selected on, a bias in the searched rows' favour; read them with that in mind.",
    ]
    machines: dict[str, list[str]] = {}
    for n, d in docs.items():
        if d.get("machine"):
            m = d["machine"]
            key = f"{m.get('cores_visible')}-core {m.get('cpu')} CPU, {'GPU ' + m['cuda'] if m.get('cuda') else 'no GPU'}, torch {m.get('torch')}, Python {m.get('python')}"
            machines.setdefault(key, []).append(n)
    out.append("Machines recorded in the files:\n\n" + "\n".join(
        f"- {k}: " + ", ".join(code(n) for n in v) for k, v in sorted(machines.items())))
    used: set[str] = set()
    toc = []
    bodies = []
    for key, title, match in FAMILIES:
        names = ordered([n for n in docs if match(n) and n not in used])
        if not names:
            continue
        used.update(names)
        toc.append(f"- [{title}](#{key})")
        body = [anchor(key), f"## {title}"]
        seed_docs = []
        for n in names:
            d = docs[n]
            if len(names) > 1:
                sub = SUBTITLES.get(n)
                if key == "search_vs_baselines":
                    sub = SEARCH_TITLES.get(d.get("solver"), f"`--solver {d.get('solver')}`")
                if n.removesuffix(".json") != key:
                    body.append(anchor(n.removesuffix(".json")))
                body.append(f"### {sub or n}" + f" (`{n}`)")
            if key == "teacher_quality":
                body.append(sec_teacher_quality(n, d))
            elif key == "step_types":
                body.append(sec_step_types(n, d))
            elif key == "rfid_vs_fid":
                body.append(sec_rfid_vs_fid(n, d))
            elif key == "search_vs_peers" and "differences" in d:
                body.append(sec_peers_spread(n, d))
            elif key in ("search_vs_baselines", "search_vs_peers"):
                body.append(sec_search(n, d))
            elif key == "seed_spread":
                body.append(sec_seed_spread(n, d, docs))
                seed_docs.append((n, d))
            elif key == "spacing":
                body.append(sec_spacing(n, d))
            elif key == "sd15_cost":
                body.append(sec_sd15(n, d))
            elif key == "compile":
                body.append(sec_compile(n, d))
            elif key == "search_cost":
                body.append(sec_search_cost(n, d))
            elif key == "compress_run":
                body.append(sec_compress_run(n, d, docs))
            elif key == "compress_ablation":
                body.append(sec_compress_ablation(n, d))
            elif key == "compress_combined":
                body.append(sec_compress_combined(n, d))
            elif key == "coverage":
                body.append(sec_coverage(n, d))
            elif key == "search_cost_at_scale":
                body.append(scale_cost_table(d) + "\n\n" + provenance(n, d))
            elif key == "step_transfer":
                body.append(step_transfer_table(d) + "\n\n" + provenance(n, d))
            elif key == "real_width_wall":
                body.append(real_width_table(d) + "\n\n" + provenance(n, d))
            elif key == "search_frontier":
                body.append(search_frontier_table(d) + "\n\n" + provenance(n, d))
        if seed_docs:
            pooled = seed_union(seed_docs)
            if pooled:
                body.append(pooled)
        bodies.append("\n\n".join(body))
    rest = sorted(n for n in docs if n not in used)
    if rest:
        toc.append("- [Other results](#other)")
        bodies.append("\n\n".join([anchor("other"), "## Other results"] + [f"### `{n}`\n\n" + sec_other(n, docs[n]) for n in rest]))
    reproduced = sec_reproduced(results)
    if reproduced:
        toc.append("- [Reproduced after the package restructuring](#reproduced)")
        bodies.append(reproduced)
    out.append("Contents:\n\n" + "\n".join(toc))
    out.extend(bodies)
    return "\n\n".join(out) + "\n"


#: Generated blocks inside hand-written pages: (page, key, renderer of the JSON file ``<key>.json``). The page holds
#: ``<!-- generated:KEY -->`` ... ``<!-- /generated:KEY -->``; the text between is this script's.
EMBEDS: list[tuple[Path, str, Callable[[dict[str, Any]], str]]] = [
    (ROOT / "docs" / "pipelines.md", "coverage", lambda d: coverage_table(d) + "\n\n" + coverage_sweep(d)),
    (ROOT / "docs" / "transformers.md", "coverage", lambda d: coverage_table(d) + "\n\n" + coverage_sweep(d)),
    (ROOT / "docs" / "search.md", "search_cost_at_scale", scale_cost_table),
    (ROOT / "docs" / "search.md", "step_transfer", step_transfer_table),
    (ROOT / "docs" / "search.md", "search_frontier_unet", search_frontier_table),
    (ROOT / "README.md", "search_frontier_unet", frontier_headline),
    (ROOT / "README.md", "search_cost_at_scale", scale_cost_headline),
    (ROOT / "README.md", "search_frontier_dit", frontier_headline),
    (ROOT / "README.md", "real_width_wall", real_width_headline),
    (ROOT / "docs" / "search.md", "search_frontier_dit", search_frontier_table),
]


def embedded(text: str, key: str, render_block: Callable[[dict[str, Any]], str], results: Path = RESULTS) -> str | None:
    """A page's ``text`` with its generated block for ``key`` rendered from ``results/<key>.json``; None without a block
    or without the file."""
    source = results / f"{key}.json"
    start, end = f"<!-- generated:{key} -->", f"<!-- /generated:{key} -->"
    if start not in text or end not in text or not source.exists():
        return None
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    note = f"<!-- GENERATED by benchmarks/results_page.py from benchmarks/results/{key}.json: do not edit by hand -->"
    return f"{head}{start}\n{note}\n\n{render_block(json.loads(source.read_text()))}\n\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/results.md differs from what would be written")
    args = parser.parse_args(argv)
    pages = {PAGE: render()}
    for page, key, render_block in EMBEDS:
        text = embedded(pages.get(page) or page.read_text(), key, render_block)
        if text is not None:
            pages[page] = text
    stale = [page for page, text in pages.items() if (page.read_text() if page.exists() else None) != text]
    if args.check:
        for page in stale:
            print(f"{page.relative_to(ROOT).as_posix()} is out of date with benchmarks/results/*.json: run python benchmarks/results_page.py")
        if not stale:
            print("docs/results.md and the generated blocks are up to date")
        return 1 if stale else 0
    for page in stale:
        page.parent.mkdir(parents=True, exist_ok=True)
        tmp = page.with_name(page.name + ".tmp")
        tmp.write_text(pages[page])
        tmp.replace(page)
        print(f"wrote {page.relative_to(ROOT).as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
