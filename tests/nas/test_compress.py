"""``flexdiff compress`` end to end on a tiny 16x16 teacher: results.json, a student every command loads, resume
of a killed run (completed phases reused, the same student), and one-line errors with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, save_model
from flexdiff.testing.tiny import tiny_unet

pytestmark = pytest.mark.slow  # end-to-end runs: `pytest -m "not slow"` leaves them out

runner = CliRunner()
FAST = [
    "--record-n",
    "32",
    "--val-n",
    "8",
    "--distill-steps",
    "3",
    "--retrain-steps",
    "4",
    "--fid-n",
    "6",
    "--reference",
    "builtin:digits-heldout",
    "--minutes",
    "5",
    "--device",
    "cpu",
    "--no-report",
]
RESULT_KEYS = {"kind", "config", "command", "blocks", "teacher", "student", "retrain", "seconds"}
BLOCK_KEYS = {"block", "choice", "macs", "params", "teacher_macs", "teacher_params", "loss"}


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained teacher at the digits' 16x16, so the built-in data and FID features apply."""
    out = tmp_path_factory.mktemp("teacher16") / "pipeline"
    save_model(tiny_unet(sample_size=16), out, DEFAULT_SCHEDULER_CONFIG)
    return out


@pytest.fixture(scope="module")
def run_dir(teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compress") / "run"
    result = invoke("compress", "--model", teacher_dir, "--out", out, "--seed", "3", *[a for a in FAST if a != "--no-report"])
    assert result.exit_code == 0, result.output
    return out


def test_compress_writes_its_report(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    results = json.loads((run_dir / "results.json").read_text())
    assert "Compress" in html and f"{results['student']['macs']:,}" in html


def student_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "student" / "unet" / "diffusion_pytorch_model.safetensors"))


