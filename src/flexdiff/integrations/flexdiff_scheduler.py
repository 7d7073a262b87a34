"""flexdiff's own samplers as a diffusers scheduler: :class:`FlexdiffScheduler` (``SchedulerMixin`` + ``ConfigMixin``).

A schedule searched in flexdiff's loop (``flexdiff search --sampler ddim --solver ddim-2m``) was scored with one of
flexdiff's pure samplers, not with the pipeline's scheduler. For ``pipe(...)`` to make the images the search scored,
:func:`flexdiff.enable` swaps the pipeline's scheduler for a :class:`FlexdiffScheduler` running that sampler
(configured from the pipeline's scheduler config: its betas, prediction type and clipping), and swaps it back on
``disable``. It accepts custom ``timesteps`` (null steps are dropped timesteps, as in flexdiff's loop), so it also
runs null steps on a DDIM pipeline whose ``DDIMScheduler`` cannot take them.

**How a whole-loop sampler becomes step-wise.** flexdiff's samplers are pure functions over the whole timestep list
(k-diffusion style); multistep solvers (``dpmpp-2m``, ``ddim-2m``) keep their history as local variables. Rather
than a second, step-wise copy of every solver, the sampler runs in a worker thread whose ``denoise`` callback hands
control back: ``step(eps_i, t_i, x_i)`` passes ``eps_i`` in and returns the ``x_{i+1}`` the sampler computes next
(the input of its next ``denoise`` call, or its final output). One thread runs at a time (a strict handoff), so the
result is the sampler's own, bit for bit (tested against ``flexdiff.generate``).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from flexdiff.errors import FlexdiffError
from flexdiff.integrations.base import timestep_value
from flexdiff.noise import NoiseSchedule
from flexdiff.samplers import get_sampler, sampler_info, uniform_timesteps


@dataclass
class FlexdiffSchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor


class _Abort(Exception):
    """Sent to a sampler thread whose run was abandoned (a new ``set_timesteps``)."""


class FlexdiffScheduler(SchedulerMixin, ConfigMixin):
    """A diffusers scheduler that runs flexdiff's sampler ``solver`` (see the module docstring)."""

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02, beta_schedule: str = "linear",
                 trained_betas: Any = None, prediction_type: str = "epsilon", clip_sample: bool = True, clip_sample_range: float = 1.0,
                 solver: str = "ddim") -> None:
        get_sampler(solver, fix="pass solver= one of flexdiff's samplers")
        noise_config = {k: v for k, v in dict(self.config).items() if k != "solver"}
        self.noise = NoiseSchedule.from_scheduler_config(noise_config, "FlexdiffScheduler config")
        self.init_noise_sigma = 1.0
        self.timesteps = torch.tensor([], dtype=torch.long)
        self.num_inference_steps: int | None = None
        self.grid: list[int] | None = None  # the teacher's grid the timesteps were taken from (ddim-2m corrects towards it)
        self._run: _Run | None = None

    @classmethod
    def from_scheduler(cls, scheduler: Any, solver: str) -> "FlexdiffScheduler":
        """Configured from another scheduler's config (its noise schedule), running ``solver``."""
        keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "clip_sample", "clip_sample_range")
        config = dict(scheduler.config)
        return cls(**{k: config[k] for k in keys if k in config}, solver=solver)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None, timesteps: list[int] | None = None) -> None:
        """The given ``timesteps``; else :attr:`grid` when it has ``num_inference_steps`` entries (the grid a schedule was
        made on, e.g. the pipeline's own), else the solver's uniform grid (its spacing, as flexdiff's loop uses)."""
        if timesteps is None:
            if num_inference_steps is None:
                raise FlexdiffError("FlexdiffScheduler.set_timesteps()", "num_inference_steps or timesteps", "pass one of them")
            if self.grid is not None and len(self.grid) == num_inference_steps:
                timesteps = self.grid
            else:
                timesteps = uniform_timesteps(self.config.num_train_timesteps, num_inference_steps, sampler_info(self.config.solver).spacing)
        ts = [int(t) for t in timesteps]
        self.timesteps = torch.tensor(ts, dtype=torch.long, device=device)
        self.num_inference_steps = len(ts)
        self._abandon()

    def scale_model_input(self, sample: torch.Tensor, timestep: Any = None) -> torch.Tensor:
        return sample

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise (DDPM eq. 4), as diffusers' DDPM-family schedulers."""
        a = self.noise.alphas_cumprod.to(original.device)[timesteps.to(original.device).long()].flatten()
        shape = (-1,) + (1,) * (original.dim() - 1)
        return a.sqrt().view(shape).to(original.dtype) * original + (1 - a).sqrt().view(shape).to(original.dtype) * noise

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, return_dict: bool = True, **_: Any) -> Any:
        """One step of the solver: the next sample from this step's model output."""
        if self._run is None:
            ts, t = [int(t) for t in self.timesteps], timestep_value(timestep)
            if not ts or t != ts[0]:
                raise FlexdiffError(f"FlexdiffScheduler.step at timestep {t}", f"a run from the first timestep {ts[:1]} (set_timesteps first)", "img2img's part-way start is not supported by flexdiff's solvers; use the pipeline's own scheduler")
            self._run = _Run(self, sample.float(), ts)
        prev = self._run.step(model_output, sample)
        if self._run.done:
            self._run = None
        return FlexdiffSchedulerOutput(prev_sample=prev) if return_dict else (prev,)

    def _abandon(self) -> None:
        if self._run is not None:
            self._run.abort()
            self._run = None

    def __len__(self) -> int:
        return int(self.config.num_train_timesteps)


class _Run:
    """One sampling run of the solver in a worker thread, handing control back and forth with :meth:`step`."""

    def __init__(self, scheduler: FlexdiffScheduler, x: torch.Tensor, timesteps: list[int]) -> None:
        self.done, self.returned = False, None
        self.inbox: queue.Queue[Any] = queue.Queue()  # model outputs (or _Abort) for the sampler
        self.outbox: queue.Queue[Any] = queue.Queue()  # the next sample (or an exception) for step()
        solver = get_sampler(scheduler.config.solver)
        noise = scheduler.noise

        def denoise(xt: torch.Tensor, t: int, i: int) -> torch.Tensor:
            if i > 0:
                self.outbox.put(("sample", xt))
            item = self.inbox.get()
            if item is _Abort:
                raise _Abort
            return noise.to_eps(item.float(), xt, t)

        def work() -> None:
            try:
                final = solver(denoise, x, timesteps, noise, grid=scheduler.grid)
                self.outbox.put(("final", final))
            except _Abort:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self.outbox.put(("error", exc))

        self.thread = threading.Thread(target=work, name="flexdiff-scheduler", daemon=True)
        self.started = False

    def step(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        if self.returned is not None and not torch.equal(sample.float(), self.returned):
            raise FlexdiffError("a pipeline that edits the latents between steps", "the sample FlexdiffScheduler returned, passed back unchanged", "use the pipeline's own scheduler with this pipeline")
        self.inbox.put(model_output)
        if not self.started:
            self.thread.start()
            self.started = True
        kind, value = self.outbox.get()
        if kind == "error":
            self.done = True
            raise value
        self.done = kind == "final"
        self.returned = value
        return value.to(sample.dtype)

    def abort(self) -> None:
        if self.started and not self.done:
            self.inbox.put(_Abort)
            self.thread.join(timeout=5)
