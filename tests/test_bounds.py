"""Bounds checked before the work (issue 28, item 5): counts against the free memory, step counts whose grid would
repeat a timestep, special files as ``--schedule``, an ``--out`` behind a dangling link or a loop. Each is one
stderr line and exit code 2 before any sampling or recording starts: the work itself is replaced by a sentinel that
fails the test if it is reached (so a test run against the old code fails fast instead of allocating 24 GB)."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.errors import FlexdiffError, output_folder
from flexdiff.sample_job import SampleConfig, run_sample
from flexdiff.samplers import uniform_timesteps
from flexdiff.schedule import full
from flexdiff.utils import memory
from flexdiff.utils.memory import Count, check_memory, working_bytes

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


class Reached(Exception):
    """The work started: the bound was not checked before it."""


@pytest.fixture()
def no_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    def sentinel(*args: object, **kwargs: object) -> None:
        raise Reached("sampling started")

    monkeypatch.setattr("flexdiff.sample_job.sample", sentinel)


def pretend_free(monkeypatch: pytest.MonkeyPatch, nbytes: int) -> None:
    """A machine with ``nbytes`` free (host and GPU alike)."""
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": nbytes)


# --- memory ------------------------------------------------------------------------------------------------------


def test_check_memory_names_the_count_and_a_value_that_fits() -> None:
    counts = [Count("--a", 100), Count("--b", 10)]
    need = {"cpu": lambda v: v["--a"] * 1000 + v["--b"] * 10}
    check_memory(counts, need, available=lambda device: 200_000)  # 101 kB of 150 kB: fits
    with pytest.raises(FlexdiffError, match=r"^--a 100: .*pass --a 74 or less") as info:
        check_memory(counts, need, available=lambda device: 100_000)  # 75 kB usable: a <= 74 (74 * 1000 + 100)
    assert "\n" not in str(info.value)
    with pytest.raises(FlexdiffError, match="lower several of --a, --b"):
        check_memory(counts, {"cpu": lambda v: v["--a"] * 1000 + v["--b"] * 1000}, available=lambda device: 1_000)
    check_memory(counts, {"cpu": lambda v: 10**30}, available=lambda device: None)  # a platform that does not say: no refusal
    batch_first = [Count("--n", 100), Count("--batch-size", 100, shown="all 100 images at once", same_result=True)]
    with pytest.raises(FlexdiffError, match=r"--batch-size \(all 100 images at once\).*pass --batch-size 50 or less"):
        check_memory(batch_first, {"cpu": lambda v: v["--n"] * 10 + min(v["--n"], v["--batch-size"]) * 1000}, available=lambda device: 68_000)


def test_working_bytes_scales_with_the_batch(tiny_model) -> None:
    x1, x4 = torch.randn(1, *tiny_model.sample_shape), torch.randn(4, *tiny_model.sample_shape)
    out, one = working_bytes(lambda: tiny_model.eps(x1, 500))
    _, four = working_bytes(lambda: tiny_model.eps(x4, 500))
    assert torch.equal(out, tiny_model.eps(x1, 500))
    assert one and 3.5 * one <= four <= 4.5 * one  # activations of one image, four times over


def test_available_bytes_reads_meminfo() -> None:
    free = memory.available_bytes("cpu")
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo")
    assert free is not None and 0 < free < 2**50


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--n", "64"], r"--batch-size \(all 64 images at once\): expected a sampling run .* pass --batch-size (\d+) or less"),
        (["--n", "2000", "--batch-size", "1"], r"--n 2000: expected a sampling run .* pass --n (\d+) or less"),
    ],
)
def test_sample_counts_beyond_free_memory_are_refused_before_sampling(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_sampling: None, args: list[str], needle: str
) -> None:
    pretend_free(monkeypatch, 512 * 1024)
    line = one_line_error(invoke("sample", "--model", tiny_model_dir, "--steps", "2", *args, "--out", tmp_path / "o"))
    match = re.search(needle, line)
    assert match, line
    assert not (tmp_path / "o").exists()
    option = "--batch-size" if needle.startswith("--batch-size") else "--n"
    given = dict(zip(args[::2], args[1::2])) | {option: match.group(1)}
    with pytest.raises(Reached):  # the value it names passes the check: the run gets as far as sampling
        run_sample(
            SampleConfig(
                out=tmp_path / "o",
                model=str(tiny_model_dir),
                steps=2,
                n=int(given["--n"]),
                batch_size=int(given["--batch-size"]) if "--batch-size" in given else None,
                device="cpu",
            )
        )


def test_search_counts_beyond_free_memory_are_refused_before_the_teacher_runs(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search generates --n (and --validate-n) images per candidate: the same bound as sample, before the
    teacher's reference images."""

    def sentinel(*a: object, **k: object) -> None:
        raise Reached("the teacher reference started")

    monkeypatch.setattr("flexdiff.search.context.SearchContext.load_reference", sentinel)
    pretend_free(monkeypatch, 512 * 1024)
    line = one_line_error(
        invoke(
            "search",
            "--model",
            tiny_model_dir,
            "--steps",
            "10",
            "--segments",
            "2-3",
            "--n",
            "64",
            "--validate-n",
            "64",
            "--trials",
            "1",
            "--no-report",
            "--out",
            tmp_path / "o",
        )
    )
    assert "--batch-size (all 64 images at once)" in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, option",
    [
        (["--fid-n", "0", "--record-n", "64", "--val-n", "100000"], "--val-n"),  # the reproduction: 24 GB, exit 137
        (["--fid-n", "0", "--record-n", "500000", "--val-n", "256"], "--record-n"),
        (["--fid-n", "1000000", "--record-n", "64", "--val-n", "64"], "--fid-n"),
    ],
)
def test_compress_counts_beyond_free_memory_are_refused_before_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], option: str) -> None:
    def sentinel(*a: object, **k: object) -> None:
        raise Reached("recording started")

    monkeypatch.setattr("flexdiff.nas.compress.phase_record", sentinel)
    pretend_free(monkeypatch, 256 * 2**20)
    line = one_line_error(
        invoke("compress", *args, "--distill-steps", "2", "--retrain-steps", "2", "--minutes", "1", "--no-report", "--device", "cpu", "--out", tmp_path / "X"),
        f"{option} ",
        "expected a compress run that fits",
    )
    assert re.search(rf"pass {option} \d+ or less", line), line
    assert not (tmp_path / "X").exists()