def same_student(a: Path, b: Path) -> bool:
    """The two run folders' students are bit-equal (names and every tensor)."""
    x, y = student_state(a), student_state(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_results_json_has_the_report_keys(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    assert RESULT_KEYS <= set(results) and results["kind"] == "compress"
    assert isinstance(results["command"], list) and results["command"][0] == "flexdiff"  # sys.argv: pytest's here
    assert [b["block"] for b in results["blocks"]] == ["down0", "down1", "mid", "up0", "up1"]
    assert all(BLOCK_KEYS <= set(b) for b in results["blocks"])
    for side in ("teacher", "student"):
        assert {"macs", "params", "fid"} <= set(results[side]) and results[side]["fid"] > 0
    assert all({"step", "loss", "alpha"} <= set(h) for h in results["retrain"]["history"]) and results["retrain"]["history"]
    assert set(results["seconds"]) >= {"record", "distill", "search", "retrain", "fid"}
    assert results["config"]["macs_ratio"] == 0.5 and results["config"]["alpha"] == "dynamic"


def test_student_meets_the_budget_and_costs_are_the_block_sums(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    teacher, student = results["teacher"], results["student"]
    assert student["macs"] < teacher["macs"] and student["macs"] <= 0.5 * teacher["macs"]
    assert student["params"] <= 0.5 * teacher["params"]
    stem = results["stem"]
    assert student["macs"] == stem["macs"] + sum(b["macs"] for b in results["blocks"])
    assert student["params"] == stem["params"] + sum(b["params"] for b in results["blocks"])
    assert teacher["macs"] == stem["macs"] + sum(b["teacher_macs"] for b in results["blocks"])


def test_every_command_loads_the_student(run_dir: Path, tmp_path: Path) -> None:
    student = run_dir / "student"
    inspect = invoke("inspect", "--model", student, "--json")
    assert inspect.exit_code == 0, inspect.output
    info = json.loads(inspect.stdout)
    assert info["full_step_macs"] == json.loads((run_dir / "results.json").read_text())["student"]["macs"]
    sample = invoke("sample", "--model", student, "--steps", "4", "--n", "3", "--out", tmp_path / "s")
    assert sample.exit_code == 0, sample.output
    plan = tmp_path / "dc.json"
    assert invoke("schedule", "deepcache", "--interval", "2", "--branch", "1", "--steps", "6", "--model", student, "--out", plan).exit_code == 0
    cached = invoke("sample", "--model", student, "--schedule", plan, "--n", "2", "--out", tmp_path / "c")
    assert cached.exit_code == 0, cached.output


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_rerun_reuses_every_phase(run_dir: Path, teacher_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(run_dir, copy)
    before = _mtimes(copy)
    result = invoke("compress", "--model", teacher_dir, "--out", copy, "--seed", "3", *FAST)
    assert result.exit_code == 0, result.output
    after = _mtimes(copy)
    for name in ("records.safetensors", "scores.json", "student/unet/diffusion_pytorch_model.safetensors", "fid.json", "blocks/up1.safetensors"):
        assert after[name] == before[name], name


def kill_during(folder: Path, phase: str, lost: list[str]) -> None:
    """What a SIGKILL in ``phase`` leaves: later outputs missing, the phase not marked done."""
    for name in lost:
        target = folder / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    state = json.loads((folder / "state.json").read_text())
    phases = list(state["phases"])
    state["phases"][phase]["done"] = False
    for later in phases[phases.index(phase) + 1 :]:
        del state["phases"][later]
    (folder / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize(
    "phase, lost, kept",
    [
        (
            "distill",
            ["blocks/up0.safetensors", "blocks/up1.safetensors", "scores.json", "search.json", "retrain", "student", "fid.json", "results.json"],
            ["records.safetensors", "blocks/down0.safetensors", "blocks/mid.safetensors"],
        ),
        (
            "retrain",
            ["student", "fid.json", "results.json"],
            ["records.safetensors", "blocks/up1.safetensors", "scores.json", "retrain/checkpoint.safetensors"],
        ),
    ],
)
def test_killed_run_resumes_its_phase(run_dir: Path, teacher_dir: Path, tmp_path: Path, phase: str, lost: list[str], kept: list[str]) -> None:
    folder = tmp_path / "killed"
    shutil.copytree(run_dir, folder)
    kill_during(folder, phase, lost)
    before = _mtimes(folder)
    result = invoke("compress", "--model", teacher_dir, "--out", folder, "--seed", "3", *FAST)
    assert result.exit_code == 0, result.output
    after = _mtimes(folder)
    for name in kept:  # completed work is reused, not redone
        assert after[name] == before[name], name
    for name in lost:
        assert (folder / name).exists(), name
    assert same_student(folder, run_dir)  # and the resumed run ends with the same student
    assert json.loads((folder / "results.json").read_text())["blocks"] == json.loads((run_dir / "results.json").read_text())["blocks"]


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_a_damaged_record_file_is_recorded_again_on_resume(run_dir: Path, teacher_dir: Path, tmp_path: Path, how: str) -> None:
    """records.safetensors not whole on resume: recorded again with a one-line warning, and the run ends with the
    student of the undamaged run (the recording is seeded)."""
    folder = tmp_path / "damaged"
    shutil.copytree(run_dir, folder)
    kill_during(
        folder, "distill", ["blocks/up0.safetensors", "blocks/up1.safetensors", "scores.json", "search.json", "retrain", "student", "fid.json", "results.json"]
    )
    path = folder / "records.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 3], "garbage": b"not safetensors" * 50, "empty": b""}[how])
    result = invoke("compress", "--model", teacher_dir, "--out", folder, "--seed", "3", *FAST)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "recording the teacher again" in result.stderr
    assert same_student(folder, run_dir)


@pytest.fixture(scope="module")
def wrong_size_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "small.npz"
    np.savez(path, images=np.zeros((4, 1, 8, 8), dtype=np.float32))
    return path


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--macs-ratio", "0"], "--macs-ratio"),
        (["--macs-ratio", "1.5"], "--macs-ratio"),
        (["--macs-ratio", "-0.2"], "--macs-ratio"),
        (["--macs-ratio", "0.01"], "smallest student"),
        (["--params-ratio", "2"], "--params-ratio"),
        (["--minutes", "0"], "--minutes"),
        (["--minutes", "-5"], "--minutes"),
        (["--minutes", "1e307"], "--minutes"),  # finite, but not in seconds
        (["--data", "/no/such/images.npz"], "/no/such/images.npz"),
        (["--data", "{wrong}"], "images shaped"),
        (["--alpha", "constant:2"], "--alpha"),
        (["--fid-n", "1"], "--fid-n"),
        (["--model", "/no/such/model"], "/no/such/model"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args: list[str], needle: str, teacher_dir: Path, wrong_size_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    model = [] if "--model" in args else ["--model", str(teacher_dir)]
    result = invoke("compress", *model, "--out", out, *[a.format(wrong=wrong_size_data) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert not out.exists()


def test_step_timing_ignores_a_moment_of_contention() -> None:
    """The planner times steps as the fastest of several repeats: one slow repeat (another process on the CPU) must
    not shrink a run's step counts."""
    import time

    from flexdiff.nas.clock import seconds_per_step

    calls: list[int] = []

    def run_steps(n: int) -> None:
        calls.append(n)
        time.sleep(n * (0.05 if len(calls) == 2 else 0.01))  # the first timed repeat is contended

    per_step = seconds_per_step(run_steps, steps=2, repeats=3)
    assert calls == [1, 2, 2, 2]  # warm-up, then the repeats
    assert 0.009 <= per_step < 0.03


def test_a_resumed_run_continues_the_clock_of_the_earlier_processes(run_dir: Path, teacher_dir: Path, tmp_path: Path) -> None:
    """--minutes is the budget of the whole run: state.json keeps the time spent so far, and a resumed process starts
    its clock that much earlier (it used to plan the rest of the run against a fresh budget)."""
    import time

    from flexdiff.nas.clock import prepare
    from flexdiff.nas.config import CompressConfig

    out = tmp_path / "resumed"
    shutil.copytree(run_dir, out)
    state = json.loads((out / "state.json").read_text())
    assert state["elapsed_seconds"] > 0
    state["elapsed_seconds"] = 600.0  # ten minutes already spent by earlier processes
    (out / "state.json").write_text(json.dumps(state))
    run = prepare(CompressConfig(out=out, model=str(teacher_dir), minutes=40, device="cpu", progress=False))
    assert abs((run.deadline - time.monotonic()) - 30 * 60) < 30


def test_compress_records_its_provenance_and_the_report_shows_it(run_dir: Path) -> None:
    """Every compress report said its environment was unknown: results.json now carries command, versions, machine."""
    results = json.loads((run_dir / "results.json").read_text())
    env = results["environment"]
    assert env["versions"]["torch"] and env["versions"]["flexdiff"] and env["machine"]["cpu_count"] >= 1 and env["date"]
    assert results["command"][0] == "flexdiff" and results["earlier_commands"] == []  # the CLI passes its argv (pytest's here)
    html = (run_dir / "report.html").read_text()
    assert "recorded when the run wrote its results" in html and "the run did not record its environment" not in html


def test_a_teacher_trained_on_fewer_than_500_timesteps_is_probed_inside_its_range(tmp_path: Path) -> None:
    """compress timed the teacher at t = 500 (and the supernet probe hard-coded it): a 400-step v-prediction teacher
    raised IndexError from alphas_cumprod[500]. The probes now run at num_train_timesteps // 2."""
    from flexdiff.nas.clock import prepare
    from flexdiff.nas.config import CompressConfig
    from flexdiff.nas.phases import _fid_reserve, teacher_cost

    folder = tmp_path / "short"
    save_model(tiny_unet(sample_size=16), folder, {**DEFAULT_SCHEDULER_CONFIG, "num_train_timesteps": 400, "prediction_type": "v_prediction"})
    run = prepare(CompressConfig(out=tmp_path / "run", model=str(folder), fid_n=4, reference="builtin:digits-heldout", device="cpu", progress=False))
    assert run.teacher.noise.num_train_timesteps == 400
    assert _fid_reserve(run) > 0
    macs, params = teacher_cost(run.teacher)
    assert macs > 0 and params == run.teacher.num_parameters
