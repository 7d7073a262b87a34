"""The CLI end to end on a tiny model folder; every bad input is one stderr line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flexdiff.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_sample_writes_npz_grid_and_is_deterministic(tiny_model_dir: Path, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        result = invoke("sample", "--model", tiny_model_dir, "--steps", "5", "--n", "6", "--batch-size", "4", "--seed", "3", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        with np.load(tmp_path / name / "samples.npz") as f:
            images = f["images"]
        assert images.shape == (6, 1, 8, 8) and images.dtype == np.float32
        assert images.min() >= -1 and images.max() <= 1
        assert (tmp_path / name / "grid.png").stat().st_size > 0
        outs.append(images)
    assert np.array_equal(outs[0], outs[1])
    other = invoke("sample", "--model", tiny_model_dir, "--steps", "5", "--n", "6", "--seed", "4", "--sampler", "dpmpp-2m", "--out", tmp_path / "c")
    assert other.exit_code == 0, other.output


def test_batch_size_does_not_change_images(tiny_model_dir: Path, tmp_path: Path) -> None:
    for name, bs in (("one", "6"), ("many", "2")):
        assert invoke("sample", "--model", tiny_model_dir, "--steps", "4", "--n", "6", "--batch-size", bs, "--out", tmp_path / name).exit_code == 0
    with np.load(tmp_path / "one" / "samples.npz") as a, np.load(tmp_path / "many" / "samples.npz") as b:
        assert np.allclose(a["images"], b["images"], atol=1e-5)


def test_eval_json(tmp_path: Path) -> None:
    result = invoke("eval", "--samples", "builtin:digits-train", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"fid", "n_samples", "n_reference", "features"}
    assert data["n_reference"] == 500 and data["features"] == "digits" and data["fid"] > 0
    again = json.loads(invoke("eval", "--samples", "builtin:digits-train", "--json").stdout)
    assert again == data


@pytest.fixture()
def corrupt_npz(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    return path


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sample", "--model", "/no/such/model", "--out", "{tmp}/o"], "/no/such/model"),
        (["sample", "--model", "{tmp}", "--out", "{tmp}/o"], "diffusers folder"),
        (["sample", "--model", "builtin:digits", "--sampler", "euler-x", "--out", "{tmp}/o"], "euler-x"),
        (["sample", "--model", "builtin:digits", "--steps", "0", "--out", "{tmp}/o"], "number of steps"),
        (["sample", "--model", "builtin:digits", "--n", "0", "--out", "{tmp}/o"], "--n"),
        (["eval", "--samples", "builtin:digits-train", "--features", "vgg"], "vgg"),
        (["eval", "--samples", "{corrupt}"], "corrupt"),
        (["eval", "--samples", "builtin:digits-train", "--reference", "/missing.npz"], "/missing.npz"),
        (["sample", "--model", "builtin:digits", "--eta", "nan", "--steps", "2", "--out", "{tmp}/o"], "--eta nan"),  # was NaN images, exit 0
        (["sample", "--model", "builtin:digits", "--eta", "5", "--steps", "2", "--out", "{tmp}/o"], "eta in [0, 1]"),  # was a complex-tensor traceback
        (["schedule", "deepcache", "--interval", "2", "--center", "1", "--power", "0", "--out", "{tmp}/o"], "--power 0"),
        (["schedule", "full", "--steps", "4", "--out", "{tmp}"], "not a folder"),
        (["schedule", "full", "--steps", "4", "--out", "{tmp}/o/"], "not a folder"),  # was a file named o
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], needle: str, tmp_path: Path, corrupt_npz: Path) -> None:
    result = invoke(*[a.format(tmp=tmp_path, corrupt=corrupt_npz) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert not (tmp_path / "o").exists()  # nothing half-written


@pytest.mark.slow
def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("flexdiff")
    proc = subprocess.run(
        [str(exe), "sample", "--model", str(tmp_path), "--out", str(tmp_path / "o")], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sample", "--n", "abc", "--out", "o"], "'--n'"),
        (["sample", "--seed", "-1", "--out", "o"], "'--seed'"),
        (["sample"], "'--out'"),
        (["sample", "--no-such-option"], "--no-such-option"),
    ],
)
@pytest.mark.slow
def test_console_script_usage_errors_are_one_line_too(tmp_path: Path, args: list[str], needle: str) -> None:
    exe = Path(sys.executable).with_name("flexdiff")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error:") and needle in proc.stderr and "flexdiff sample --help" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_sample_checks_out_and_the_schedules_timesteps_before_sampling(tiny_model_dir: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine")
    result = invoke("sample", "--model", tiny_model_dir, "--steps", "2", "--n", "2", "--out", taken)
    assert result.exit_code == 2 and str(taken) in result.stderr and result.stdout == ""  # no progress bar: nothing ran
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "flexdiff.schedule", "version": 1, "T": 3, "timesteps": [5000, 500, 0], "steps": ["full"] * 3}))
    result = invoke("sample", "--model", tiny_model_dir, "--schedule", plan, "--n", "2", "--out", tmp_path / "o")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert f"{plan} timesteps 5000..0" in result.stderr and not (tmp_path / "o").exists()


def test_inspect_json_lists_branches(tiny_model_dir: Path) -> None:
    result = invoke("inspect", "--model", tiny_model_dir, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    macs = [b["partial_macs"] for b in info["branches"]]
    assert len(macs) == 6 and macs == sorted(macs) and macs[-1] < info["full_step_macs"]
    assert info["branches"][0]["skip"] == "conv_in"


@pytest.mark.parametrize(
    "kind, extra, counts",
    [
        ("full", [], {"full": 10, "partial": 0, "null": 0}),
        ("ddim", ["--k", "4"], {"full": 4, "partial": 0, "null": 6}),
        ("deepcache", ["--interval", "3", "--branch", "2"], {"full": 4, "partial": 6, "null": 0}),
        ("deepcache", ["--interval", "3", "--center", "4"], {"full": 4, "partial": 6, "null": 0}),
        ("genome", ["--segments", "0:3,5:1"], {"full": 2, "partial": 2, "null": 6}),
        ("genome", ["--segments", "0:3,5:1,0:1@2"], {"full": 3, "partial": 2, "null": 5}),  # segments of 5, 3, 2 steps
    ],
)
def test_schedule_then_sample(tiny_model_dir: Path, tmp_path: Path, kind: str, extra: list[str], counts: dict) -> None:
    path = tmp_path / "s.json"
    result = invoke("schedule", kind, "--model", tiny_model_dir, "--steps", "10", *extra, "--out", path)
    assert result.exit_code == 0, result.output
    result = invoke("sample", "--model", tiny_model_dir, "--schedule", path, "--n", "3", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "MACs speed-up" in result.stdout
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["schedule"]["T"] == 10 and run["macs_speedup"] >= 1.0
    assert sum(counts.values()) == 10 and str(counts) in result.stdout


@pytest.mark.parametrize(
    "setup, needle",
    [
        (lambda p: p.write_text("{oops"), "does not parse"),
        (
            lambda p: p.write_text(json.dumps({"format": "flexdiff.schedule", "version": 1, "T": 2, "timesteps": [900, 100], "steps": ["null", "full"]})),
            "first step",
        ),
        (
            lambda p: p.write_text(json.dumps({"format": "flexdiff.schedule", "version": 1, "T": 2, "timesteps": [900, 100], "steps": ["full", "partial:6"]})),
            "branch in [0, 5]",
        ),
        (lambda p: None, "existing schedule"),
    ],
)
def test_bad_schedules_exit_2(tiny_model_dir: Path, tmp_path: Path, setup, needle: str) -> None:
    path = tmp_path / "bad.json"
    setup(path)
    result = invoke("sample", "--model", tiny_model_dir, "--schedule", path, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "o").exists()


def test_schedule_branch_out_of_range_is_refused_at_write(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = invoke("schedule", "deepcache", "--model", tiny_model_dir, "--steps", "10", "--interval", "2", "--branch", "9", "--out", tmp_path / "s.json")
    assert result.exit_code == 2 and "branch in [0, 5]" in result.stderr
    assert not (tmp_path / "s.json").exists()
    result = invoke("schedule", "genome", "--model", tiny_model_dir, "--steps", "10", "--segments", "0:x", "--out", tmp_path / "s.json")
    assert result.exit_code == 2 and "BRANCH:INTERVAL" in result.stderr


def test_train_writes_a_loadable_model_and_keeps_the_old_one_on_error(tmp_path: Path) -> None:
    from flexdiff.models import load_model

    out = tmp_path / "teacher"
    result = invoke("train", "--out", out, "--steps", "2", "--seed", "0", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 2
    assert load_model(out, "cpu").sample_shape == (1, 16, 16)
    bad = invoke("train", "--out", out, "--steps", "2", "--data", tmp_path / "missing.npz")
    assert bad.exit_code == 2 and load_model(out, "cpu")  # the earlier model is still there


def test_running_out_of_memory_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Too large an --n for the machine: torch's allocation failure becomes the one-line error naming --n / --batch-size."""
    import typer

    from flexdiff.cli._app import guard

    def fails(exc: BaseException):
        def command() -> None:
            raise exc

        return guard(command)

    for exc in (MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1024000000000 bytes")):
        with pytest.raises(typer.Exit) as info:
            fails(exc)()
        assert info.value.exit_code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: out of memory") and "--batch-size" in err
    with pytest.raises(typer.Exit):  # any other failure: one line too (tests/test_error_net.py)
        fails(RuntimeError("something else"))()
    assert "RuntimeError (something else)" in capsys.readouterr().err


def test_the_default_sampler_follows_the_noise_schedule(tiny_model_dir: Path, tmp_path: Path) -> None:
    """No --sampler: DDIM on an alpha-bar model, flow-matching Euler on builtin:digits-dit (a named one is kept)."""
    for model, expected in ((tiny_model_dir, "ddim"), ("builtin:digits-dit", "flow-euler")):
        result = invoke("schedule", "full", "--model", model, "--steps", "4", "--out", tmp_path / f"{expected}.json")
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / f"{expected}.json").read_text())["sampler"] == expected
    result = invoke("sample", "--model", "builtin:digits-dit", "--steps", "3", "--n", "2", "--out", tmp_path / "dit")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "dit" / "run.json").read_text())["sampler"] == "flow-euler"
    named = invoke("schedule", "full", "--model", "builtin:digits-dit", "--sampler", "ddim", "--steps", "4", "--out", tmp_path / "x.json")
    assert named.exit_code == 2 and "flow noise schedule" in named.output


