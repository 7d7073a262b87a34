"""Training commands: --out is checked before any training, retraining swaps only the model's files, bad --minutes
and --epochs are one line, and no half-written weights are left behind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.errors import FlexdiffError

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def leftovers(folder: Path) -> list[str]:
    """Hidden scratch files or folders (``.NAME.partial-PID``, ``.NAME.old-PID``, ``.NAME.tmp-PID``) in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture()
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any training started fails the test: the refusals must come first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started before --out was checked")

    monkeypatch.setattr("flexdiff.training.train_teacher", refuse)
    monkeypatch.setattr("flexdiff.training.train_classifier", refuse)


def test_train_refuses_a_folder_of_other_files_before_training(tmp_path: Path, no_training: None) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    one_line_error(invoke("train", "--out", out, "--steps", "1"), f"--out {out}")
    assert [p.name for p in out.iterdir()] == ["precious.txt"] and (out / "precious.txt").read_text() == "keep me"
    assert leftovers(tmp_path) == []


def test_train_refuses_a_file_as_out_before_training(tmp_path: Path, no_training: None) -> None:
    out = tmp_path / "model.txt"
    out.write_text("not a folder")
    one_line_error(invoke("train", "--out", out, "--steps", "1"), "this is a file")
    assert out.read_text() == "not a folder" and leftovers(tmp_path) == []


@pytest.mark.slow
def test_retraining_a_model_folder_replaces_the_model_and_keeps_other_files(tmp_path: Path) -> None:
    from flexdiff.models import load_model

    out = tmp_path / "teacher"  # as the model card's own command retrains src/flexdiff/assets/digits-teacher
    assert invoke("train", "--out", out, "--steps", "1", "--device", "cpu").exit_code == 0
    (out / "README.md").write_text("model card")
    result = invoke("train", "--out", out, "--steps", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (out / "README.md").read_text() == "model card"
    assert json.loads((out / "training.json").read_text())["steps"] == 2
    assert load_model(out, "cpu").sample_shape == (1, 16, 16)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model_index.json", "scheduler", "training.json", "unet"]
    assert leftovers(tmp_path) == []


def test_a_failed_swap_puts_the_old_model_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flexdiff.utils.io import replace_folder_files

    out, new = tmp_path / "model", tmp_path / "new"
    for folder, tag in ((out, "old"), (new, "new")):
        (folder / "unet").mkdir(parents=True)
        (folder / "unet" / "w").write_text(tag)
        (folder / "model_index.json").write_text(tag)
    (out / "README.md").write_text("card")
    real = Path.replace
    moves: list[Path] = []

    def flaky(self: Path, target: Path) -> Path:
        moves.append(self)
        if self == new / "unet":  # the second entry moved in (model_index.json went first)
            raise OSError(28, "No space left on device")
        return real(self, target)

    monkeypatch.setattr(Path, "replace", flaky)
    with pytest.raises(FlexdiffError, match="No space left"):
        replace_folder_files(new, out)
    monkeypatch.undo()
    assert (out / "unet" / "w").read_text() == "old" and (out / "model_index.json").read_text() == "old"
    assert (out / "README.md").read_text() == "card" and leftovers(tmp_path) == []


@pytest.mark.parametrize("minutes", ["-1", "0", "nan", "inf"])
def test_minutes_must_be_a_positive_finite_cap(minutes: str, tmp_path: Path, no_training: None) -> None:
    one_line_error(invoke("train", "--out", tmp_path / "m", "--steps", "1", "--minutes", minutes), "--minutes")
    assert not (tmp_path / "m").exists()


def test_a_cap_that_ends_before_the_first_step_saves_nothing(tmp_path: Path) -> None:
    result = invoke("train", "--out", tmp_path / "m", "--steps", "1", "--minutes", "1e-12", "--device", "cpu")
    assert result.exit_code == 2 and "0 steps ran" in result.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_train_features_refuses_bad_out_and_epochs_before_training(tmp_path: Path, no_training: None) -> None:
    one_line_error(invoke("train-features", "--out", tmp_path, "--epochs", "1"), "this is a folder")
    one_line_error(invoke("train-features", "--out", tmp_path / "c.safetensors", "--epochs", "0"), "--epochs 0")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_train_classifier_writes_through_a_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    from flexdiff.training import train_classifier

    out = tmp_path / "classifier.safetensors"
    out.write_bytes(b"earlier weights")
    real = safetensors.torch.save_file

    def dies_half_way(tensors: dict, filename: str) -> None:
        assert filename != str(out)  # never written in place
        Path(filename).write_bytes(b"trunc")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    with pytest.raises(FlexdiffError, match="No space left"):
        train_classifier(out, epochs=1)
    assert out.read_bytes() == b"earlier weights" and leftovers(tmp_path) == []
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    stats = train_classifier(out, epochs=1)
    assert math.isfinite(stats["heldout_accuracy"]) and safetensors.torch.load_file(str(out)) and leftovers(tmp_path) == []
