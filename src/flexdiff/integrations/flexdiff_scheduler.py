"""flexdiff's own samplers as a diffusers scheduler: :class:`FlexdiffScheduler` (``SchedulerMixin`` + ``ConfigMixin``).

A schedule searched in flexdiff's loop (``flexdiff search --sampler ddim --solver ddim-2m``, or ``flow-euler`` on a
flow-matching model) was scored with one of flexdiff's samplers, not with the pipeline's scheduler. For ``pipe(...)``
to make the images the search scored, :func:`flexdiff.enable` swaps the pipeline's scheduler for a
:class:`FlexdiffScheduler` running that sampler (configured from the pipeline's scheduler config: its betas,
prediction type, clipping and zero-SNR rescaling, or its flow shift), and swaps it back on ``disable``. It accepts
custom ``timesteps`` (null steps are dropped timesteps, as in flexdiff's loop), so it also runs null steps on a DDIM
pipeline whose ``DDIMScheduler`` cannot take them.

**How a sampler becomes step-wise.** Every flexdiff sampler is a generator (:mod:`flexdiff.samplers`): it yields the
input of each active step and is sent that step's prediction. ``step(model_output, t, sample)`` sends the model output
in and returns the next input the generator yields (or its final output): the same code as flexdiff's own loop, run in
the caller's thread, so the result is the sampler's own (tested against ``flexdiff.generate``), the caller's grad and
autocast state apply, and nothing outlives the call (no thread, no queue). The run's state is float32 whatever the
pipeline's dtype; each step hands the pipeline its latents in the pipeline's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from flexdiff.errors import FlexdiffError
from flexdiff.integrations.base import grid_position, timestep_value
from flexdiff.noise import FlowSchedule, NoiseSchedule
from flexdiff.samplers import Steps, get_sampler, sampler_info, uniform_timesteps

#: The config fields of each noise kind copied from the pipeline's scheduler (:meth:`FlexdiffScheduler.from_scheduler`).
NOISE_KEYS = {
    "alpha_bar": (
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "trained_betas",
        "prediction_type",
        "clip_sample",
        "clip_sample_range",
        "rescale_betas_zero_snr",
    ),
    "flow": ("num_train_timesteps", "shift", "use_dynamic_shifting", "base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len", "time_shift_type"),
}


@dataclass
class FlexdiffSchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor


@dataclass
class _Run:
    """One sampling run in progress: the sampler's generator and the step it waits at."""

    steps: Steps
    x: torch.Tensor  # the input of the pending step (float32), as the generator yielded it
    t: float  # its grid point
    returned: torch.Tensor | None = None  # what step() last handed the pipeline (its dtype), to catch edited latents


