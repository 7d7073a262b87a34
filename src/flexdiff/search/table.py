"""The printed Pareto table: searched schedules beside the best baselines, validated numbers."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from flexdiff.utils.progress import stdout
from flexdiff.utils.text import escape_markup as shown


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_results(results: dict[str, Any]) -> None:
    """The validated schedules as a rich table, then the best within the budget. Names and kinds come from the study
    (anyone with access to its storage writes them) and the folder from the command line: each is :func:`shown`
    (control characters and rich markup escaped), so none restyles, hides or rewrites what the terminal shows."""
    teacher, rows, best = results["teacher"], results["validated"], results["best"]
    table = Table(title=f"validated on {results['config']['validate_n']} images; budget {results['budget_speedup']:.2f}x MACs", title_justify="left")
    for column in ("schedule", "kind", "MACs speed-up", "wall speed-up", "rFID", "paired", "FID"):
        table.add_column(column, justify="left" if column in ("schedule", "kind") else "right")
    table.add_row(shown(str(teacher["name"])), "teacher", "1.00x", "1.00x", "0", "0", _fmt(teacher["fid"], ".3f"))
    for row in sorted(rows, key=lambda r: -r["macs"]):
        mark = " *" if best is not None and row["name"] == best["name"] else ""
        solver = row.get("sampler", results["config"]["sampler"])
        kind = row["kind"] if solver == results["config"]["sampler"] else f"{row['kind']} ({solver})"  # a --solver search
        table.add_row(
            shown(str(row["name"])) + mark,
            shown(str(kind)),
            f"{row['macs_speedup']:.2f}x",
            f"{row['wall_speedup']:.2f}x",
            f"{row['rfid']:.3f}",
            f"{row['paired']:.3f}",
            _fmt(row["fid"], ".3f"),
        )
    stdout.print(table)
    stopped = results["trials"].get("pruned") or []
    if stopped:
        stdout.print(
            f"{len(stopped)} of {len(stopped) + len(results['trials']['searched'])} searched candidates stopped early on the rungs {','.join(map(str, results['config']['fidelity']))} (off the front)"
        )
    if stopped_baselines := results["trials"].get("pruned_baselines") or []:
        stdout.print(
            f"{len(stopped_baselines)} of {len(stopped_baselines) + len(results['trials']['baselines'])} baselines stopped early on the rungs (off the front)"
        )
    spent = results.get("teacher_image_equivalents")
    if spent:
        expected = results.get("expected_teacher_image_equivalents") or {}
        guess = f" (estimated {sum(expected.values()):,.0f})" if expected else ""
        stdout.print(f"cost: {sum(spent.values()):,.0f} teacher-image equivalents{guess}: " + ", ".join(f"{k} {v:,.0f}" for k, v in spent.items()))
    out = shown(str(results["config"]["out"]))
    if best is not None and best["kind"] == "peer":
        stdout.print(f"* best within budget: {shown(str(best['name']))} (a caching peer, not a plan); the best schedule within it -> {out}/best.json")
    elif best is not None:
        stdout.print(f"* best within budget: {shown(str(best['name']))} ({shown(str(best['kind']))}) -> {out}/best.json")
    else:
        stdout.print("no validated schedule within the budget; see results.json for the Pareto front")
