"""One compress run's state and clock: ``OUT/state.json`` (phases done, planned step counts, elapsed time), so a
killed run resumes its phase with the same step counts and the same total time budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flexdiff.data import load_images
from flexdiff.errors import FlexdiffError
from flexdiff.measuring.features import get_feature_network
from flexdiff.models import DiffusionModel, load_model
from flexdiff.models.student import BlockSpec, block_specs
from flexdiff.nas.config import CompressConfig
from flexdiff.nas.supernet import smallest_student
from flexdiff.utils.io import read_json_or_none, write_json
from flexdiff.utils.memory import FLOAT32


@dataclass
class Run:
    """One compress run: the loaded teacher, the data, the run folder's state, and the clock."""

    config: CompressConfig
    teacher: DiffusionModel
    images: torch.Tensor
    specs: tuple[BlockSpec, ...]
    start: float = field(default_factory=time.monotonic)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.config.out

    @property
    def deadline(self) -> float:
        return self.start + self.config.minutes * 60.0

    def save_state(self) -> None:
        # the run's clock: a resumed process continues it (prepare starts its Run that much earlier), so --minutes stays the budget of the whole run
        self.state["elapsed_seconds"] = round(time.monotonic() - self.start, 2)
        write_json(self.out / "state.json", self.state)

    def phase_done(self, name: str, key: str) -> bool:
        entry = self.state.setdefault("phases", {}).get(name)
        return bool(entry and entry.get("key") == key and entry.get("done"))

    def mark(self, name: str, key: str, seconds: float, done: bool = True, **extra: Any) -> None:
        self.state.setdefault("phases", {})[name] = {"key": key, "done": done, "seconds": round(seconds, 2), **extra}
        self.save_state()

    def planned(self, name: str, given: dict[str, Any]) -> int | None:
        """A step count resolved by an earlier process of this run for the same inputs (or None)."""
        entry = self.state.setdefault("plan", {}).get(name)
        return int(entry["value"]) if entry and entry.get("given") == given else None

    def plan(self, name: str, given: dict[str, Any], value: int) -> int:
        self.state.setdefault("plan", {})[name] = {"given": given, "value": int(value)}
        self.save_state()
        return int(value)

    def step_count(self, name: str, explicit: int | None, given: dict[str, Any], measure: Callable[[], int]) -> int:
        """The user's explicit count, else the one an earlier process planned for the same inputs, else ``measure()``
        (timing probes), stored so that a resumed run computes the same numbers."""
        if explicit is not None:
            return explicit
        planned = self.planned(name, given)
        return planned if planned is not None else self.plan(name, given, measure())


def prepare(config: CompressConfig) -> Run:
    """Check every option, load the teacher and the data, check they fit; no file is written yet."""
    config.check()
    teacher = load_model(config.model, config.device)
    specs = block_specs(teacher.denoiser)
    if teacher.conditioning is not None:
        raise FlexdiffError(config.model, "an unconditional pixel UNet2DModel", "compress supports unconditional pixel models")
    images = load_images(config.data)
    if tuple(images.shape[1:]) != tuple(teacher.sample_shape):
        raise FlexdiffError(
            f"--data {config.data}",
            f"images shaped {tuple(teacher.sample_shape)} like the model's samples (got {tuple(images.shape[1:])})",
            "pass training images of the model's size and channels",
        )
    floor_macs, floor_params, teacher_macs, teacher_params = smallest_student(teacher.denoiser, specs, teacher.sample_shape, teacher.noise.num_train_timesteps)
    for option, what, ratio, floor, full in (
        ("--macs-ratio", "MACs", config.macs_ratio, floor_macs, teacher_macs),
        ("--params-ratio", "parameters", config.max_params_ratio, floor_params, teacher_params),
    ):
        if ratio * full < floor:
            raise FlexdiffError(
                f"{option} {ratio}",
                f"at least {floor / full:.3f}: the smallest student of the search space has {floor / full:.1%} of the teacher's {what}",
                f"raise {option}",
            )
    reference = 0
    if config.fid_n and config.reference_set is not None:
        reference = len(load_images(config.reference_set))
        get_feature_network(config.features, "cpu")
    check_compress_memory(config, teacher, images, specs, reference)
    state = read_json_or_none(config.out / "state.json")
    state = state if isinstance(state, dict) else {}
    elapsed = float(state.get("elapsed_seconds", 0.0))  # time the earlier processes of this run already spent
    return Run(config, teacher, images, specs, start=time.monotonic() - elapsed, state=state)


