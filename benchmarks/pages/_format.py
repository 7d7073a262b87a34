"""Formatting shared by the pages: numbers, tables, links and the provenance block of every section.

Floats are rounded half up from their shortest decimal form with fixed precision, so the same JSON always gives the
same page byte for byte. Standard library only, so the pages render without the package installed.
"""

from __future__ import annotations

import shlex
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
RESULTS_LINK = "../benchmarks/results"  # relative to docs/

#: one result file's content, and every result file by its name relative to ``benchmarks/results/``
Doc = dict[str, Any]
Docs = dict[str, Doc]


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


def command_of(d: Doc) -> str:
    c = d.get("command")
    if isinstance(c, list):
        return shlex.join(str(a) for a in c)
    return str(c) if c else "(not recorded)"


def machine_text(m: dict[str, Any] | None) -> str:
    if not m:
        return "not recorded in this file"
    gpu = f"GPU {m['cuda']}" if m.get("cuda") else "no GPU"
    return (
        f"{m.get('cores_visible')}-core {m.get('cpu')} CPU, {gpu}, torch {m.get('torch')} "
        f"(torch threads: {m.get('torch_threads')}), Python {m.get('python')}, {m.get('platform')}"
    )


def provenance(name: str, d: Doc, machine_note: str | None = None) -> str:
    """File, command, date and machine of one result: every section ends or starts with it, so any figure can be rerun."""
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
