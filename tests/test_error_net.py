"""The CLI's outer error net (flexdiff.cli._app.guard): whatever a command meets — an OS error, a file nested too
deeply, an interrupt, an internal failure — ends in one stderr line and exit code 2 (130 for Ctrl-C), never a
traceback; ``--debug`` (or FLEXDIFF_DEBUG=1) shows the traceback instead; printed values cannot reach the terminal
as control characters."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flexdiff.models
from flexdiff.cli import app
from flexdiff.errors import FlexdiffError
from flexdiff.utils.text import escape

runner = CliRunner()

FAULTS = {
    "disk full": (OSError(errno.ENOSPC, "No space left on device", "/out/samples.npz"), 2, ["/out/samples.npz", "No space left", "free space"]),
    "read-only": (PermissionError(errno.EACCES, "Permission denied", "/out"), 2, ["/out", "Permission denied", "permissions"]),
    "too deep": (RecursionError("maximum recursion depth exceeded while decoding a JSON array"), 2, ["nested too deeply", "fix the file"]),
    "internal": (TypeError("unsupported operand"), 2, ["TypeError (unsupported operand)", "--debug"]),
    "interrupt": (KeyboardInterrupt(), 130, ["interrupted", "rerun the same command"]),
}


def _raising(exc: BaseException):
    def load_model(*args: object, **kwargs: object):
        raise exc

    return load_model


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_failure_is_one_line_with_its_exit_code(fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    exc, code, needles = FAULTS[fault]
    monkeypatch.setattr(flexdiff.models, "load_model", _raising(exc))
    result = runner.invoke(app, ["inspect"])
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.stderr
    assert all(n in result.stderr for n in needles), result.stderr


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flexdiff.models, "load_model", _raising(TypeError("unsupported operand")))
    result = runner.invoke(app, ["--debug", "inspect"])
    assert isinstance(result.exception, TypeError)  # not caught: the runner holds the traceback
    monkeypatch.setenv("FLEXDIFF_DEBUG", "1")
    assert isinstance(runner.invoke(app, ["inspect"]).exception, TypeError)
    monkeypatch.delenv("FLEXDIFF_DEBUG")
    assert runner.invoke(app, ["inspect"]).exit_code == 2  # the flag does not outlive its invocation


def test_a_schedule_file_nested_200k_deep_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    result = runner.invoke(app, ["sample", "--model", "builtin:digits", "--schedule", str(deep), "--n", "2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_control_characters_are_escaped_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "evil\x1b[2J\x00\u202etxt.json"
    assert escape(name) == "evil\\x1b[2J\\x00\\u202etxt.json" and escape("ddim-13 ünïcode") == "ddim-13 ünïcode"
    monkeypatch.setattr(flexdiff.models, "load_model", _raising(FlexdiffError(name, "a schedule name", "rename it")))
    result = runner.invoke(app, ["inspect"])
    assert result.exit_code == 2 and "\x1b" not in result.stderr and "\x00" not in result.stderr and "\u202e" not in result.stderr
    assert "\\x1b[2J" in result.stderr


def test_storage_passwords_are_masked_on_the_terminal_and_in_results(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from flexdiff.provenance import current_command
    from flexdiff.utils.text import mask_password

    url = "postgresql+psycopg2://flexdiff:s3cr%40t@127.0.0.1:1/db"
    assert mask_password(url) == "postgresql+psycopg2://flexdiff:***@127.0.0.1:1/db"
    assert mask_password("sqlite:////tmp/a:b@c/study.db") == "sqlite:////tmp/a:b@c/study.db"  # no userinfo: a path is left alone
    monkeypatch.setattr("sys.argv", ["/venv/bin/flexdiff", "search", "--storage", url])
    assert current_command() == ["flexdiff", "search", "--storage", mask_password(url)]
    result = runner.invoke(app, ["search", "--storage", url, "--trials", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "s3cr" not in result.output and "flexdiff:***@" in result.stderr, result.output


@pytest.fixture()
def shapes(tmp_path: Path) -> Path:
    """3x5x5 colour images: a set of another kind than the built-in 1x16x16 digits."""
    import numpy as np

    path = tmp_path / "rgb5.npz"
    np.savez(path, images=np.zeros((8, 3, 5, 5), dtype=np.float32))
    return path


@pytest.fixture()
def teacher_file(tmp_path: Path) -> Path:
    path = tmp_path / "full.json"
    assert runner.invoke(app, ["schedule", "full", "--steps", "4", "--out", str(path)]).exit_code == 0
    return path


# the defects of issue 19 that were a traceback, silence or a late refusal: now one line, exit 2, before any work
REFUSED = [
    (["sample", "--batch-size", "-1", "--steps", "2", "--n", "2", "--out", "{out}"], "batch size"),
    (["sample", "--n", "99999999999999999999", "--out", "{out}"], "--n"),
    (["sample", "--schedule", "{teacher}", "--steps", "20", "--n", "2", "--out", "{out}"], "--steps 20"),
    (["sample", "--schedule", "{teacher}", "--sampler", "dpmpp-2m", "--n", "2", "--out", "{out}"], "--sampler dpmpp-2m"),
    (["eval", "--samples", "{shapes}"], "reference's shape"),
    (["train", "--data", "{shapes}", "--steps", "1", "--out", "{out}"], "(3, 5, 5)"),
    (["search", "--n", "99999999999999999999", "--out", "{out}"], "--n"),
    (["search", "--workers", "100000", "--out", "{out}"], "--workers 100000"),
    (["search", "--speedup", "1e9", "--steps", "10", "--out", "{out}"], "at most"),
    (["search", "--baseline-branches", "99", "--steps", "6", "--segments", "2,3", "--trials", "1", "--out", "{out}"], "--baseline-branches 99"),
    (["search", "--batch-size", "0", "--out", "{out}"], "batch size"),
    (["report", "{tmp}", "--n", "100000000"], "--n 100000000"),
]


@pytest.mark.parametrize("args, needle", REFUSED)
def test_refused_before_any_work(args: list[str], needle: str, tmp_path: Path, shapes: Path, teacher_file: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, [a.format(out=out, tmp=tmp_path, shapes=shapes, teacher=teacher_file) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert not out.exists()  # no folder made, nothing half-written


def test_a_read_only_out_is_refused_before_the_sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import flexdiff.sample_job

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real(p, mode, **kw))  # root ignores chmod
    monkeypatch.setattr(flexdiff.sample_job, "sample", _raising(AssertionError("sampled before the check")))
    result = runner.invoke(app, ["sample", "--steps", "2", "--n", "2", "--out", str(locked / "o")])
    assert result.exit_code == 2 and "not writable" in result.stderr, result.output


def test_a_full_disk_mid_sample_keeps_the_previous_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while the second run writes: the first run's samples, grid and run.json stay, together; no temp file."""
    import flexdiff.sample_job

    out = tmp_path / "o"
    assert runner.invoke(app, ["sample", "--steps", "2", "--n", "2", "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(path: Path, images: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(flexdiff.sample_job, "save_grid", full_disk)
    result = runner.invoke(app, ["sample", "--steps", "3", "--n", "3", "--seed", "1", "--out", str(out)])
    last = result.stderr.strip().splitlines()[-1]  # after the sampling bar: the one error line
    assert result.exit_code == 2 and last.startswith("error:") and "No space left" in last and "Traceback" not in result.output, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["o", "full.json"] if (tmp_path / "full.json").exists() else ["o"])


@pytest.mark.slow
def test_a_full_disk_while_a_search_writes_keeps_the_previous_set(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC as a rerun writes results.json: the earlier results.json, best.json and schedules/ stay, as a set; every
    finished trial stays in the study; no staging folder is left; the rerun after it completes the set again."""
    from search.test_search import search_args

    import flexdiff.search.artefacts

    out = tmp_path / "run"
    assert runner.invoke(app, search_args(tiny_model_dir, out, 2)).exit_code == 0
    snapshot = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.json"))}
    real = flexdiff.search.artefacts.write_json

    def full_disk(path: Path, data: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(flexdiff.search.artefacts, "write_json", full_disk)
    result = runner.invoke(app, search_args(tiny_model_dir, out, 3))
    assert result.exit_code == 2 and "No space left" in result.stderr and "Traceback" not in result.output, result.output
    assert {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.json"))} == snapshot
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder, no temp file
    monkeypatch.setattr(flexdiff.search.artefacts, "write_json", real)
    assert runner.invoke(app, search_args(tiny_model_dir, out, 3)).exit_code == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["trials"]["searched"]) == 3 and all((out / f).is_file() for f in results["files"])


@pytest.mark.slow
def test_a_study_made_for_other_settings_is_refused_before_the_teacher_cache_changes(tiny_model_dir: Path, tmp_path: Path) -> None:
    from search.test_search import search_args

    out = tmp_path / "run"
    assert runner.invoke(app, search_args(tiny_model_dir, out, 1, "--study", "mystudy")).exit_code == 0
    cache = (out / "teacher_cache.safetensors").read_bytes()
    args = search_args(tiny_model_dir, out, 1, "--study", "mystudy")
    args[args.index("--n") + 1] = "6"
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "mystudy" in result.stderr and result.stderr.count("\n") == 1, result.output
    assert (out / "teacher_cache.safetensors").read_bytes() == cache


def test_earlier_commands_recorded_unmasked_by_an_older_flexdiff_are_masked_when_carried_over(tmp_path: Path) -> None:
    """A resumed run copies the earlier commands of its results.json: a password an older version left in them (its
    ``?password=`` form) is masked on the way, not carried into the new file."""
    import json

    from flexdiff.provenance import run_provenance

    old = tmp_path / "results.json"
    old.write_text(json.dumps({"command": ["flexdiff", "search", "--storage", "postgresql://h/db?password=hunter2"], "earlier_commands": []}))
    recorded = run_provenance(old, ["flexdiff", "search"])
    assert recorded["earlier_commands"] and "hunter2" not in json.dumps(recorded)