#: rows per teacher call when recording (:func:`flexdiff.nas.record.record_teacher`) and images per FID sampling batch
#: (:func:`flexdiff.nas.phases.phase_fid`)
RECORD_BATCH, FID_BATCH = 256, 250


def check_compress_memory(config: CompressConfig, teacher: DiffusionModel, images: torch.Tensor, specs: tuple[BlockSpec, ...], reference: int = 0) -> None:
    """Refuse ``--record-n`` / ``--val-n`` / ``--fid-n`` whose arrays cannot fit the free memory, before recording.

    One recorded row (every captured block tensor of one teacher call, float16) and one call's working set are
    measured on one noised image; from them, the peak of each phase (the records stay in memory from recording to
    the end of the run):

    - record: the noised inputs (float32, five transient copies while they are drawn), then the per-batch chunks and
      their concatenation (two copies of the records), one batch's working set;
    - save: the records and their serialised bytes (safetensors builds them in memory);
    - score: the records and the validation rows as float32 on the model's device (:func:`score_candidates`);
    - fid: the records, the noise, batches and concatenation of ``--fid-n`` images, the reference set, one batch.

    ``compress --val-n 100000`` on the built-in teacher needs about 22 GiB this way: it used to grow until the
    kernel's OOM killer ended it (exit 137)."""
    from flexdiff.nas.blocks import capture
    from flexdiff.nas.record import noised_rows
    from flexdiff.utils.memory import Count, check_memory, images_bytes, working_bytes

    x, t = noised_rows(teacher, images, 1, config.seed)
    with torch.no_grad(), capture(teacher.denoiser, specs) as live:
        _, call = working_bytes(lambda: teacher.denoiser(x.to(teacher.device), t.to(teacher.device)))
        row = sum(v[0].numel() for v in live.values())  # elements of one recorded row, all keys
    per_image = call or 0
    image = images_bytes(1, teacher.sample_shape)
    fid_on = bool(config.fid_n) and config.reference_set is not None
    on_cpu = teacher.device.type == "cpu"

    def host(v: dict[str, int]) -> int:
        rows = v["--record-n"] + v["--val-n"]
        records = rows * row * 2
        record = max(5 * rows * image, rows * image + 2 * records + (RECORD_BATCH * per_image if on_cpu else 0))
        save = 2 * records
        score = records + (v["--val-n"] * row * FLOAT32 if on_cpu else 0)
        fid = records + (3 * v["--fid-n"] + reference) * image + (min(FID_BATCH, v["--fid-n"]) * per_image if on_cpu else 0) if fid_on else 0
        return max(record, save, score, fid)

    def device(v: dict[str, int]) -> int:
        return max(v["--val-n"] * row * FLOAT32, RECORD_BATCH * per_image)

    needs = {"cpu": host} if on_cpu else {"cpu": host, str(teacher.device): device}
    counts = [Count("--record-n", config.record_n), Count("--val-n", config.val_n)] + ([Count("--fid-n", config.fid_n, least=2)] if fid_on else [])
    check_memory(counts, needs, what="a compress run")


def seconds_per_step(run_steps: Any, steps: int = 3, repeats: int = 3) -> float:
    """Seconds per step of ``run_steps(n)``: the fastest of ``repeats`` timings of ``steps`` steps, after one warm-up
    step (kernel selection, allocations).

    The minimum, because a moment of contention from another process (a test, an editor's indexer) on a 2-core machine
    once made a single timing 2.5x slow and cost a 40-minute run most of its distillation; set-up costs (optimiser, EMA
    copy) are still counted in, which errs on the safe side of the time budget.
    """
    run_steps(1)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run_steps(steps)
        timings.append((time.perf_counter() - started) / steps)
    return min(timings)
