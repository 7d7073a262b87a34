"""Training-loop pieces shared by the teacher recipe and the student's retraining."""

from __future__ import annotations

import math

import torch


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """``ema <- ema + (1 - d) (model - ema)`` with the decay warmed up as ``d = min(decay, (1 + step) / (10 + step))``,
    so the average is not dominated by the random initialisation in the first steps."""
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - d)


def warmup_cosine(step: int, steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, then cosine decay to zero at ``steps``."""
    return min((step + 1) / warmup_steps, 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1))))
