"""The compress run's summary table on stdout (the HTML report reads ``results.json``)."""

from __future__ import annotations

from typing import Any


def print_summary(results: dict[str, Any]) -> None:
    """Per block: the choice and its share of the teacher's MACs / parameters; then teacher vs student."""
    from rich.table import Table

    from flexdiff.utils.progress import stdout

    table = Table("block", "choice", "MACs", "params", "block loss")
    for row in results["blocks"]:
        table.add_row(
            row["block"],
            row["choice"],
            f"{row['macs'] / max(row['teacher_macs'], 1):.0%}",
            f"{row['params'] / max(row['teacher_params'], 1):.0%}",
            f"{row['loss']:.4f}",
        )
    stdout.print(table)
    t, s = results["teacher"], results["student"]
    fid = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    stdout.print(
        f"teacher {t['macs'] / 1e6:.2f} MMACs, {t['params']:,} params, FID {fid(t['fid'])}  ->  "
        f"student {s['macs'] / 1e6:.2f} MMACs ({s['macs'] / t['macs']:.1%}), {s['params']:,} params ({s['params'] / t['params']:.1%}), FID {fid(s['fid'])}"
    )
    stdout.print(f"student: {s['path']}  (flexdiff sample --model {s['path']} ...)")
