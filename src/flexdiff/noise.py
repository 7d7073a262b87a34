"""The model's noise schedule (alpha-bar over training timesteps) and the documented initial noise.

The betas come from diffusers' own scheduler for the model's scheduler config, so every beta schedule diffusers
knows (linear, scaled_linear, squaredcos_cap_v2) is read exactly as the model was trained with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from flexdiff.errors import FlexdiffError

#: What the network may output (diffusers' ``prediction_type``); anything else fails only mid-sampling, so refuse it.
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
#: The ``beta_schedule`` names diffusers' DDIMScheduler implements (others raise NotImplementedError inside diffusers).
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


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
    def from_scheduler_config(cls, config: dict[str, Any], source: object = "scheduler config") -> "NoiseSchedule":
        """Build from a diffusers scheduler config (any scheduler class; diffusers fills in its defaults).

        ``source`` (the config file) names where a bad value came from: a value diffusers would choke on, or one that
        would only fail mid-sampling, is a one-line :class:`FlexdiffError` here, at load time.
        """
        from diffusers import DDIMScheduler

        _check_scheduler_config(config, source)
        try:
            scheduler = DDIMScheduler.from_config(config)
            betas = scheduler.betas
            schedule = cls(
                alphas_cumprod=scheduler.alphas_cumprod.clone(),
                prediction_type=str(scheduler.config.prediction_type),
                clip_sample=bool(scheduler.config.clip_sample),
                clip_sample_range=float(scheduler.config.clip_sample_range),
            )
        except Exception as exc:  # a field not checked above; diffusers / torch raise many types
            raise FlexdiffError(source, "a diffusers scheduler config", f"fix the config ({exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:120]})") from None
        if betas.numel() == 0 or not torch.isfinite(betas).all() or (betas < 0).any() or (betas > 1).any():  # alpha-bar would leave [0, 1]
            raise FlexdiffError(f"{source}: beta_start/beta_end/trained_betas", "betas in [0, 1] at every timestep", "restore the schedule the model was trained with")
        return schedule

    def identity(self) -> bytes:
        """Everything that makes two noise schedules sample differently (alpha-bars, prediction type, x0 clipping),
        as bytes to hash: the teacher-reference key and schedule files' bindings are built from it."""
        alphas = self.alphas_cumprod.detach().cpu().to(torch.float64).numpy().tobytes()
        return alphas + f"|{self.prediction_type}|{self.clip_sample}|{self.clip_sample_range}".encode()

    def fingerprint(self) -> str:
        """A short digest of :meth:`identity` (what a schedule file's binding records)."""
        return hashlib.sha256(self.identity()).hexdigest()[:16]

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


def _check_scheduler_config(config: dict[str, Any], source: object) -> None:
    """Refuse the scheduler fields diffusers would fail on with an unreadable error (NotImplementedError for an
    unknown ``beta_schedule``, a TypeError from ``torch.linspace`` for a non-numeric beta) or accept silently and
    then fail mid-sampling (``prediction_type``, ``num_train_timesteps < 1``). Absent fields take diffusers' defaults."""

    def bad(field: str, expected: str, fix: str) -> FlexdiffError:
        return FlexdiffError(f"{source}: {field} {config[field]!r}", expected, fix)

    steps = config.get("num_train_timesteps", 1000)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise bad("num_train_timesteps", "an integer >= 1", "restore the number of training timesteps (e.g. 1000)")
    if config.get("trained_betas") is None and config.get("beta_schedule", "linear") not in BETA_SCHEDULES:  # trained_betas wins in diffusers
        raise bad("beta_schedule", f"one of {', '.join(BETA_SCHEDULES)}", "restore the schedule the model was trained with")
    for name in ("beta_start", "beta_end"):
        if name in config and (isinstance(config[name], bool) or not isinstance(config[name], (int, float))):
            raise bad(name, "a number in [0, 1]", "restore the schedule the model was trained with (e.g. 0.0001 and 0.02)")
    if config.get("prediction_type", "epsilon") not in PREDICTION_TYPES:
        raise bad("prediction_type", f"one of {', '.join(PREDICTION_TYPES)}", "set what the network was trained to predict")


def initial_noise(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """The starting noise x_T for seed ``s``: ``torch.randn((n, C, H, W), generator=torch.Generator().manual_seed(s))``.

    Drawn on the CPU in one call for all ``n`` images, so image ``i`` is the same whatever the batch size or device.
    """
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
