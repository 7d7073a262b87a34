"""Schedule names as a reader sees them, shared by the search, seed-spread, compression and reproduced pages.

A searched schedule's name (``genome-b0i3_b2i1f``) is shortened to its segment and partial-step counts, a baseline's
name is kept; margins read as a winner the same way on every page.
"""

from __future__ import annotations

from typing import Any

from flexdiff.schedule import Step

from ._format import Doc, code


def parse_genome_name(name: str) -> list[tuple[int, int]] | None:
    """'genome-b0i3_b2i1f' -> [(0, 3), (2, 1)] (``f``: forecast partial steps); None for a baseline name."""
    if not name.startswith("genome-"):
        return None
    body = name[len("genome-") :].split("@")[0]
    segs = []
    for part in body.split("_"):
        b, i = part[1:].split("i")
        segs.append((int(b), int(i.rstrip("f"))))
    return segs


def step_counts(steps: list[str]) -> tuple[int, int, int]:
    """(cache-filling, replaying, skipped) steps, by the step kinds' properties (forecast steps replay)."""
    kinds = [Step.parse(s).info for s in steps]
    return sum(k.fills_cache for k in kinds), sum(k.replays for k in kinds), sum(not k.calls_network for k in kinds)


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


def teacher_name(name: str) -> str:
    """'teacher (ddim-50)' -> '`ddim-50`'."""
    inner = name[len("teacher (") : -1] if name.startswith("teacher (") and name.endswith(")") else name
    return code(inner)


def seed_label(key: str, entry: dict[str, Any]) -> str:
    """A seed-spread schedule key ('genome-... (ddim-2m)', 'ddim-25 (ddim)', 'teacher') as a row label."""
    if key == "teacher":
        return "teacher"
    base, _, solver = key.rpartition(" (")
    solver = solver.rstrip(")")
    if parse_genome_name(base) is not None:
        return schedule_label(base, solver)
    return f"{code(base)} ({solver})"


def seed_pairs(d: Doc) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for key, diff in d["differences"].items():
        a, b = key.split(" - ")
        out.append((a, b, diff))
    return out


def lower_count(a: list[float], b: list[float]) -> int:
    return sum(1 for x, y in zip(a, b) if x < y)