# --- steps -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler, steps, needle",
    [
        ("dpmpp-2m", 1000, "at most 999 steps: linspace spacing"),  # used to fail inside the sampling loop, all 1000 timesteps in the line
        ("ddim", 2000, "a number of steps in [1, 1000]"),
        ("pipeline", 2000, "a number of steps in [1, 1000]"),  # used to be diffusers' ValueError as an "internal failure"
    ],
)
@pytest.mark.parametrize("command", ["sample", "schedule"])
def test_steps_that_repeat_a_timestep_are_refused_up_front(
    tiny_model_dir: Path, tmp_path: Path, no_sampling: None, command: str, sampler: str, steps: int, needle: str
) -> None:
    where = ["sample", "--n", "1", "--out", tmp_path / "o"] if command == "sample" else ["schedule", "full", "--out", tmp_path / "o.json"]
    one_line_error(invoke(*where, "--model", tiny_model_dir, "--sampler", sampler, "--steps", steps), f"--steps {steps}", needle)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_every_uniform_grid_has_distinct_timesteps_in_range_or_is_refused(spacing: str) -> None:
    for steps in range(1, 1001):
        try:
            grid = uniform_timesteps(1000, steps, spacing)
        except FlexdiffError as exc:
            assert spacing == "linspace" and steps == 1000 and "at most 999" in str(exc)
            continue
        assert len(grid) == len(set(grid)) == steps and 0 <= min(grid) and max(grid) < 1000 and grid == sorted(grid, reverse=True), steps
    if spacing == "trailing":
        assert uniform_timesteps(1000, 61, "trailing")[-1] == 15  # float arange gave a 62nd point, timestep -1


# --- special files as --schedule -----------------------------------------------------------------------------------


@contextlib.contextmanager
def address_space_cap(extra: int = 2**30) -> Iterator[None]:
    """Cap this process's address space at its size now plus ``extra``: code that reads an endless file fails with a
    MemoryError instead of taking the machine's memory."""
    size = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _unblock_later(fifo: Path, after: float = 3.0) -> None:
    """Should a reader block on ``fifo`` (the old code did, forever), give it a writer and an end after ``after`` s."""

    def run() -> None:
        time.sleep(after)
        with contextlib.suppress(OSError):  # ENXIO: no reader waiting, nothing to unblock
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"x")
            os.close(fd)

    threading.Thread(target=run, daemon=True).start()


@pytest.mark.skipif(not Path("/dev/zero").exists() or not hasattr(os, "mkfifo"), reason="POSIX special files")
@pytest.mark.parametrize(
    "kind, needle",
    [
        ("fifo", "(a FIFO)"),
        ("dev_zero", "(a device)"),
        ("dev_null", "(a device)"),
        ("link_to_dev_zero", "(a device)"),
        ("folder", "(a folder)"),
        ("oversize", "of at most 16,777,216 bytes"),
    ],
)
def test_special_files_as_schedule_are_refused_without_reading(tiny_model_dir: Path, tmp_path: Path, no_sampling: None, kind: str, needle: str) -> None:
    path = tmp_path / "s.json"
    if kind == "fifo":
        os.mkfifo(path)
        _unblock_later(path)
    elif kind == "dev_zero":
        path = Path("/dev/zero")
    elif kind == "dev_null":
        path = Path("/dev/null")
    elif kind == "link_to_dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        full([900, 500, 100]).save(path)
        os.truncate(path, 17 * 2**20)  # sparse: 17 MiB of size, no disk
    started = time.monotonic()
    with address_space_cap():
        result = invoke("sample", "--model", tiny_model_dir, "--schedule", path, "--n", "1", "--out", tmp_path / "o")
    one_line_error(result, needle)
    assert time.monotonic() - started < 2.5  # refused, not read until the FIFO's writer came
    assert not (tmp_path / "o").exists()
    if kind == "fifo":
        assert stat.S_ISFIFO(path.stat().st_mode)


# --- sample --out behind a dangling link or a loop -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dangling", "loop", "dangling_parent"])
def test_out_at_a_dangling_symlink_or_a_loop_is_refused_before_sampling(tiny_model_dir: Path, tmp_path: Path, no_sampling: None, kind: str) -> None:
    link = tmp_path / "link"
    if kind == "loop":
        (tmp_path / "other").symlink_to(link)
        link.symlink_to(tmp_path / "other")
    else:
        link.symlink_to(tmp_path / "missing")
    out = link / "sub" if kind == "dangling_parent" else link
    one_line_error(
        invoke("sample", "--model", tiny_model_dir, "--steps", "2", "--n", "1", "--out", out),
        f"--out {out}",
        f"{link} is a symlink to a missing place or a loop",
    )
    assert not (tmp_path / "missing").exists() and link.is_symlink()
    with pytest.raises(FlexdiffError, match="symlink to a missing place"):  # every command's --out check: the one helper
        output_folder(out)
