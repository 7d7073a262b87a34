"""``flexdiff report``: one self-contained HTML page for a search run and, when present, a compress run.

Sections: the Pareto front (speed-up against rFID / FID, every baseline family, the chosen schedule), image grids
(teacher vs chosen vs its best rival from the same noise, with difference maps), schedule strips, search progress,
the compress results, and the provenance (commands, versions, seeds, machine). ``flexdiff search`` (and
``flexdiff compress``) call :func:`write_report` at the end of every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flexdiff.utils.optional import require

require("matplotlib", "search", "the HTML report")

import matplotlib  # noqa: E402 - after the check

from flexdiff.errors import FlexdiffError, output_folder  # noqa: E402 - after the check
from flexdiff.report import sections
from flexdiff.report.html import Section, absent, page
from flexdiff.report.load import RunData, load_run
from flexdiff.utils.io import write_text
from flexdiff.utils.text import escape, shorten

__all__ = ["write_report", "write_run_report"]


#: the most images a grid row shows (every schedule of the front gets a row, generated now)
MAX_GRID_IMAGES = 256


def write_report(run_dir: str | Path, out: str | Path | None = None, *, n_images: int = 16, device: str = "cpu", progress: bool = False) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``) atomically; returns its path.

    ``n_images`` images per grid row are generated now from the run's config (the model must be loadable here; if
    it is not, that section says so and the rest renders).
    """
    if not 1 <= n_images <= MAX_GRID_IMAGES:  # a bound, not only a floor: a grid too large to make would leave a report without grids
        raise FlexdiffError(f"--n {n_images}", f"1 to {MAX_GRID_IMAGES} images per grid row", "pass e.g. --n 16")
    data = load_run(run_dir)
    target = Path(out) if out is not None else data.run_dir / "report.html"
    if target.is_dir():
        raise FlexdiffError(target, "a file path for the HTML report", "pass e.g. --out report.html")
    output_folder(target.parent, create=False)  # before the image grids take their seconds (write_atomic makes it)
    # Names and families in the figures come from the study and from schedule files: shown literally, never parsed as
    # matplotlib mathtext (a "$\\x$" in a name would otherwise fail its figure). The report uses no mathtext itself.
    with matplotlib.rc_context({"text.parse_math": False}):
        parts, summary = _sections(data, n_images, device, progress)
    title = f"flexdiff report — {data.run_dir.resolve().name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, page(title, summary, parts))
    return target


def _sections(data: RunData, n_images: int, device: str, progress: bool) -> tuple[list[Section], str]:
    """The page's sections and its summary, each built under its own guard (a failure is a note in its place)."""
    if data.search is not None:
        parts = [
            sections.guarded("pareto", "Pareto front", lambda: sections.pareto(data)),
            sections.guarded("grids", "Image grids", lambda: sections.image_grids(data, n_images, device, progress)),
            sections.guarded("strips", "Schedule strips", lambda: sections.strips(data)),
            sections.guarded("progress", "Search progress", lambda: sections.progress(data)),
        ]
    else:  # a compress run without a search of its student: one note instead of four
        parts = [sections.guarded("search", "Schedule search", lambda: absent(sections.NO_SEARCH))]
    parts += [
        sections.guarded("compress", "Compress", lambda: sections.compress(data)),
        sections.guarded("provenance", "Provenance", lambda: sections.provenance_section(data)),
    ]
    summary = sections.guarded("summary", "Summary", lambda: sections.summary(data)).body  # a malformed results.json: a note, not a traceback
    return parts, summary


def write_run_report(run_dir: Path, *, device: str = "cpu", progress: bool = True) -> Path | None:
    """``RUN_DIR/report.html`` at the end of a run. Its results are already written, so a report failure costs nothing
    but a warning (hours of search or training must not end in a traceback over a plot); returns the path or None."""
    try:
        path = write_report(run_dir, device=device, progress=progress)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(
            f"warning: report not written ({exc.__class__.__name__}: {escape(shorten(str(exc), 300))}); run `flexdiff report {escape(str(run_dir))}`",
            file=sys.stderr,
        )
        return None
    if progress:
        print(f"report -> {path}")
    return path
