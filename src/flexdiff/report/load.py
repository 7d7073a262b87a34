"""Finding the results a run folder holds: a search (``results.json``), a compress run, or both.

A search folder may carry a compress run in ``compress/``; a compress folder (``"kind": "compress"``) may carry the
schedule search of its student in ``search/``. Whatever is missing is ``None`` here and an explicit note in the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexdiff.errors import FlexdiffError
from flexdiff.utils.io import read_json

COMPRESS = "compress"


@dataclass(frozen=True)
class RunData:
    """The run folder and the parsed results it holds (``None`` where absent)."""

    run_dir: Path
    search: dict[str, Any] | None
    search_path: Path | None
    compress: dict[str, Any] | None
    compress_path: Path | None


def read_results(path: Path) -> dict[str, Any]:
    """One results file as a dict; a missing or corrupt file is a one-line :class:`FlexdiffError`."""
    if not path.exists():
        raise FlexdiffError(path, "a results.json written by `flexdiff search` or `flexdiff compress`", "pass the --out folder of a finished run")
    data = read_json(path, "a valid results.json", "rerun the command that wrote it")
    if not isinstance(data, dict):
        raise FlexdiffError(path, "a JSON object of results", "rerun the command that wrote it")
    return data


def _optional(path: Path) -> dict[str, Any] | None:
    return read_results(path) if path.is_file() else None


def load_run(run_dir: str | Path) -> RunData:
    """Read what ``run_dir`` holds; at least its own ``results.json`` must exist (else there is nothing to report)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FlexdiffError(run_dir, "an existing run folder (the --out of `flexdiff search` or `flexdiff compress`)", "check the path")
    own_path = run_dir / "results.json"
    if not own_path.is_file():
        raise FlexdiffError(
            own_path, "the results.json of a finished search or compress run", "run `flexdiff search --out DIR` to the end first, then `flexdiff report DIR`"
        )
    own = read_results(own_path)
    if own.get("kind") == COMPRESS:
        nested = run_dir / "search" / "results.json"
        return RunData(run_dir, _optional(nested), nested if nested.is_file() else None, own, own_path)
    nested = run_dir / COMPRESS / "results.json"
    return RunData(run_dir, own, own_path, _optional(nested), nested if nested.is_file() else None)
