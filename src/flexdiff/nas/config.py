"""``flexdiff compress``'s settings (:class:`CompressConfig`), checked before any work, and its time-budget constants."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flexdiff.data import REAL_REFERENCE
from flexdiff.errors import FlexdiffError
from flexdiff.nas.retrain import AlphaSchedule
from flexdiff.running.own_loop import check_image_count

#: Share of the training budget (``--minutes`` minus the FID reserve) given to block-wise distillation. Measured on
#: the built-in teacher (40-minute runs, seed 0): 0.25 -> student FID 49.19; 0.12 (more retraining steps, blocks
#: distilled for 908 instead of 2095 steps) -> 51.84, with a different block choice: better-trained supernets rank
#: the candidates better, which matters more than the extra retraining.
DISTILL_SHARE = 0.25
#: Seconds kept free at the end of the budget (saving the student, MACs, results).
MARGIN_SECONDS = 45.0
PHASES = ("record", "distill", "search", "retrain", "fid")
FID_STEPS = 50


@dataclass(frozen=True)
class CompressConfig:
    out: Path
    model: str = "builtin:digits"
    data: str = "builtin:digits-train"
    macs_ratio: float = 0.5
    params_ratio: float | None = None  # None: the same as macs_ratio
    minutes: float = 40.0
    seed: int = 0
    alpha: str = "dynamic"
    fid_n: int = 1000  # 0: skip FID
    reference: str | None = None  # None: the built-in model's held-out set, or no FID for other models
    features: str = "digits"
    record_n: int = 4096
    val_n: int = 256
    distill_steps: int | None = None  # per block; None: from the time budget
    retrain_steps: int | None = None  # None: from the time budget
    distill_lr: float = 5e-4
    retrain_lr: float = 5e-4
    batch_size: int = 64
    device: str = "auto"
    progress: bool = True
    command: tuple[str, ...] = ()

    @property
    def max_params_ratio(self) -> float:
        return self.macs_ratio if self.params_ratio is None else self.params_ratio

    @property
    def reference_set(self) -> str | None:
        return self.reference if self.reference is not None else REAL_REFERENCE.get(self.model)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["command"] = list(self.command)
        return data

    def check(self) -> None:
        """Every option checked before any work: bad input is one line, nothing is written."""
        if not (0.0 < self.macs_ratio <= 1.0) or math.isnan(self.macs_ratio):
            raise FlexdiffError(f"--macs-ratio {self.macs_ratio}", "a ratio in (0, 1] of the teacher's MACs", "e.g. --macs-ratio 0.5")
        if self.params_ratio is not None and not (0.0 < self.params_ratio <= 1.0):
            raise FlexdiffError(f"--params-ratio {self.params_ratio}", "a ratio in (0, 1] of the teacher's parameters", "e.g. --params-ratio 0.5, or drop it")
        if not (self.minutes > 0) or not math.isfinite(self.minutes * 60):
            raise FlexdiffError(f"--minutes {self.minutes}", "a positive time budget in minutes", "e.g. --minutes 40")
        if self.fid_n != 0 and self.fid_n < 2:
            raise FlexdiffError(f"--fid-n {self.fid_n}", "0 (no FID) or at least 2 images", "e.g. --fid-n 1000")
        if self.record_n < 1 or self.val_n < 1 or self.batch_size < 1:
            raise FlexdiffError(f"--record-n {self.record_n} / val {self.val_n} / batch {self.batch_size}", "positive counts", "pass positive numbers")
        for option, count in (("--record-n", self.record_n), ("--val-n", self.val_n), ("--fid-n", self.fid_n or 2)):
            check_image_count(count, option)  # an upper bound too: a count that cannot fit the machine is refused now, not after recording
        for name, value in (("--distill-steps", self.distill_steps), ("--retrain-steps", self.retrain_steps)):
            if value is not None and value < 1:
                raise FlexdiffError(f"{name} {value}", "at least 1 step (or leave it out: derived from --minutes)", f"fix {name}")
        AlphaSchedule.parse(self.alpha)
        if self.out.exists() and not self.out.is_dir():
            raise FlexdiffError(self.out, "a run folder (it is a file)", "pass another --out")
