"""What a search costs against what it finds (``benchmarks/search_frontier.py``): per search method (whatever methods the
file's ``summary`` holds) its cost in teacher-image equivalents and its picks' validated rFID / FID per budget, marked
against the reference search's worst seed. One file per teacher; docs/search.md carries the tables, the README headlines."""

from __future__ import annotations

import statistics
from typing import Any

from ._format import ROOT, Doc, Docs, provenance, table
from ._section import Embed, Section

TITLES = {
    "search_frontier_unet.json": "The built-in UNet (DDIM-50, candidates under DDIM-2M)",
    "search_frontier_dit.json": "The built-in DiT (rectified flow, Euler-20)",
}

FRONTIER_REFERENCE = "rfid-256"


def frontier_within(d: Doc, method: str, budget: str) -> bool | None:
    """The benchmark's own mark (``within_reference``: picks at as many seeds, mean validated rFID and FID no worse than
    the reference search's worst seed); None for the reference itself or where the method has no pick."""
    cell = d["summary"][method]["budgets"].get(budget)
    return None if cell is None or method == FRONTIER_REFERENCE else cell.get("within_reference")


def frontier_verdict(d: Doc) -> str:
    """One sentence from the file's ``verdict``: the cheapest method within the reference's spread at every budget, or
    the closest and where it is out."""
    v = d.get("verdict") or {}
    methods = v.get("methods", {})
    if v.get("best"):
        return f"Cheapest within `{FRONTIER_REFERENCE}`'s spread at every budget: `{v['best']}`, at 1/{1 / methods[v['best']]['cost_share']:.1f} of its cost."
    if v.get("closest"):
        c = methods[v["closest"]]
        return (
            f"No method is within `{FRONTIER_REFERENCE}`'s spread at every budget; the closest, `{v['closest']}` (1/{1 / c['cost_share']:.1f} of its "
            f"cost), is out at {', '.join(c['out_of_spread'])}."
        )
    return ""


def fewer_seeds(d: Doc, cell: dict[str, Any]) -> str:
    """A budget cell's note where some seeds' searches found nothing within it."""
    return f" ({cell['seeds']} of {len(d['seeds'])} seeds)" if cell["seeds"] < len(d["seeds"]) else ""


def search_frontier_table(d: Doc) -> str:
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
            cells.append(
                "–"
                if c is None
                else f"{c['macs_speedup']['mean']:.2f}x, rFID {c['rfid']['mean']:.2f} ({c['rfid']['min']:.2f}–{c['rfid']['max']:.2f}), "
                f"FID {c['fid']['mean']:.2f}{mark}{fewer_seeds(d, c)}"
            )
        share = f" (1/{ref_cost / m['search_cost_mean']:.1f})" if ref_cost and method != FRONTIER_REFERENCE else ""
        rows.append([f"`{method}`", f"{m['search_cost_mean']:,.0f}{share}", f"{m['wall_seconds_mean']:.0f}", *cells])
    return (
        f"`{d['model']}`, teacher `{d['sampler']}`-{d['steps']}"
        + (f", candidates under `{d['solver']}`" if d.get("solver") else "")
        + f"; {d['trials']} searched schedules per search, seeds {', '.join(map(str, d['seeds']))}. Cost: teacher-image equivalents of the search "
        "(reference + baselines + trials; its own validation left out, except the `-validated` methods' re-checks), mean over seeds, and its share of the reference search's; wall: seconds on "
        f"the machine below. Each pick re-scored on {d['validate_n']} noises no search saw (images {d['validation_start']} on of each seed's stream; "
        f"teacher FID {min(teacher):.2f}–{max(teacher):.2f}): mean (min–max over seeds). ✓: mean rFID and FID no worse than `{FRONTIER_REFERENCE}`'s "
        "worst seed at that budget (with picks at as many seeds); ✗: worse on one, or fewer seeds found a pick.\n\n"
        + table(["method", "cost (TIE)", "wall s", *budgets], rows)
        + ("\n\n" + frontier_verdict(d) if d.get("verdict") else "")
    )


def frontier_headline(d: Doc) -> str:
    """The README's compact frontier: the reference, the default's method and the verdict's best (or closest), each
    with its search cost and its picks' mean validated rFID / FID per budget; every method is in docs/search.md."""
    v, budgets = d.get("verdict") or {}, d["budgets"]
    shown = dict.fromkeys(m for m in (FRONTIER_REFERENCE, v.get("default"), v.get("best") or v.get("closest")) if m in d["summary"])
    summary = {m: d["summary"][m] for m in shown}
    rows = [
        [
            f"`{method}`",
            f"{m['search_cost_mean']:,.0f}",
            *(
                "–"
                if (c := m["budgets"].get(b)) is None
                else f"{c['rfid']['mean']:.2f} / {c['fid']['mean']:.1f}"
                + {True: " ✓", False: " ✗", None: ""}[None if method == FRONTIER_REFERENCE else frontier_within(d, method, b)]
                + fewer_seeds(d, c)
                for b in budgets
            ),
        ]
        for method, m in summary.items()
    ]
    teacher = [r["fid"] for r in d["runs"] if r["method"] == "teacher"]
    return (
        f"`{d['model']}` ({d['sampler']}-{d['steps']}), {len(d['seeds'])} seeds, each pick on {d['validate_n']} noises no search saw "
        f"(teacher FID {statistics.mean(teacher):.1f}); cells: mean rFID / FID; ✓ no worse than `{FRONTIER_REFERENCE}`'s worst seed on both.\n\n"
        + table(["search", "cost (TIE)", *budgets], rows)
        + ("\n\n" + frontier_verdict(d) if d.get("verdict") else "")
        + (f" `{v['default']}` is `flexdiff search`'s defaults." if v.get("default") else "")
        + f" ({len(d['summary'])} methods measured: docs/search.md.)"
    )


def render(name: str, d: Doc, docs: Docs) -> str:
    return search_frontier_table(d) + "\n\n" + provenance(name, d)


SECTIONS = [
    Section(
        "search_frontier",
        "What a search costs against what it finds",
        170,
        ("search_frontier*.json",),
        render,
        subtitle=lambda name, d: TITLES.get(name) or f"`{d['model']}`",
    )
]
EMBEDS = [
    Embed(ROOT / "docs" / "search.md", "search_frontier_unet", search_frontier_table),
    Embed(ROOT / "docs" / "search.md", "search_frontier_dit", search_frontier_table),
    Embed(ROOT / "README.md", "search_frontier_unet", frontier_headline),
    Embed(ROOT / "README.md", "search_frontier_dit", frontier_headline),
]