def test_a_searched_schedule_samples_at_another_step_count(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``sample --schedule FILE --steps T'`` re-expands a genome-carrying file on the model's T'-step teacher grid
    (what ``flexdiff.schedule.for_steps`` makes); a file without a genome keeps its own T (another --steps: one line)."""
    import torch

    import flexdiff
    from flexdiff.either_loop import teacher_grid
    from flexdiff.schedule import for_steps

    ok = lambda r: r.exit_code == 0 or pytest.fail(r.output)  # noqa: E731
    ok(invoke("schedule", "genome", "--model", tiny_model_dir, "--steps", "10", "--segments", "0:3,5:1", "--out", tmp_path / "g.json"))
    ok(invoke("sample", "--model", tiny_model_dir, "--schedule", tmp_path / "g.json", "--steps", "20", "--n", "2", "--out", tmp_path / "o"))
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["steps"] == 20 and run["schedule"]["T"] == 20 and run["schedule"]["meta"]["searched_at"] == {"T": 10, "genome": "0:3,5:1"}
    model = flexdiff.load_model(tiny_model_dir, "cpu")
    plan = for_steps(flexdiff.Schedule.load(tmp_path / "g.json"), teacher_grid(model, "ddim", 20))
    with np.load(tmp_path / "o" / "samples.npz") as f:
        assert torch.equal(torch.from_numpy(f["images"]), flexdiff.sample(model, 2, schedule=plan))
    ok(invoke("schedule", "deepcache", "--model", tiny_model_dir, "--steps", "10", "--interval", "3", "--branch", "1", "--out", tmp_path / "d.json"))
    result = invoke("sample", "--model", tiny_model_dir, "--schedule", tmp_path / "d.json", "--steps", "20", "--n", "2", "--out", tmp_path / "p")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and "--steps 20" in result.stderr
