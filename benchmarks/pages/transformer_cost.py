"""Real-scale transformers' cost (``benchmarks/transformer_cost.py``): FLUX.1-dev and SD3-medium built from their published
configs on the meta device, so what a partial step saves at each (F, B) branch is known at real scale without the
weights; a partial step's share of a full step follows F + B, the blocks it computes, so the page groups by F + B."""

from __future__ import annotations

from typing import Any

from ._format import Doc, Docs, code, integer, num, pct, provenance, table
from ._section import Section

#: F + B columns of the share table: powers of two, so models of any depth get the same few columns
COMPUTED = (0, 1, 2, 4, 8, 16, 32)


def share_by_computed(partial: dict[str, dict[str, float]]) -> dict[int, tuple[float, float]]:
    """Branch ``FfBb`` -> f + b; the (min, max) share of a full step over the branches with that many blocks computed."""
    out: dict[int, list[float]] = {}
    for branch, v in partial.items():
        f, b = branch[1:].split("B")
        out.setdefault(int(f) + int(b), []).append(v["share_of_full"])
    return {k: (min(v), max(v)) for k, v in out.items()}


def share_cell(span: tuple[float, float] | None) -> str:
    if span is None:
        return "–"
    lo, hi = pct(span[0], 2), pct(span[1], 2)
    return lo if lo == hi else f"{lo} – {hi}"


def wall_table(w: dict[str, Any]) -> str:
    """``--wall``: CPU seconds of a full and of partial steps at a reduced resolution, wall share beside MACs share."""
    rows = [[code(k), num(v["seconds"], 3), pct(v["wall_share"]), pct(v["macs_share"])] for k, v in w["partial"].items()]
    return f"CPU wall-clock ({w['dtype']}, {w['image_tokens']} image tokens): full step {num(w['full_step_seconds'], 3)} s.\n\n" + table(
        ["branch", "seconds", "share of full (wall)", "share of full (MACs)"], rows
    )


def render(name: str, d: Doc, docs: Docs) -> str:
    models = d["models"]
    rows = []
    for key, m in models.items():
        shares = share_by_computed(m["partial_step_macs"])
        rows.append(
            [
                code(key),
                f"{integer(m['parameters'])} ({m['published_parameters']})",
                str(m["blocks"]),
                f"{num(m['full_step_macs'] / 1e12, 2)} TMACs",
                str(len(m["partial_step_macs"])),
                *(share_cell(shares.get(k)) for k in COMPUTED),
            ]
        )
    walls = [f"`{key}`: " + wall_table(m["cpu_wall_256px"]) for key, m in models.items() if m.get("cpu_wall_256px")]
    notes = [f"Wall-clock: {d[k]}." for k in ("wall", "flux1_dev_wall") if d.get(k)]
    return "\n\n".join(
        [
            f"{' and '.join(code(k) for k in models)} built from their published configs with random weights on the meta device (no memory, no download; "
            "cost does not depend on the weights, so no quality claim): parameters, MACs of a full step and of a partial step at every (F, B) branch "
            f"(the first F and the last B blocks computed, the middle reused), one {d['resolution']} image, batch {d['batch']}.",
            provenance(name, d),
            "A partial step's share of a full step's MACs, by the number of blocks it computes (F + B; a range where the branches with that F + B differ):",
            table(["model", "parameters (published)", "blocks", "full step", "branches", *(f"F + B = {k}" for k in COMPUTED)], rows),
            *walls,
            *notes,
        ]
    )


SECTIONS = [Section("transformer_cost", "Transformers at real scale: MACs per step", 210, ("transformer_cost.json",), render)]
