"""Running a schedule on a model: the executor owns the clock and tells the hooks what each step is.

Usage (Python)::

    with flexdiff.apply_schedule(model, schedule) as run:       # hooks on; the model itself is unchanged
        images = flexdiff.generate(model, noise, schedule.active_timesteps, schedule.sampler, denoise=run.start)
    # hooks off again: the model computes bit-identically to before

or simply ``flexdiff.sample(model, n, schedule=schedule)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from flexdiff.backbones import Layout
from flexdiff.errors import FlexdiffError
from flexdiff.hooks import StepState, apply_partial_steps, remove_partial_steps
from flexdiff.models import DiffusionModel
from flexdiff.samplers import Denoise
from flexdiff.schedule import Schedule, check_binding
from flexdiff.utils.diffusers_private import compiled_call


def record_range(schedule: Schedule, layout: Layout) -> range:
    """The units every cache-filling step records: the smallest range holding the deep sets of every replaying step of
    the schedule (a UNet's deep sets are nested, so that is the shallowest branch's; a transformer's (F, B) middles
    are not). One range for all full steps keeps them one graph under ``torch.compile`` (the hooks' state is a
    guard: a per-step range would recompile per distinct range); recording keeps references only, so recording more
    costs no compute."""
    deep = [layout.branches[step.branch].deep for step in schedule.steps if step.info.takes_branch and not step.info.fills_cache]
    deep = [d for d in deep if d]
    return range(min(d.start for d in deep), max(d.stop for d in deep)) if deep else range(0)


def step_types(schedule: Schedule) -> set[tuple[str, int | None]]:
    """The distinct (kind, branch) pairs of the steps that call the network: the graphs a compiled denoiser needs."""
    return {(step.kind, step.branch) for step in schedule.steps if step.info.calls_network}


def is_compiled(module: object) -> bool:
    """Whether ``module`` runs under ``torch.compile`` (``torch.compile(m)`` wraps it; ``m.compile()`` compiles in place)."""
    return type(module).__name__ == "OptimizedModule" or compiled_call(module) is not None


def allow_recompiles(schedule: Schedule, warn: bool = True) -> None:
    """Under ``torch.compile`` each step type is one graph (the hooks' state is a dynamo guard), so a schedule with
    more step types than dynamo's ``recompile_limit`` (8 by default) would fall back to eager silently after the
    eighth. The limit is raised to what the schedule needs, never lowered; with a warning saying so when ``warn``
    (a compiled model: an eager one, such as every candidate of a search, has nothing to be told)."""
    import torch._dynamo.config as dynamo_config

    needed = len(step_types(schedule))
    current = int(dynamo_config.recompile_limit)
    if needed > current:
        dynamo_config.recompile_limit = needed
        if warn:
            warnings.warn(
                f"flexdiff: raised torch._dynamo.config.recompile_limit from {current} to {needed}, the step types of "
                f"{schedule.name or 'the schedule'} (one compiled graph each)",
                stacklevel=3,
            )


def hollow_replay_safe(pipeline: object) -> bool:
    """Whether deep units may replay zero-channel views (:mod:`flexdiff.hooks.partial_step`): not under a ControlNet,
    whose residuals the UNet adds to every skip, the replayed ones included."""
    return getattr(pipeline, "controlnet", None) is None


class ScheduleExecutor:
    """Drives one model through a schedule: maps active-step index -> step type and sets the hook state."""

    def __init__(self, model: DiffusionModel | None, schedule: Schedule, layout: Layout, state: StepState, compiled: bool | None = None) -> None:
        """``model`` is None when another loop calls the network (a user's pipeline): only :meth:`set_step` is used then.
        ``compiled``: whether the network runs under ``torch.compile`` (default: asked of ``model``'s denoiser)."""
        schedule.check_branches(layout.num_branches)
        allow_recompiles(schedule, warn=compiled if compiled is not None else model is None or is_compiled(model.denoiser))
        self.model, self.schedule, self.layout, self.state, self.compiled = model, schedule, layout, state, compiled
        self._active = schedule.active_indices
        self._record = record_range(schedule, layout)
        self._filled: list[int] = []  # teacher-step positions of this run's cache-filling steps (for forecasts)
        self.hollow = True  # False: deep units replay their real cached tensors (the reference the tests compare with)

    def with_schedule(self, schedule: Schedule) -> "ScheduleExecutor":
        """The same model, units and hook state under another ``schedule`` (a searched plan re-expanded at another
        step count: :func:`flexdiff.schedule.for_steps`)."""
        executor = ScheduleExecutor(self.model, schedule, self.layout, self.state, self.compiled)
        executor.hollow = self.hollow
        return executor

    def set_step(self, index: int) -> None:
        """Tell the hooks that teacher step ``index`` (0..T-1) runs next (for hand-written sampling loops)."""
        step = self.schedule.steps[index]
        kind = step.info
        if not kind.calls_network:
            raise ValueError(f"step {index} is {step}: the sampler must skip it, not call the network")
        if kind.fills_cache:
            self.state.enter_full(self._record)
            if self._record and self._filled[-1:] != [index]:  # a pipeline may call once per CFG half: one position
                self._filled = [*self._filled[-1:], index]
        elif not kind.takes_branch:  # a step that computes everything and records nothing
            self.state.enter_full(range(0))
        else:
            self.state.enter_partial(self.layout.branches[step.branch], self.hollow, self._forecast(index) if kind.forecasts else None)

    def _forecast(self, index: int) -> torch.Tensor | None:
        """The extrapolation factor ``(p - p2) / (p2 - p1)`` of step ``index`` from the last two cache-filling steps
        at positions ``p1 < p2`` (teacher steps: the step position TaylorSeer expands in); None (replay) before the second."""
        if len(self._filled) < 2:
            return None
        p1, p2 = self._filled
        return torch.tensor((index - p2) / (p2 - p1))

    def new_run(self) -> None:
        """A new sampling trajectory starts (one batch): caches and the positions of full steps are forgotten."""
        self.state.cache.clear()
        self.state.previous.clear()
        self._filled = []

    def denoise(self, x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        """The :data:`Denoise` callable for the samplers: active step ``i`` -> teacher step ``active[i]``."""
        self.set_step(self._active[i])
        return self.model.eps(x, t)

    def start(self) -> Denoise:
        """Begin a sampling run (one batch): clears the caches; returns :meth:`denoise`."""
        self.new_run()
        return self.denoise


@contextmanager
def apply_schedule(model: DiffusionModel, schedule: Schedule, strict: bool = True) -> Iterator[ScheduleExecutor]:
    """Attach the step hooks for ``schedule`` to ``model``'s unmodified denoiser; remove them on exit. The executor it
    yields drives flexdiff's own sampling loop (its ``start`` is the samplers' ``denoise``); a user's pipeline object is
    refused here (it would run its own loop without the clock): ``flexdiff.enable(pipe, schedule)`` is for those."""
    if not isinstance(model, DiffusionModel):
        raise FlexdiffError(
            type(model).__name__,
            "a model from flexdiff.load_model (apply_schedule drives flexdiff's own sampling loop)",
            "for your own pipeline object use flexdiff.enable(pipe, schedule) or `with flexdiff.enabled(pipe, schedule):`",
        )
    check_binding(schedule, lambda: model.binding(schedule.sampler), strict=strict)  # a schedule file made for another model is refused
    layout, state = apply_partial_steps(model.denoiser)
    try:
        executor = ScheduleExecutor(model, schedule, layout, state)
        executor.hollow = hollow_replay_safe(model.pipeline)
        yield executor
    finally:
        state.reset()
        remove_partial_steps(model.denoiser)
