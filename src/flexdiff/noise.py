"""The model's noise schedule and the documented initial noise.

Two kinds, one per family of diffusers scheduler configs (:func:`noise_schedule` picks by the config's class):

- :class:`NoiseSchedule` (``kind = "alpha_bar"``): DDPM's alpha-bar over integer training timesteps. The betas come
  from diffusers' own scheduler for the config, so every beta schedule diffusers knows (linear, scaled_linear,
  squaredcos_cap_v2) is read exactly as the model was trained with. Grid points are integer timesteps.
- :class:`FlowSchedule` (``kind = "flow"``): rectified flow (SD3, Flux, ``builtin:digits-dit``), ``x_s = (1 - s) x0 +
  s eps`` for sigma ``s`` in [0, 1], the network predicting the velocity ``eps - x0`` at model timestep
  ``s * num_train_timesteps``. Grid points are sigmas, computed as diffusers' ``FlowMatchEulerDiscreteScheduler``
  computes them (``shift``; dynamic shifting with ``mu`` as SD3 and Flux configure it).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.utils.hashing import digest

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

#: What the network may output (diffusers' ``prediction_type``); anything else fails only mid-sampling, so refuse it.
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
#: The ``beta_schedule`` names diffusers' DDIMScheduler implements (others raise NotImplementedError inside diffusers).
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class NoiseSchedule:
    """``alphas_cumprod[t]`` = alpha-bar_t of DDPM (Ho et al. 2020, eq. 4), float32 as diffusers keeps it."""

    kind = "alpha_bar"

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
            raise FlexdiffError(
                source, "a diffusers scheduler config", f"fix the config ({exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:120]})"
            ) from None
        if betas.numel() == 0 or not torch.isfinite(betas).all() or (betas < 0).any() or (betas > 1).any():  # alpha-bar would leave [0, 1]
            raise FlexdiffError(
                f"{source}: beta_start/beta_end/trained_betas", "betas in [0, 1] at every timestep", "restore the schedule the model was trained with"
            )
        return schedule

    def identity(self) -> bytes:
        """Everything that makes two noise schedules sample differently (alpha-bars, prediction type, x0 clipping),
        as bytes to hash: the teacher-reference key and schedule files' bindings are built from it."""
        alphas = self.alphas_cumprod.detach().cpu().to(torch.float64).numpy().tobytes()
        return alphas + f"|{self.prediction_type}|{self.clip_sample}|{self.clip_sample_range}".encode()

    def fingerprint(self) -> str:
        """A short digest of :meth:`identity` (what a schedule file's binding records)."""
        return hashlib.sha256(self.identity()).hexdigest()[:16]

    def model_timestep(self, t: float) -> int:
        """What the network is given for grid point ``t``: the integer timestep itself."""
        return int(t)

    def check_grid(self, grid: Any, where: object) -> None:
        """A teacher grid for this schedule: integer timesteps in ``[0, num_train_timesteps)``."""
        if any(isinstance(t, bool) or not isinstance(t, int) for t in grid):
            raise FlexdiffError(
                f"{where} timesteps",
                "integer timesteps (an alpha-bar noise schedule)",
                "write the schedule for this model with `flexdiff schedule --model ...`",
            )
        if grid[0] >= self.num_train_timesteps or grid[-1] < 0:
            raise FlexdiffError(
                f"{where} timesteps {grid[0]}..{grid[-1]}",
                f"timesteps in [0, {self.num_train_timesteps}) for this model",
                "write the schedule for this model with `flexdiff schedule --model ...`",
            )

    def to_prediction(self, output: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        """What the samplers of this kind integrate: epsilon-hat (:meth:`to_eps`)."""
        return self.to_eps(output, x, int(t))

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


#: The scheduler classes whose configs describe a rectified-flow schedule (read by :class:`FlowSchedule`).
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
TIME_SHIFT_TYPES = ("exponential", "linear")


@dataclass(frozen=True)
class FlowSchedule:
    """Rectified flow's sigmas (Liu et al. 2023; Esser et al. 2024 eq. 1-3, timestep shifting eq. 23), the model
    timestep being ``sigma * num_train_timesteps``. ``mu`` is the dynamic shift for this model's image size (Flux:
    ``calculate_shift`` of its packed sequence length), resolved at load time so the grid needs no image size."""

    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False
    time_shift_type: str = "exponential"
    mu: float | None = None

    kind = "flow"
    prediction_type = "flow_prediction"  # diffusers' name for the velocity eps - x0

    @classmethod
    def from_scheduler_config(
        cls, config: dict[str, Any], source: object = "scheduler config", image_seq_len: int | None = None, mu: float | None = None
    ) -> "FlowSchedule":
        """Read a ``FlowMatch*`` scheduler config; with ``use_dynamic_shifting`` ``mu`` is the one given (what a
        pipeline passes its scheduler), else the config's linear map of ``image_seq_len`` (diffusers'
        ``calculate_shift``: ``base_shift`` at ``base_image_seq_len`` .. ``max_shift`` at ``max_image_seq_len``).
        Karras / exponential / beta sigmas and ``shift_terminal`` are refused (not implemented)."""
        for name in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "shift_terminal", "invert_sigmas", "stochastic_sampling"):
            if config.get(name):
                raise FlexdiffError(
                    f"{source}: {name} {config[name]!r}",
                    "a flow-matching config with plain (shifted) sigmas",
                    f"drop {name}, or run this model's own pipeline with --sampler pipeline",
                )
        steps = config.get("num_train_timesteps", 1000)
        shift = config.get("shift", 1.0)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise FlexdiffError(f"{source}: num_train_timesteps {steps!r}", "an integer >= 1", "restore the number of training timesteps (e.g. 1000)")
        if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not shift > 0:
            raise FlexdiffError(f"{source}: shift {shift!r}", "a number > 0", "restore the model's shift (e.g. 3.0 for SD3)")
        time_shift_type = str(config.get("time_shift_type", "exponential"))
        if time_shift_type not in TIME_SHIFT_TYPES:
            raise FlexdiffError(f"{source}: time_shift_type {time_shift_type!r}", f"one of {', '.join(TIME_SHIFT_TYPES)}", "restore the model's config")
        dynamic = bool(config.get("use_dynamic_shifting", False))
        if not dynamic:
            mu = None
        elif mu is None:
            if image_seq_len is None:
                raise FlexdiffError(source, "the image sequence length of a dynamically shifted flow model", "load the model through flexdiff.load_model")
            lo, hi = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
            base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
            mu = image_seq_len * (top - base) / (hi - lo) + base - (top - base) / (hi - lo) * lo
        return cls(steps, float(shift), dynamic, time_shift_type, None if mu is None else float(mu))

    def shifted(self, sigmas: "np.ndarray") -> "np.ndarray":
        """Timestep shifting as diffusers applies it: ``shift s / (1 + (shift - 1) s)``, or with dynamic shifting
        ``e^mu / (e^mu + (1/s - 1))`` (exponential) / ``mu / (mu + (1/s - 1))`` (linear)."""
        if self.use_dynamic_shifting:
            scale = self._dynamic_scale()
            return scale / (scale + (1 / sigmas - 1))
        return self.shift * sigmas / (1 + (self.shift - 1) * sigmas)

    def _dynamic_scale(self) -> float:
        """``e^mu`` (exponential time shift) or ``mu`` (linear): the factor dynamic shifting applies to ``1/s - 1``."""
        assert self.mu is not None, "a dynamically shifted schedule has its mu"
        return math.exp(self.mu) if self.time_shift_type == "exponential" else self.mu

    def unshifted(self, sigmas: "Sequence[float]") -> list[float]:
        """The inverse of :meth:`shifted`: what to pass diffusers' ``set_timesteps(sigmas=...)`` (which shifts the
        sigmas it is given) so that it runs exactly ``sigmas``."""
        if self.use_dynamic_shifting:
            scale = self._dynamic_scale()
            return [1.0 / (1.0 + scale * (1.0 / s - 1.0)) for s in sigmas]
        return [s / (self.shift - (self.shift - 1.0) * s) for s in sigmas]

    def sigmas(self, steps: int) -> list[float]:
        """The teacher's ``steps`` sigmas, decreasing, as ``FlowMatchEulerDiscreteScheduler.set_timesteps(steps, mu=mu)``
        computes them (float32 values; the terminal 0 is implied): a linspace between the training schedule's
        extreme model timesteps, divided by ``num_train_timesteps``, then shifted."""
        import numpy as np

        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.num_train_timesteps:
            raise FlexdiffError(steps, f"a number of steps in [1, {self.num_train_timesteps}]", "pass e.g. --steps 20")
        n = self.num_train_timesteps
        train = np.linspace(1, n, n, dtype=np.float32)[::-1].copy() / n  # the training sigmas of diffusers' __init__
        if not self.use_dynamic_shifting:  # diffusers shifts its training sigmas statically only
            train = self.shifted(train)
        sigma_max, sigma_min = float(np.float32(train[0])), float(np.float32(train[-1]))
        grid = self.shifted(np.linspace(sigma_max * n, sigma_min * n, steps) / n)
        return [float(v) for v in grid.astype(np.float32)]

    def model_timestep(self, sigma: float) -> float:
        """What the network is given for sigma: ``sigma * num_train_timesteps`` (a float model timestep)."""
        return float(sigma) * self.num_train_timesteps

    def check_grid(self, grid: Any, where: object) -> None:
        """A teacher grid for this schedule: sigmas (numbers) in (0, 1]."""
        if any(isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1 for s in grid):
            raise FlexdiffError(
                f"{where} timesteps", "sigmas in (0, 1] (a flow-matching model)", "write the schedule for this model with `flexdiff schedule --model ...`"
            )

    def to_prediction(self, output: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        """What the flow samplers integrate: the velocity the network predicts, as it is."""
        return output

    def identity(self) -> bytes:
        """Everything that makes two flow schedules sample differently."""
        return f"flow|{self.num_train_timesteps}|{self.shift!r}|{self.use_dynamic_shifting}|{self.time_shift_type}|{self.mu!r}".encode()

    def fingerprint(self) -> str:
        return hashlib.sha256(self.identity()).hexdigest()[:16]


Noise = NoiseSchedule | FlowSchedule
"""Either kind of noise schedule; ``noise.kind`` says which (the samplers are registered for one kind each)."""


def is_flow_config(config: dict[str, Any]) -> bool:
    """Whether a scheduler config describes a rectified-flow schedule (its class is a ``FlowMatch*`` scheduler)."""
    return str(config.get("_class_name", "")) in FLOW_SCHEDULERS


def noise_schedule(config: dict[str, Any], source: object = "scheduler config", image_seq_len: int | None = None) -> Noise:
    """The noise schedule a scheduler config describes: :class:`FlowSchedule` for ``FlowMatch*`` classes, else alpha-bar."""
    if is_flow_config(config):
        return FlowSchedule.from_scheduler_config(config, source, image_seq_len)
    return NoiseSchedule.from_scheduler_config(config, source)


def pipeline_noise(config: dict[str, Any], source: object = "scheduler config") -> Noise:
    """The noise schedule of a pipeline's scheduler config, for a model its own call drives. A dynamically shifted
    flow config (Flux, SD3.5, Qwen-Image) is read unshifted (``mu = 0``): the pipeline computes ``mu`` from each call's
    resolution, so what the model's noise says (its kind, its fingerprint) must not depend on one resolution."""
    if is_flow_config(config) and config.get("use_dynamic_shifting"):
        return FlowSchedule.from_scheduler_config(config, source, mu=0.0)
    return noise_schedule(config, source)


def scheduler_fingerprint(config: dict[str, Any]) -> str:
    """What a schedule file records of a pipeline's noise schedule: :func:`pipeline_noise`'s fingerprint, or for a
    config flexdiff does not model (Karras flow sigmas, ...) a digest of the config itself."""
    try:
        return pipeline_noise(config).fingerprint()
    except FlexdiffError:
        return digest({k: v for k, v in config.items() if not k.startswith("_")})


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
