"""The model's noise schedule (alpha-bar over training timesteps) and the documented initial noise.

The betas come from diffusers' own scheduler for the model's scheduler config, so every beta schedule diffusers
knows (linear, scaled_linear, squaredcos_cap_v2) is read exactly as the model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    """``alphas_cumprod[t]`` = alpha-bar_t of DDPM (Ho et al. 2020, eq. 4), float32 as diffusers keeps it."""

    alphas_cumprod: torch.Tensor  # (num_train_timesteps,)
    prediction_type: str = "epsilon"  # what the network outputs: epsilon | v_prediction | sample
    clip_sample: bool = False  # DDIM only: clamp the predicted x0 to [-clip_sample_range, clip_sample_range]
    clip_sample_range: float = 1.0

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    @classmethod
    def from_scheduler_config(cls, config: dict[str, Any]) -> "NoiseSchedule":
        """Build from a diffusers scheduler config (any scheduler class; diffusers fills in its defaults)."""
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(config)
        return cls(
            alphas_cumprod=scheduler.alphas_cumprod.clone(),
            prediction_type=str(scheduler.config.prediction_type),
            clip_sample=bool(scheduler.config.clip_sample),
            clip_sample_range=float(scheduler.config.clip_sample_range),
        )

    def alpha_bar(self, t: int | None) -> float:
        """alpha-bar at integer timestep ``t``; ``None`` is the clean end of the trajectory (alpha-bar = 1)."""
        return 1.0 if t is None else float(self.alphas_cumprod[int(t)])

    def to_eps(self, output: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        """Convert the network output at timestep ``t`` into a noise prediction epsilon-hat."""
        if self.prediction_type == "epsilon":
            return output
        a = self.alpha_bar(t)
        if self.prediction_type == "v_prediction":  # v = sqrt(a) eps - sqrt(1-a) x0  =>  eps = sqrt(a) v + sqrt(1-a) x
            return a**0.5 * output + (1 - a) ** 0.5 * x
        if self.prediction_type == "sample":  # x = sqrt(a) x0 + sqrt(1-a) eps
            return (x - a**0.5 * output) / (1 - a) ** 0.5
        raise ValueError(f"unknown prediction_type {self.prediction_type!r}")


def initial_noise(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """The starting noise x_T for seed ``s``: ``torch.randn((n, C, H, W), generator=torch.Generator().manual_seed(s))``.

    Drawn on the CPU in one call for all ``n`` images, so image ``i`` is the same whatever the batch size or device.
    """
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
