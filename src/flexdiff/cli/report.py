"""``flexdiff report``: one self-contained HTML page for a run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from flexdiff.cli._app import DEVICE, command


@command
def report(
    run_dir: Path = typer.Argument(..., help="run folder: the --out of `flexdiff search` (or `flexdiff compress`)"),
    out: Path | None = typer.Option(None, "--out", help="HTML file to write (default: RUN_DIR/report.html)"),
    n: int = typer.Option(16, "--n", help="images per row of the image grids (generated now from the run's config)"),
    device: str = DEVICE,
) -> None:
    """One self-contained HTML report (images embedded): Pareto plots, image grids, schedule strips, search progress, compress results, provenance."""
    from flexdiff.report import write_report

    path = write_report(run_dir, out, n_images=n, device=device, progress=True)
    print(f"report -> {path} ({path.stat().st_size / 1e3:.0f} kB)")
