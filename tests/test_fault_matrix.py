"""Fault injection over every artefact kind flexdiff reads back and every command that writes (issue 19).

Each artefact kind gets the same five damages — truncated, garbage, empty, wrong key (a tensor or field renamed),
wrong shape — and one of two promised outcomes:

- a **cache or a run's own state** (the teacher reference of a search; a compress run's records, distilled blocks and
  retraining checkpoint) is rebuilt with a one-line warning, and the run ends with exactly the result of an
  undamaged run;
- an **input** (a schedule file, a model folder's weights and config, an image set, a run's results.json, a study
  database) is refused: exit code 2, one stderr line, no traceback, nothing written — except where the kind's own
  contract answers otherwise, which is checked instead: an empty study database is an empty SQLite database (a new
  study), a results.json with fields missing or mistyped is rendered with each gap named on the page.

Then the faults a file system or a user adds mid-run: a full disk (``ENOSPC``) in the middle of a compress phase, an
interrupt (SIGINT, exit 130) in the middle of one, and a read-only ``--out`` for every command that writes. In each
case: the earlier complete artefacts intact, no temporary file, and the rerun equal to an uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from nas.test_compress import kill_during, same_student
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, save_model
from flexdiff.testing.tiny import tiny_unet

pytestmark = pytest.mark.slow  # end-to-end runs of search and compress

runner = CliRunner()
DAMAGES = ("truncated", "garbage", "empty", "wrong key", "wrong shape")
COMPRESS = [
    "--record-n",
    "32",
    "--val-n",
    "8",
    "--distill-steps",
    "3",
    "--retrain-steps",
    "4",
    "--fid-n",
    "0",
    "--minutes",
    "5",
    "--device",
    "cpu",
    "--no-report",
    "--seed",
    "3",
]
SEARCH = ["--steps", "6", "--n", "8", "--trials", "3", "--validate-n", "8", "--segments", "2,3", "--baseline-branches", "0", "--speedup", "2", "--seed", "0"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def damage(path: Path, how: str) -> None:
    """One of :data:`DAMAGES` applied to a safetensors or JSON file in place."""
    data = path.read_bytes()
    if how in ("truncated", "garbage", "empty"):
        path.write_bytes({"truncated": data[: len(data) // 3], "garbage": b"\x00not a file\xff" * 40, "empty": b""}[how])
    elif path.suffix == ".safetensors":
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        first = sorted(k for k in tensors if tensors[k].ndim > 0)[0]
        if how == "wrong key":
            tensors["renamed." + first] = tensors.pop(first)
        else:
            tensors[first] = torch.zeros(3, 1, dtype=tensors[first].dtype)
        save_file(tensors, str(path), metadata=meta)
    else:
        obj = json.loads(data)
        first = sorted(obj)[0]
        if how == "wrong key":
            obj["renamed_" + first] = obj.pop(first)
        else:
            obj[first] = [obj[first], 0]
        path.write_text(json.dumps(obj))


def assert_one_line(result, code: int = 2) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and "━" not in line]  # progress bars aside
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and len(lines) == 1 and lines[0].startswith(("error:", "interrupted")), result.stderr
    return lines[0]


def no_temp_files(folder: Path) -> None:
    left = [p.name for p in folder.parent.rglob("*") if ".tmp" in p.name or p.name.startswith(f".{folder.name}.")]
    assert not left, left


# --- fixtures: one undamaged run of each kind ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "teacher16"
    save_model(tiny_unet(sample_size=16), out, DEFAULT_SCHEDULER_CONFIG)
    return out


@pytest.fixture(scope="module")
def compress_run(teacher16: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "compress"
    assert invoke("compress", "--model", teacher16, "--out", out, *COMPRESS).exit_code == 0
    return out


@pytest.fixture(scope="module")
def search_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "search"
    assert invoke("search", "--model", tiny_model_dir, "--out", out, *SEARCH).exit_code == 0
    return out


# --- caches and run state: rebuilt with a warning, the result unchanged --------------------------------------------
AFTER_DISTILL = ["scores.json", "search.json", "retrain", "student", "results.json"]
COMPRESS_STATE = {  # artefact -> (phase it belongs to, what that phase's interruption leaves missing, the warning)
    "records.safetensors": ("distill", ["blocks", *AFTER_DISTILL], "recording the teacher again"),
    "blocks/up0.safetensors": ("distill", ["blocks/up1.safetensors", *AFTER_DISTILL], "distilling up0 again"),
    "retrain/checkpoint.safetensors": ("retrain", ["student", "results.json"], "retraining from step 0"),
}


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("artefact", list(COMPRESS_STATE))
def test_a_damaged_compress_state_file_is_rebuilt(artefact: str, how: str, compress_run: Path, teacher16: Path, tmp_path: Path) -> None:
    phase, lost, warning = COMPRESS_STATE[artefact]
    folder = tmp_path / "run"
    shutil.copytree(compress_run, folder)
    kill_during(folder, phase, lost)
    damage(folder / artefact, how)
    result = invoke("compress", "--model", teacher16, "--out", folder, *COMPRESS)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and warning in warned[0] and artefact.split("/")[-1] in warned[0], result.stderr
    assert same_student(folder, compress_run)
    no_temp_files(folder)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_teacher_cache_is_rebuilt_by_the_search(how: str, search_run: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from flexdiff.search.reference import CACHE_NAME

    folder = tmp_path / "run"
    shutil.copytree(search_run, folder, ignore=shutil.ignore_patterns("study.db"))
    damage(folder / CACHE_NAME, how)
    result = invoke("search", "--model", tiny_model_dir, "--out", folder, *SEARCH)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "rebuilt" in result.stderr and "damaged" in result.stderr, result.stderr
    rfids = lambda d: sorted((r["name"], r["rfid"]) for r in json.loads((d / "results.json").read_text())["trials"]["searched"])  # noqa: E731
    assert rfids(folder) == rfids(search_run)  # the rebuilt reference is the same reference
    no_temp_files(folder)


# --- inputs: refused in one line, nothing written -----------------------------------------------------------------
def _schedule(search_run: Path, tiny_model_dir: Path, tmp: Path) -> tuple[Path, list[object]]:
    path = tmp / "best.json"
    shutil.copy(search_run / "best.json", path)
    return path, ["sample", "--model", tiny_model_dir, "--schedule", path, "--n", "2", "--out", tmp / "out"]


def _weights(search_run: Path, tiny_model_dir: Path, tmp: Path) -> tuple[Path, list[object]]:
    shutil.copytree(tiny_model_dir, tmp / "model")
    return tmp / "model" / "unet" / "diffusion_pytorch_model.safetensors", [
        "sample",
        "--model",
        tmp / "model",
        "--steps",
        "2",
        "--n",
        "2",
        "--out",
        tmp / "out",
    ]


def _config(search_run: Path, tiny_model_dir: Path, tmp: Path) -> tuple[Path, list[object]]:
    shutil.copytree(tiny_model_dir, tmp / "model")
    return tmp / "model" / "unet" / "config.json", ["sample", "--model", tmp / "model", "--steps", "2", "--n", "2", "--out", tmp / "out"]


def _images(search_run: Path, tiny_model_dir: Path, tmp: Path) -> tuple[Path, list[object]]:
    path = tmp / "images.npz"
    np.savez(path, images=np.zeros((4, 1, 16, 16), np.float32), labels=np.zeros(4))
    return path, ["eval", "--samples", path, "--reference", "builtin:digits-heldout"]


def _study(search_run: Path, tiny_model_dir: Path, tmp: Path) -> tuple[Path, list[object]]:
    shutil.copytree(search_run, tmp / "out")
    return tmp / "out" / "study.db", ["search", "--model", tiny_model_dir, "--out", tmp / "out", *SEARCH]


def _results(search_run: Path, tiny_model_dir: Path, tmp: Path) -> tuple[Path, list[object]]:
    shutil.copytree(search_run, tmp / "run", ignore=shutil.ignore_patterns("study.db"))
    return tmp / "run" / "results.json", ["report", tmp / "run", "--out", tmp / "out" / "report.html", "--n", "2"]


INPUTS: dict[str, Callable[[Path, Path, Path], tuple[Path, list[object]]]] = {
    "schedule file": _schedule,
    "model weights": _weights,
    "model config": _config,
    "image set": _images,
    "study database": _study,
    "results.json": _results,
}
# damages an input kind answers otherwise than with a refusal, by its documented contract (checked, not skipped)
NOT_A_TENSOR_FILE = {("study database", "wrong key"), ("study database", "wrong shape")}  # another study: test_error_net


def _answered_otherwise(kind: str, how: str, path: Path, result, tmp: Path) -> bool:
    """The contract's answer where it is not a refusal; False where a refusal is expected."""
    if (kind, how) == ("study database", "empty"):  # an empty file is an empty SQLite database: a new study in it
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        assert json.loads((path.parent / "results.json").read_text())["trials"]["searched"]
        return True
    if kind == "results.json" and how in ("wrong key", "wrong shape"):  # rendered, each gap named on the page
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        html = (tmp / "out" / "report.html").read_text()
        assert 'class="absent"' in html or "could not be rendered" in html
        return True
    return False


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", list(INPUTS))
def test_a_damaged_input_is_refused_in_one_line(kind: str, how: str, search_run: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    if (kind, how) in NOT_A_TENSOR_FILE:
        pytest.skip("a database has no tensor to rename or reshape; a study made for other settings is refused in test_error_net")
    path, args = INPUTS[kind](search_run, tiny_model_dir, tmp_path)
    if kind == "image set" and how in ("wrong key", "wrong shape"):  # an .npz's 'images', or its only array
        np.savez(path, pictures=np.zeros((4, 1, 16, 16), np.float32), labels=np.zeros(4)) if how == "wrong key" else np.savez(
            path, images=np.zeros((4, 16), np.float32)
        )
    else:
        damage(path, how)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = invoke(*args)
    if _answered_otherwise(kind, how, path, result, tmp_path):
        return
    line = assert_one_line(result)
    assert path.name in line or path.parent.name in line, line
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written, nothing changed


# --- a full disk and an interrupt mid-phase in compress -----------------------------------------------------------
def _fail_on(target: str, exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    """``safetensors.torch.save_file`` raises ``exc`` when it writes ``target`` (the writer every phase uses)."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def save(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
        if Path(filename).name.startswith(target):
            raise exc
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save)


@pytest.mark.parametrize("fault, code", [(OSError(errno.ENOSPC, "No space left on device"), 2), (KeyboardInterrupt(), 130)], ids=["ENOSPC", "SIGINT"])
@pytest.mark.parametrize("target", ["up1.safetensors", "checkpoint.safetensors"])
def test_a_fault_mid_phase_keeps_finished_phases_and_the_rerun_ends_equal(
    fault: BaseException, code: int, target: str, compress_run: Path, teacher16: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "run"
    _fail_on(target, fault, monkeypatch)
    line = assert_one_line(invoke("compress", "--model", teacher16, "--out", folder, *COMPRESS), code)
    assert ("No space left" in line) if code == 2 else ("rerun the same command" in line), line
    no_temp_files(folder)
    finished = {p: p.read_bytes() for p in (folder / "records.safetensors", folder / "blocks" / "up0.safetensors") if p.is_file()}
    assert folder / "records.safetensors" in finished and not (folder / "results.json").exists()
    monkeypatch.undo()
    assert invoke("compress", "--model", teacher16, "--out", folder, *COMPRESS).exit_code == 0
    assert all(p.read_bytes() == data for p, data in finished.items())  # finished work kept and reused, not redone
    assert same_student(folder, compress_run)


# --- a read-only --out, for every command that writes ---------------------------------------------------------------
WRITERS = {
    "sample": ["sample", "--steps", "2", "--n", "2", "--out", "{out}"],
    "search": ["search", "--model", "{model}", *SEARCH, "--out", "{out}"],
    "compress": ["compress", "--model", "{teacher16}", *COMPRESS, "--out", "{out}"],
    "train": ["train", "--steps", "1", "--out", "{out}"],
    "train-features": ["train-features", "--epochs", "1", "--out", "{out}/digits.safetensors"],
    "schedule": ["schedule", "full", "--steps", "4", "--out", "{out}/full.json"],
    "report": ["report", "{run}", "--n", "2", "--out", "{out}/report.html"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_read_only_out_is_refused_before_any_work(
    command: str, search_run: Path, tiny_model_dir: Path, teacher16: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked and mode & os.W_OK else real(p, mode, **kw))  # root ignores chmod
    args = [a.format(out=locked / "out", model=tiny_model_dir, teacher16=teacher16, run=search_run) for a in WRITERS[command]]
    line = assert_one_line(invoke(*args))
    assert "not writable" in line and str(locked) in line, line
    assert list(locked.iterdir()) == []


# --- a full disk in the middle of a search trial ------------------------------------------------------------------
def test_a_full_disk_mid_trial_keeps_finished_trials_and_the_rerun_equals_an_uninterrupted_search(
    search_run: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC raised inside the second searched evaluation (where the study's database writes): one line, exit 2; the
    first trial stays in the study; the rerun ends with exactly the uninterrupted search's trials and results."""
    from search.test_search import _searched_sequence

    from flexdiff.search.context import SearchContext

    folder = tmp_path / "run"
    real, calls = SearchContext.evaluate, []

    def evaluate(self: SearchContext, schedule: object, trial: object = None) -> dict[str, object]:
        if trial is not None and not trial.study.study_name.endswith(":baselines"):  # a searched candidate (baselines have trials too)
            calls.append(schedule)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(folder / "study.db"))
        return real(self, schedule, trial)

    monkeypatch.setattr(SearchContext, "evaluate", evaluate)
    line = assert_one_line(invoke("search", "--model", tiny_model_dir, "--out", folder, *SEARCH))
    assert "No space left" in line and "study.db" in line, line
    assert len([s for s in _searched_sequence(folder) if s[0] == "COMPLETE"]) == 1 and not (folder / "results.json").exists()
    no_temp_files(folder)
    monkeypatch.undo()
    assert invoke("search", "--model", tiny_model_dir, "--out", folder, *SEARCH).exit_code == 0
    assert _searched_sequence(folder) == _searched_sequence(search_run)
    pick = lambda d: json.loads((d / "best.json").read_text())["steps"]  # noqa: E731
    assert pick(folder) == pick(search_run)


@pytest.mark.parametrize("command", ["sample", "search"])
def test_an_out_in_a_read_only_folder_is_refused_before_any_work(command: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sample and search stage their files in a sibling of --out and swap them in: an existing, writable --out inside a
    read-only folder would only fail at the end, after all the work; it is refused first."""
    locked = tmp_path / "locked"
    (locked / "out").mkdir(parents=True)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked and mode & os.W_OK else real(p, mode, **kw))
    args = [a.format(out=locked / "out", model=tiny_model_dir) for a in WRITERS[command]]
    line = assert_one_line(invoke(*args))
    assert "not writable" in line and str(locked) in line, line
    assert list((locked / "out").iterdir()) == []
