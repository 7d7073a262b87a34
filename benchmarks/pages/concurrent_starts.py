"""Two searches started at once on one database (``benchmarks/concurrent_starts.py``): several workers may share one
``--out``, so the page shows, per repeat, that both processes exit cleanly, the study holds exactly the trials asked
for and no schedule is evaluated twice (the test suite runs this once; the file is the ten-times acceptance run)."""

from __future__ import annotations

import statistics

from ._format import Doc, Docs, num, provenance, table, yes
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    runs = d["runs"]
    walls = [r["wall_seconds"] for r in runs]
    ok = sum(1 for r in runs if r["ok"])
    rows = [
        [
            str(r["repeat"]),
            ", ".join(map(str, r["exit_codes"])),
            f"{r['searched_trials']} of {d['trials']}",
            str(r["evaluated_twice"]),
            num(r["wall_seconds"], 1),
            "; ".join(r["errors"]) or "none",
            yes(r["ok"]),
        ]
        for r in runs
    ]
    return "\n\n".join(
        [
            f"Two `flexdiff search` processes started at the same instant on one new SQLite `--out`, {d['repeats']} times over, on a tiny random "
            f"UNet saved with diffusers' classes ({d['trials']} trials each, a new folder and seed per repeat): both race to create the storage, the "
            "studies and the teacher reference, then share the trials. A repeat is ok when both processes exit 0, the searched study holds exactly "
            "the trials asked for and no schedule (searched or baseline) was evaluated twice.",
            provenance(name, d),
            f"**{ok} of {len(runs)} repeats ok** (`all_ok`: {yes(d['all_ok'])}); wall-clock per repeat {num(min(walls), 1)} to {num(max(walls), 1)} s "
            f"(median {num(statistics.median(walls), 1)} s).",
            table(["repeat", "exit codes", "searched trials", "evaluated twice", "wall s", "errors", "ok"], rows),
        ]
    )


SECTIONS = [Section("concurrent_starts", "Two searches started at once on one database", 190, ("concurrent_starts.json",), render)]