class FlexdiffScheduler(SchedulerMixin, ConfigMixin):
    """A diffusers scheduler that runs flexdiff's sampler ``solver`` (see the module docstring)."""

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
        rescale_betas_zero_snr: bool = False,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float = 0.5,
        max_shift: float = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        time_shift_type: str = "exponential",
        solver: str = "ddim",
    ) -> None:
        get_sampler(solver, fix="pass solver= one of flexdiff's samplers")
        self.noise_kind = sampler_info(solver).noise_kind
        self.noise: NoiseSchedule | FlowSchedule | None = None if self.noise_kind == "flow" and use_dynamic_shifting else self._noise(None)
        self.init_noise_sigma = 1.0
        self.timesteps = torch.tensor([], dtype=torch.long)
        self.sigmas = torch.tensor([])  # flow: the grid's sigmas and the terminal 0 (what FlowMatch schedulers expose)
        self.num_inference_steps: int | None = None
        self.grid: list[float] | None = None  # the teacher's grid the timesteps were taken from (ddim-2m corrects towards it)
        self.points: list[float] = []  # the grid points of this run's steps: integer timesteps, or sigmas
        self._begin_index: int | None = None
        self._run: _Run | None = None

    @classmethod
    def from_scheduler(cls, scheduler: Any, solver: str) -> "FlexdiffScheduler":
        """Configured from another scheduler's config (its noise schedule, of ``solver``'s noise kind), running ``solver``."""
        config = dict(scheduler.config)
        keys = NOISE_KEYS[sampler_info(solver, fix="pass solver= one of flexdiff's samplers").noise_kind]
        return cls(**{k: config[k] for k in keys if k in config}, solver=solver)

    def _noise(self, mu: float | None) -> NoiseSchedule | FlowSchedule:
        config = {k: self.config[k] for k in NOISE_KEYS[self.noise_kind]}
        if self.noise_kind == "flow":
            if config["use_dynamic_shifting"] and mu is None:
                raise FlexdiffError(
                    "FlexdiffScheduler.set_timesteps without mu",
                    "mu for a dynamically shifted flow config (the pipeline computes it from the image size)",
                    "pass mu= as SD3's and Flux's pipelines do",
                )
            return FlowSchedule.from_scheduler_config(config, "FlexdiffScheduler config", mu=mu)
        return NoiseSchedule.from_scheduler_config(config, "FlexdiffScheduler config")  # diffusers' betas, zero-SNR rescaling included

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[float] | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
    ) -> None:
        """The run's grid points: the given integer ``timesteps``; for a flow model the given ``sigmas`` (or ``timesteps``,
        sigma x T), shifted as ``FlowMatchEulerDiscreteScheduler`` shifts them (Flux passes its own sigmas and ``mu``,
        CogView4 both); else :attr:`grid` when it has ``num_inference_steps`` entries (the grid a schedule was made on, e.g. the
        pipeline's own); else the solver's uniform grid (its spacing, or the shifted flow sigmas)."""
        flow = self.noise_kind == "flow"
        if flow:
            self.noise = self._noise(mu)
        elif sigmas is not None:
            raise FlexdiffError(
                "FlexdiffScheduler.set_timesteps(sigmas=...)", f"integer timesteps for solver {self.config.solver}", "pass timesteps= or num_inference_steps"
            )
        if flow and (sigmas is not None or timesteps is not None):  # as FlowMatch: timesteps are sigma x T; both shifted
            import numpy as np

            given = np.asarray(sigmas, dtype=np.float64) if sigmas is not None else np.asarray(timesteps, dtype=np.float64) / self.config.num_train_timesteps
            points = [float(s) for s in self.noise.shifted(given).astype(np.float32)]
        elif timesteps is not None:
            points = [int(t) for t in timesteps]
        elif num_inference_steps is None:
            raise FlexdiffError("FlexdiffScheduler.set_timesteps()", "num_inference_steps, timesteps or sigmas", "pass one of them")
        elif self.grid is not None and len(self.grid) == num_inference_steps:
            points = list(self.grid)
        elif flow:
            points = self.noise.sigmas(num_inference_steps)
        else:
            points = uniform_timesteps(self.config.num_train_timesteps, num_inference_steps, sampler_info(self.config.solver).spacing)
        self.points = points
        self.num_inference_steps = len(points)
        if flow:
            self.sigmas = torch.tensor([*points, 0.0], dtype=torch.float32, device=device)
            self.timesteps = self.sigmas[:-1] * self.config.num_train_timesteps
        else:
            self.timesteps = torch.tensor(points, dtype=torch.long, device=device)
        self._begin_index = None
        self._abandon()

    @property
    def begin_index(self) -> int | None:
        """Where the run starts in the grid (img2img's strength), as diffusers' schedulers have it."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._begin_index = int(begin_index)

    def scale_model_input(self, sample: torch.Tensor, timestep: Any = None) -> torch.Tensor:
        return sample

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise (DDPM eq. 4), as diffusers' DDPM-family schedulers."""
        if self.noise_kind == "flow":
            return self.scale_noise(original, timesteps, noise)
        a = self.noise.alphas_cumprod.to(original.device)[timesteps.to(original.device).long()].flatten()
        shape = (-1,) + (1,) * (original.dim() - 1)
        return a.sqrt().view(shape).to(original.dtype) * original + (1 - a).sqrt().view(shape).to(original.dtype) * noise

    def scale_noise(self, sample: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Rectified flow's forward process ``x_s = s noise + (1 - s) x_0`` at the model timestep ``s x T`` (what
        ``FlowMatchEulerDiscreteScheduler.scale_noise`` computes for image-to-image)."""
        s = (torch.as_tensor(timestep, dtype=torch.float32).flatten() / self.config.num_train_timesteps).to(sample.device)
        s = s.view((-1,) + (1,) * (sample.dim() - 1)).to(sample.dtype)
        return s * noise + (1.0 - s) * sample

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Any,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        **_: Any,
    ) -> Any:
        """One step of the solver: the next sample from this step's model output. ``eta`` and ``generator`` (what a
        pipeline passes ``DDIMScheduler.step``) go to the solver at the run's first step: ``ddim`` uses them (its extra
        noise drawn as diffusers' DDIM draws it), a deterministic solver refuses ``eta > 0`` in one line."""
        run = self._run if self._run is not None else self._start(timestep, sample, eta, generator)
        if run.returned is not None and not torch.equal(sample, run.returned):
            raise FlexdiffError(
                "a pipeline that edits the latents between steps",
                "the sample FlexdiffScheduler returned, passed back unchanged",
                "use the pipeline's own scheduler with this pipeline",
            )
        prediction = self.noise.to_prediction(model_output.to(run.x.dtype), run.x, run.t)
        try:
            run.x, run.t, _ = run.steps.send(prediction)
            prev = run.x
        except StopIteration as end:
            prev, self._run = end.value, None
        except BaseException:
            self._run = None
            raise
        out = prev.to(sample.dtype)
        run.returned = out
        return FlexdiffSchedulerOutput(prev_sample=out) if return_dict else (out,)

    def _start(self, timestep: Any, sample: torch.Tensor, eta: float, generator: torch.Generator | None) -> _Run:
        """A new run at the pipeline's first ``step``: from :attr:`begin_index`, or where ``timestep`` is in the grid."""
        begin = self._begin_index if self._begin_index is not None else grid_position(self.timesteps.tolist(), timestep_value(timestep, integer=False))
        if begin is None or not 0 <= begin < len(self.points):
            raise FlexdiffError(
                f"FlexdiffScheduler.step at timestep {timestep_value(timestep, integer=False)}",
                f"a timestep of the grid set by set_timesteps ({len(self.points)} points)",
                "call set_timesteps first",
            )

        def draw(i: int) -> torch.Tensor:  # diffusers' DDIM: randn_tensor(model_output.shape, generator, device, dtype)
            return randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)

        solver = sampler_info(self.config.solver)
        steps = solver.steps(sample.float(), self.points[begin:], self.noise, eta=eta, grid=self.grid, noise_sampler=draw)
        x, t, _ = next(steps)  # the solver's checks (eta, timesteps) raise here, before the first update
        self._run = _Run(steps, x, t)
        return self._run

    def _abandon(self) -> None:
        if self._run is not None:
            self._run.steps.close()
            self._run = None

    def __len__(self) -> int:
        return int(self.config.num_train_timesteps)
