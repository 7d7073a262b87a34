"""torch.compile under a schedule (``benchmarks/compile.py``): a schedule mixes step types, so the page shows whether dynamo
keeps one graph per step type and whether compiling pays on this machine, step type by step type."""

from __future__ import annotations

from ._format import Doc, Docs, num, provenance, table, times
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    rows = [
        [
            s["step"],
            f"{num(s['eager_seconds'], 3)} s",
            f"{num(s['compiled_seconds'], 3)} s",
            times(s["compile_speedup"]),
            f"{num(s['compile_seconds'], 0)} s",
            f"{s['max_abs_diff_vs_eager']:.1e}",
        ]
        for s in d["steps"]
    ]
    faster = [s["step"] for s in d["steps"] if s["compile_speedup"] > 1]
    summary = (
        f"{d['model']}, latents {'x'.join(str(v) for v in d['latent_shape'])}, batch {d['batch']}, backend `{d['backend']}` on `{d['device']}`. "
        f"The schedule has {d['step_types']} step types; dynamo captured {d['unique_graphs']} graphs with {d['graph_breaks']} graph breaks"
        f" ({'one graph per step type' if d['one_graph_per_step_type'] else 'NOT one graph per step type'}). "
        + (
            f"Compiled is faster for: {', '.join(faster)}; slower or equal for the rest."
            if faster and len(faster) < len(d["steps"])
            else "Compiled is faster for every step."
            if faster
            else "Compiled is not faster for any step on this machine: eager wins here."
        )
    )
    return "\n\n".join([summary, table(["step", "eager", "compiled", "speed-up", "compile time", "max abs diff (eps)"], rows), provenance(name, d)])


SECTIONS = [Section("compile", "torch.compile under a schedule", 90, ("compile*.json",), render)]
