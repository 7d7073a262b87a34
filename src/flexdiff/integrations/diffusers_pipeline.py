"""A user's own diffusers pipeline object: ``flexdiff.enable(pipe, schedule)``, then ``pipe(...)`` exactly as before.

The pipeline, its denoiser and its scheduler stay unmodified; three removable pieces attach to them:

- the step hooks of :mod:`flexdiff.hooks.partial_step` on the denoiser's units;
- a clock hook (:data:`CLOCK_HOOK`, a diffusers ``ModelHook`` on the denoiser itself, or a wrapper of an in-place
  compiled denoiser's call: :func:`_attach_clock`) that, before every denoiser call, tells the step hooks which
  schedule step and step kind is running;
- instance-level wrappers of the scheduler's ``set_timesteps`` and ``step``: **the clock is the pipeline's own loop**.
  ``set_timesteps`` starts a run (and checks that the scheduler's grid is the schedule's); every ``step`` call ends
  the current schedule step. Every denoiser call between two ``step`` calls belongs to one step, so classifier-free
  guidance done as two calls works: each call keeps its own cache, keyed by the name of the diffusers
  ``cache_context`` the pipeline runs it in ("cond", "uncond"), or else by its position in the step. Timestep values
  are read only to find where img2img's loop starts on a scheduler without a ``begin_index`` (DDIM), in the grid the
  scheduler itself set.

Null steps are dropped by giving the scheduler the active timesteps where its ``set_timesteps`` accepts custom ones
(DDPM, Euler, Heun, DPM-Solver++, LCM, FlowMatch). The one replacement: a schedule scored in flexdiff's own loop
(bound to ``flexdiff:<sampler>``), or null steps on a DDIM that ends at alpha-bar 1, runs with a
:class:`~flexdiff.integrations.flexdiff_scheduler.FlexdiffScheduler` in the scheduler's place for the time it is
enabled (:func:`flexdiff_solver`); null steps on PNDM, UniPC or Euler ancestral are a one-line refusal naming the
scheduler. Schedulers that evaluate a timestep twice (Heun's correction,
PLMS's warm-up) repeat it in their grid: each loop position maps to the step of its timestep (:func:`grid_steps`); a
grid with timesteps between the nominal ones (PNDM's Runge-Kutta warm-up, KDPM2) is refused in one line.

ControlNet pipelines work unchanged: the ControlNet runs in every step the denoiser runs, and the UNet adds its
residuals to the skips and the mid-block output *outside* the hooked units. In a partial step the shallow units
therefore consume this step's residuals while the replayed deep feature carries those of the latest full step, as
it carries that step's ``x_t``; deep units replay real tensors there (not zero-channel views), since the UNet adds the
residuals to every skip, the replayed ones included.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

from flexdiff.backbones import backbone_of
from flexdiff.errors import FlexdiffError
from flexdiff.hooks import StepState, apply_partial_steps, remove_partial_steps
from flexdiff.integrations.base import Integration, grid_position, register_integration, timestep_value
from flexdiff.integrations.flexdiff_scheduler import FlexdiffScheduler
from flexdiff.models.model import denoiser_binding
from flexdiff.models.pipelines import DENOISER_ATTRS, denoiser_of, denoisers_of  # noqa: F401 - re-exported
from flexdiff.noise import FLOW_SCHEDULERS, FlowSchedule, scheduler_fingerprint
from flexdiff.running.executor import ScheduleExecutor, hollow_replay_safe, is_compiled
from flexdiff.schedule import Binding, Schedule, for_steps
from flexdiff.schedule.binding import KEY
from flexdiff.utils.diffusers_private import (
    BaseState,
    CacheContext,
    StateManager,
    compiled_call,
    ensure_own_hook_registry,
    hook_registry,
    is_compile_wrapper,
    set_compiled_call,
    stateful_hook,
)

CLOCK_HOOK = "flexdiff.pipeline_clock"
ATTR = "_flexdiff_enabled"


def is_flow_scheduler(scheduler: Any) -> bool:
    """A flow-matching scheduler: diffusers' ``FlowMatch*`` classes, or a :class:`FlexdiffScheduler` running a flow
    solver (both take ``sigmas=`` and shift them, and expose ``sigmas``)."""
    return type(scheduler).__name__ in FLOW_SCHEDULERS or getattr(scheduler, "noise_kind", None) == "flow"


def lists_sigmas(scheduler: Any) -> bool:
    """Whether the scheduler's grid is its sigmas rather than integer timesteps: flow matching, or a scheduler that
    takes ``sigmas=`` and set non-integer timesteps (Euler with Karras / exponential / beta sigmas; Stable Video
    Diffusion's ``timestep_type="continuous"``, whose timesteps are 0.25 log sigma). Read after ``set_timesteps``."""
    if is_flow_scheduler(scheduler):
        return True
    takes_sigmas = "sigmas" in inspect.signature(scheduler.set_timesteps).parameters and hasattr(scheduler, "sigmas")
    return takes_sigmas and any(float(t) != int(t) for t in scheduler.timesteps)


def scheduler_grid(scheduler: Any) -> list[float]:
    """What the scheduler set: its integer timesteps, or its sigmas (the terminal one left out) where
    :func:`lists_sigmas`: the grid points a schedule lists."""
    if lists_sigmas(scheduler):
        return [float(s) for s in scheduler.sigmas[:-1]]
    return [int(t) for t in scheduler.timesteps]


def same_grid(a: list[float], b: list[float]) -> bool:
    """Equal grids: timesteps exactly, sigmas to a relative 1e-6 (float32 values through two routes; SVD's reach 700)."""
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for x, y in zip(a, b))


def merge_repeats(grid: list[int]) -> list[int]:
    """A scheduler's grid with consecutive repeats merged: multi-evaluation schedulers repeat a timestep (Heun
    evaluates ``t1`` once to correct step 0 and once to start step 1: ``[t0, t1, t1, t2, t2, ...]``; PNDM's PLMS warms
    up with ``t1`` twice), and a timestep evaluated twice in a row is one step."""
    return [t for i, t in enumerate(grid) if i == 0 or grid[i - 1] != t]


def grid_steps(grid: list[int], expected: list[int], name: str) -> list[int]:
    """For each position of the scheduler's loop, the position in ``expected`` (the schedule's active timesteps) whose
    step it evaluates (:func:`merge_repeats`)."""
    if not same_grid(merge_repeats(grid), list(expected)):
        raise FlexdiffError(f"{name} grid {grid}", f"the schedule's active timesteps {list(expected)}, each possibly repeated", "pick another scheduler")
    positions: list[int] = []
    for i, t in enumerate(grid):
        positions.append(0 if i == 0 else positions[-1] + int(grid[i - 1] != t))
    return positions


@dataclass
class Hooked:
    """One hooked denoiser of an enabled pipeline: its executor and hook state, and a cache per call of a step."""

    attr: str  # the pipeline attribute it was found under ("unet", "transformer", "transformer_2")
    denoiser: Any  # the module the hooks are on (disable cleans it even after the pipeline's was swapped)
    executor: ScheduleExecutor
    state: StepState
    caches: dict[int | str, tuple[dict[Any, Any], dict[Any, Any]]] = field(default_factory=dict)  # call key -> its (cache, previous)
    filled: bool = False  # a full step of this run has run on it (its partial steps have a cache to reuse)
    context: str | None = None  # the name of the diffusers cache_context the pipeline's call runs in ("cond", "uncond")


@dataclass
class PipelineRun:
    """The state of one enabled pipeline: the schedule, the hooked denoisers, and the clock."""

    schedule: Schedule  # what the current call runs: the enabled schedule, or re-expanded at the call's step count
    parts: list[Hooked]
    scheduler: Any
    enabled: Schedule | None = None  # the schedule as enabled (``schedule`` until a call re-expands it)
    started: bool = False
    step: int = 0  # loop iterations completed in this run (scheduler.step calls)
    slot: int = 0  # denoiser calls so far within the current iteration
    offset: int = 0  # loop positions skipped at the start (img2img's strength)
    positions: list[int] = field(default_factory=list)  # loop position -> active-step position (grid_steps)
    replaced: Any = None  # the pipeline's own scheduler while a FlexdiffScheduler stands in for it (restored on disable)
    owner: threading.Thread | None = None  # the thread whose run is in progress: one run at a time
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.enabled = self.enabled or self.schedule

    def start(self, positions: list[int]) -> None:
        """A new run (``set_timesteps``) in this thread; refused while another live thread's run is in progress: the
        hooks' caches and the clock are one per pipeline, so two interleaved runs would corrupt each other's latents."""
        with self.lock:
            me = threading.current_thread()
            if self.owner is not None and self.owner is not me and self.owner.is_alive():
                raise FlexdiffError(
                    f"a call of the enabled pipeline from thread {me.name!r} while thread {self.owner.name!r} runs it",
                    "one call at a time per enabled pipeline (the schedule's cache and clock are the pipeline's)",
                    "wait for the other call, or give each thread its own pipeline (copy.deepcopy(pipe) is enabled too)",
                )
            self.owner = me
        self.started, self.step, self.slot, self.offset, self.positions = True, 0, 0, 0, positions
        for part in self.parts:
            part.caches.clear()
            part.filled = False
            part.executor.new_run()

    def plan_for(self, grid: list[float]) -> Schedule:
        """The schedule a call on the scheduler's ``grid`` runs: the enabled one at its own step count; at another, a
        searched schedule's genome re-expanded there (:func:`~flexdiff.schedule.for_steps`; a plan without one is a
        one-line refusal), its executors rebuilt on the same hooks."""
        plan = self.enabled if len(grid) == self.enabled.T else for_steps(self.enabled, grid)
        if plan.key != self.schedule.key:  # the key holds the steps, the timesteps and the sampler
            self.schedule = plan
            for part in self.parts:
                part.executor = part.executor.with_schedule(plan)
            if self.replaced is not None:  # a FlexdiffScheduler stands in: its multistep correction reads the teacher's grid
                self.scheduler.grid = list(plan.timesteps)
        return plan

    def check_thread(self) -> None:
        if self.owner is not threading.current_thread():
            raise FlexdiffError(
                f"a denoiser or scheduler call from thread {threading.current_thread().name!r}",
                "the thread that started the run with set_timesteps",
                "call the enabled pipeline from one thread at a time",
            )

    def before_call(self, timestep: Any, part: Hooked) -> None:
        """A call of ``part``'s denoiser at ``timestep`` is about to run: the schedule step it belongs to sets its hooks."""
        if not self.started:
            raise FlexdiffError(
                "a denoiser call before scheduler.set_timesteps",
                "the pipeline's own denoising loop (set_timesteps, then model and step calls)",
                "call the pipeline as usual; flexdiff schedules only its denoising loop",
            )
        self.check_thread()
        if self.step == 0 and self.slot == 0:
            self.offset = self._first_position(timestep)
            self.check_begin(self.offset)
        active = self.schedule.active_indices
        position = self.offset + self.step
        if position >= len(self.positions):
            raise FlexdiffError(
                f"denoiser call {position + 1}",
                f"at most the scheduler grid's {len(self.positions)} positions",
                "make the schedule for this pipeline's num_inference_steps",
            )
        index = active[self.positions[position]]
        if self.step == 0 and not self.schedule.steps[index].info.fills_cache:
            raise FlexdiffError(
                f"{self.schedule.name or 'schedule'} step {index} = {self.schedule.steps[index]}",
                "a full step where the pipeline's loop starts (img2img's strength skips the steps before it)",
                "make that step full",
            )
        fills = self.schedule.steps[index].info.fills_cache
        key = self.slot if part.context is None else part.context
        if not fills and not part.filled:
            raise FlexdiffError(
                f"{self.schedule.name or 'schedule'} step {index} = {self.schedule.steps[index]} on pipe.{part.attr}",
                f"a full step where pipe.{part.attr} takes over (its partial steps reuse its own full step's features)",
                "make that step full",
            )
        part.filled = part.filled or fills
        self.slot += 1
        if not fills and key not in part.caches:  # a call the full steps did not make (SD3's skip-layer-guidance pass,
            part.state.cache, part.state.previous = {}, {}  # LTX 2's "uncond_stg", only in some steps): nothing to
            part.state.enter_full(range(0))  # reuse, so it computes
            return
        part.state.cache, part.state.previous = part.caches.get(key, ({}, {}))
        part.executor.set_step(index)  # a recording step starts new caches: keep this call's
        part.caches[key] = (part.state.cache, part.state.previous)

    def _first_position(self, timestep: Any) -> int:
        """Where in the scheduler's grid the loop starts: 0, or part-way through for img2img's ``strength``. The
        scheduler's ``begin_index`` says so where it has one; otherwise the first call's timestep is located in the
        grid the scheduler itself set (this layer is the one place that reads the pipeline's timesteps)."""
        begin = getattr(self.scheduler, "begin_index", None)
        if begin is not None:
            return int(begin)
        if timestep is None:  # passed under a name of its own, or not at all: a loop without a begin index starts at 0
            return 0
        grid = [float(t) for t in self.scheduler.timesteps]
        value = timestep_value(timestep, integer=False)
        # the model timestep as the scheduler lists it, or sigma = t / num_train_timesteps (Flux ControlNet / Control)
        found = grid_position(grid, value, (1.0, float(self.scheduler.config.get("num_train_timesteps", 1000))))
        if found is not None:
            return found
        raise FlexdiffError(
            f"a denoiser call at timestep {value:g}", f"a timestep of the scheduler's grid {[round(t, 3) for t in grid]}", "call the pipeline as usual"
        )

    def after_step(self) -> None:
        self.check_thread()
        self.step += 1
        self.slot = 0
        if self.offset + self.step >= len(self.positions):  # the run is over: another thread may start one
            self.owner = None

    def check_begin(self, position: int) -> None:
        """img2img's strength starts the plain pipeline at grid step ``t_start``, sliced from the scheduler's grid as
        loop position ``position`` (``t_start`` x the scheduler's order). With null steps that grid holds the active
        steps only, so the run would start at active step ``t_start`` instead: the same step only when no null step
        comes before it. Otherwise the strength would silently change (or the pipeline would slice an empty grid):
        refused. Called by ``set_begin_index`` where the scheduler has one, else at the run's first denoiser call."""
        active = self.schedule.active_indices
        start = self.positions[position] if position < len(self.positions) else len(active)
        if position > 0 and len(active) != self.schedule.T and (start >= len(active) or active[start] != start):
            dropped = sum(1 for i in range(min(start, self.schedule.T)) if i not in active)
            raise FlexdiffError(
                f"img2img starting at step {start} of {self.schedule.T} under {self.schedule.name or 'a schedule'} with {dropped} null step(s) before it",
                "a schedule whose null steps all come after the step where the strength starts the run",
                "use strength=1.0, or a schedule without null steps before that step",
            )

    def check_parts(self, pipe: Any) -> None:
        """The denoisers and scheduler are still the ones enable hooked: a swap after enable would run the new one
        without the schedule (or leave the old one's hooks applied to nothing) without a word."""
        mine = [(part.attr, part.denoiser) for part in self.parts] + [("scheduler", self.scheduler)]
        now = dict(denoisers_of(pipe), scheduler=getattr(pipe, "scheduler", None))
        for attr, module in mine + [(a, None) for a in now if a not in dict(mine)]:
            if now.get(attr) is not module:
                raise FlexdiffError(
                    f"pipe.{attr} replaced after flexdiff.enable (now {type(now.get(attr)).__name__}, enabled on {type(module).__name__})",
                    "the components the schedule was enabled on",
                    "call flexdiff.disable(pipe) before swapping components, then enable again",
                )


def call_timestep(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The timestep of a denoiser call ``unet(sample, timestep, ...)``, positional or by keyword (HiDream: ``timesteps``)."""
    for name in ("timestep", "timesteps"):
        if kwargs.get(name) is not None:
            return kwargs[name]
    return args[1] if len(args) > 1 and isinstance(args[1], (torch.Tensor, int, float)) else None


class _CacheContextName(StateManager):
    """Where diffusers' ``denoiser.cache_context(name)`` (set by the pipelines that name their calls: "cond", "uncond",
    LTX's "cond_uncond", LTX 2's "uncond_stg") reaches the clock: it sets the context on every ``StateManager`` of the
    denoiser's stateful hooks. The name keys the call's cache, so a call made in some steps only, or in another order,
    still reuses its own features; without a name, the call's position in its step does."""

    def __init__(self, part: Hooked) -> None:
        super().__init__(BaseState)
        self.part = part

    def set_context(self, context: CacheContext | None) -> None:
        self.part.context = None if context is None else context.name

    def reset(self, *args: Any, **kwargs: Any) -> None:
        self.part.context = None


@stateful_hook  # so that diffusers' cache_context reaches its _CacheContextName
class _ClockHook(ModelHook):
    """Before each call of the denoiser: :meth:`PipelineRun.before_call`."""

    def __init__(self, run: PipelineRun, part: Hooked) -> None:
        super().__init__()
        self.run, self.part = run, part
        self.context = _CacheContextName(part)

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.context.reset()
        return module

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        self.run.before_call(call_timestep(args, kwargs), self.part)
        return args, kwargs


def _attach_clock(denoiser: torch.nn.Module, run: PipelineRun, part: Hooked) -> None:
    """The clock runs before every denoiser call, *outside* any compiled region: its counters and the timestep it
    reads would otherwise be dynamo guards (a recompile per step) and a graph break (``Tensor.item``). A denoiser
    compiled in place (``unet.compile()``) runs the call that compile installed
    (:func:`~flexdiff.utils.diffusers_private.compiled_call`): the clock wraps that; otherwise (plain, or
    ``torch.compile(unet)`` before enable) it is a diffusers hook on the module's own ``forward``."""
    compiled = compiled_call(denoiser)
    if compiled is None:
        if is_compile_wrapper(denoiser):
            # torch.compile's wrapper forwards attribute reads to the module it compiled: without a registry of its
            # own the clock would join that module's registry, inside the compiled region
            ensure_own_hook_registry(denoiser)
        HookRegistry.check_if_exists_or_initialize(denoiser).register_hook(_ClockHook(run, part), CLOCK_HOOK)
        return

    @functools.wraps(compiled)
    def clocked(*args: Any, **kwargs: Any) -> Any:
        run.before_call(call_timestep(args, kwargs), part)
        return compiled(*args, **kwargs)

    clocked.__flexdiff_compiled__ = compiled  # type: ignore[attr-defined]
    set_compiled_call(denoiser, clocked)


def _detach_clock(denoiser: torch.nn.Module) -> None:
    compiled = compiled_call(denoiser)
    if compiled is not None and hasattr(compiled, "__flexdiff_compiled__"):
        set_compiled_call(denoiser, compiled.__flexdiff_compiled__)
    registry = hook_registry(denoiser)
    if registry is not None:
        registry.remove_hook(CLOCK_HOOK, recurse=False)


def flexdiff_solver(schedule: Schedule, scheduler: Any) -> str | None:
    """The flexdiff sampler that must run ``schedule`` inside the pipeline, or None for the pipeline's own scheduler:
    the schedule's sampler when it was made in flexdiff's loop (its binding says ``flexdiff:<sampler>``: the search
    scored it there); ``ddim`` for null steps on a ``DDIMScheduler`` (which takes no custom timesteps) whose last step
    ends at alpha-bar 1 (``set_alpha_to_one``), where flexdiff's DDIM is the same sampler."""
    recorded = schedule.meta.get(KEY)
    bound = str(recorded.get("scheduler", "")) if isinstance(recorded, dict) else ""
    if bound.startswith("flexdiff:"):
        return bound.removeprefix("flexdiff:")
    has_nulls = len(schedule.active_indices) != schedule.T
    if has_nulls and type(scheduler).__name__ == "DDIMScheduler" and scheduler.config.get("set_alpha_to_one", True) and not accepts_custom_timesteps(scheduler):
        return "ddim"
    return None


def accepts_custom_timesteps(scheduler: Any) -> bool:
    """Whether ``scheduler.set_timesteps`` takes ``timesteps=`` (how null steps are dropped in a user's pipeline)."""
    return "timesteps" in inspect.signature(scheduler.set_timesteps).parameters


def _wrap_scheduler(run: PipelineRun) -> None:
    scheduler = run.scheduler
    original_set, original_step = scheduler.set_timesteps, scheduler.step
    name = type(scheduler).__name__

    # functools.wraps keeps the signatures pipelines inspect (`"generator" in signature(scheduler.step)` decides whether
    # the generator is passed at all; `"timesteps" in signature(set_timesteps)` whether custom timesteps are allowed)
    @functools.wraps(original_set)
    def set_timesteps(*args: Any, **kwargs: Any) -> Any:
        # Pipelines with their own clock pass their own timesteps / sigmas (Flux, CogView4, Lumina 2): whatever grid the
        # scheduler sets is checked against the schedule's below
        out = original_set(*args, **kwargs)
        grid, sigmas = scheduler_grid(scheduler), lists_sigmas(scheduler)
        merged = merge_repeats(grid)
        steps = int(getattr(scheduler, "num_inference_steps", None) or len(merged))
        if len(merged) != steps:  # timesteps between the nominal ones (PNDM's Runge-Kutta warm-up, KDPM2's midpoints)
            hint = "set skip_prk_steps=True (Stable Diffusion's PNDM setting)" if name == "PNDMScheduler" else "pick another scheduler"
            raise FlexdiffError(
                f"{name} grid of {len(grid)} timesteps for num_inference_steps={steps}",
                "the schedule's timesteps, each possibly repeated (a step evaluated more than once)",
                hint,
            )
        schedule = run.plan_for(merged)  # another num_inference_steps: a searched schedule's genome, re-expanded
        # a dynamically shifted flow model (Flux, Qwen-Image, SD3.5 ...) shifts the same T positions by each call's
        # resolution: its schedules bind to the positions (and to the scheduler config, in the binding), not to the
        # sigmas of the resolution they were made at
        by_position = is_flow_scheduler(scheduler) and bool(scheduler.config.get("use_dynamic_shifting")) and len(merged) == schedule.T
        if not same_grid(merged, list(schedule.timesteps)) and not by_position:
            raise FlexdiffError(
                f"{name} {'sigmas' if sigmas else 'timesteps'} {merged[0]:g}..{merged[-1]:g} (num_inference_steps={steps})",
                f"the schedule's {'sigmas' if sigmas else 'timesteps'} {schedule.timesteps[0]:g}..{schedule.timesteps[-1]:g} (T = {schedule.T})",
                "make the schedule for this pipeline with flexdiff.pipeline_timesteps(pipe, num_inference_steps)",
            )
        active = [merged[i] for i in schedule.active_indices]  # the grid points this call set, at the schedule's active positions
        if len(active) != schedule.T:  # null steps: the scheduler runs the active grid points only (checked at enable)
            rest = {k: v for k, v in kwargs.items() if k not in ("num_inference_steps", "sigmas", "timesteps")}
            if is_flow_scheduler(scheduler):  # diffusers shifts the sigmas it is given: pass the unshifted ones, so that it runs exactly these
                noise = FlowSchedule.from_scheduler_config(dict(scheduler.config), f"{name} config", mu=kwargs.get("mu"))
                out = original_set(sigmas=noise.unshifted(active), **rest)
            elif sigmas:  # Euler takes the sigmas to run, its terminal one included, and derives their timesteps
                out = original_set(sigmas=[*active, float(scheduler.sigmas[-1])], **rest)
            else:
                out = original_set(timesteps=active, **rest)
        run.start(grid_steps(scheduler_grid(scheduler), active, name))
        return out

    @functools.wraps(original_step)
    def step(*args: Any, **kwargs: Any) -> Any:
        out = original_step(*args, **kwargs)
        run.after_step()
        return out

    scheduler.set_timesteps, scheduler.step = set_timesteps, step
    original_begin = getattr(scheduler, "set_begin_index", None)
    if original_begin is not None:

        @functools.wraps(original_begin)
        def set_begin_index(begin_index: int = 0) -> Any:
            run.check_begin(int(begin_index))
            return original_begin(begin_index)

        scheduler.set_begin_index = set_begin_index
    original_noise = getattr(scheduler, "add_noise", None)
    if original_noise is not None:

        @functools.wraps(original_noise)
        def add_noise(original: Any, noise: Any, timesteps: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(timesteps, torch.Tensor) and timesteps.numel() == 0:  # img2img sliced past the active grid
                run.check_begin(len(run.positions))
            return original_noise(original, noise, timesteps, *args, **kwargs)

        scheduler.add_noise = add_noise


#: the scheduler methods :func:`_wrap_scheduler` shadows on the instance (removed again by disable)
SCHEDULER_WRAPPED = ("set_timesteps", "step", "set_begin_index", "add_noise")
#: the pipeline methods shadowed on the instance while enabled (:meth:`DiffusersPipelineIntegration._own_pipeline`)
PIPELINE_WRAPPED = ("progress_bar", "save_pretrained", "__deepcopy__")


class DiffusersPipelineIntegration(Integration):
    name = "diffusers-pipeline"
    description = (
        "a diffusers pipeline object with a unet or a transformer and a scheduler (DDPM, DDIM, LDM, Stable Diffusion, SDXL, ControlNet; DiT, PixArt, SD3, Flux)"
    )

    def matches(self, obj: Any) -> bool:
        from diffusers import DiffusionPipeline

        return isinstance(obj, DiffusionPipeline)

    def enable(self, obj: Any, schedule: Schedule) -> None:
        pipe = obj
        kind = type(pipe).__name__
        if getattr(pipe, ATTR, None) is not None:
            raise FlexdiffError(kind, "a pipeline without an enabled schedule", "call flexdiff.disable(pipe) first")
        denoisers, scheduler = denoisers_of(pipe), getattr(pipe, "scheduler", None)
        if not denoisers or scheduler is None:
            raise FlexdiffError(kind, "a pipeline with a unet or a transformer, and a scheduler", "pass a diffusers denoising pipeline")
        for _, denoiser in denoisers:
            backbone_of(denoiser)  # a one-line error for a family flexdiff has no backbone for
        original, solver = scheduler, flexdiff_solver(schedule, scheduler)
        if solver is not None:  # the loop the schedule was scored in: flexdiff's sampler, as a diffusers scheduler
            scheduler = FlexdiffScheduler.from_scheduler(original, solver)
            scheduler.grid = list(schedule.timesteps)
        elif len(schedule.active_indices) != schedule.T and not (accepts_custom_timesteps(scheduler) or is_flow_scheduler(scheduler)):
            raise FlexdiffError(
                f"{type(scheduler).__name__} with null steps in {schedule.name or 'the schedule'}",
                "a scheduler whose set_timesteps accepts custom timesteps (DDPM, Euler, DPM-Solver++, LCM, FlowMatch), or DDIM with set_alpha_to_one=True",
                "use a schedule without null steps with this scheduler, or switch the pipeline's scheduler",
            )
        run = PipelineRun(schedule, [], scheduler, replaced=original if scheduler is not original else None)
        try:
            for attr, denoiser in denoisers:
                layout, state = apply_partial_steps(denoiser)
                executor = ScheduleExecutor(None, schedule, layout, state, compiled=is_compiled(denoiser))
                executor.hollow = hollow_replay_safe(pipe)
                run.parts.append(Hooked(attr, denoiser, executor, state))
                _attach_clock(denoiser, run, run.parts[-1])
            _wrap_scheduler(run)
            if run.replaced is not None:
                pipe.scheduler = scheduler
            self._own_pipeline(pipe, run)
        except BaseException:  # nothing half-attached: every hook, wrapper and the swapped scheduler come off again
            for _, denoiser in denoisers:
                _detach_clock(denoiser)
                remove_partial_steps(denoiser)
            for target, names in ((scheduler, SCHEDULER_WRAPPED), (pipe, PIPELINE_WRAPPED)):
                for attr in names:
                    vars(target).pop(attr, None)
            if pipe.scheduler is not original:
                pipe.scheduler = original
            raise
        setattr(pipe, ATTR, run)

    def _own_pipeline(self, pipe: Any, run: PipelineRun) -> None:
        """Instance-level wrappers that keep the enabled state the pipeline's own: every call checks first that the
        hooked denoiser and scheduler are still the pipeline's (``progress_bar`` opens every diffusers denoising loop);
        ``save_pretrained`` saves the plain pipeline (the user's scheduler, no flexdiff class in model_index.json);
        ``copy.deepcopy`` copies the plain pipeline and enables the copy on its own weights (a copy of the hooks would
        call the original's modules: they are closures, which deepcopy shares)."""
        original_bar = pipe.progress_bar

        @functools.wraps(original_bar)
        def progress_bar(*args: Any, **kwargs: Any) -> Any:
            run.check_parts(pipe)
            return original_bar(*args, **kwargs)

        @functools.wraps(pipe.save_pretrained)
        def save_pretrained(*args: Any, **kwargs: Any) -> Any:
            return self._suspended(pipe, lambda: type(pipe).save_pretrained(pipe, *args, **kwargs))

        def deepcopy(memo: dict[int, Any]) -> Any:
            copied = self._suspended(pipe, lambda: copy.deepcopy(pipe, memo))
            self.enable(copied, run.enabled)
            return copied

        vars(pipe).update(progress_bar=progress_bar, save_pretrained=save_pretrained, __deepcopy__=deepcopy)

    def _suspended(self, pipe: Any, action: Any) -> Any:
        """``action()`` on the plain pipeline: the schedule off for it, on again after (a fresh run state)."""
        schedule = getattr(pipe, ATTR).enabled
        self.disable(pipe)
        try:
            return action()
        finally:
            self.enable(pipe, schedule)

    def binding(self, obj: Any) -> Binding:
        """The pipeline's denoiser weights, branches and noise schedule, and its scheduler's class."""
        scheduler = obj.scheduler
        return denoiser_binding(denoiser_of(obj), scheduler_fingerprint(dict(scheduler.config)), type(scheduler).__name__)

    def disable(self, obj: Any) -> None:
        pipe = obj
        run = getattr(pipe, ATTR, None)
        if run is None:
            raise FlexdiffError(type(pipe).__name__, "a pipeline with a schedule enabled by flexdiff.enable", "nothing to disable")
        for attr in SCHEDULER_WRAPPED:
            run.scheduler.__dict__.pop(attr, None)  # the class's own methods show through again
        for attr in PIPELINE_WRAPPED:
            pipe.__dict__.pop(attr, None)
        if run.replaced is not None and pipe.scheduler is run.scheduler:  # a scheduler the user swapped in stays
            pipe.scheduler = run.replaced
        for part in run.parts:  # the modules enable hooked, even if the pipeline's were swapped since
            _detach_clock(part.denoiser)
            remove_partial_steps(part.denoiser)
            part.state.reset()
        delattr(pipe, ATTR)


def pipeline_timesteps(pipe: Any, num_inference_steps: int, **kwargs: Any) -> list[float]:
    """The grid ``pipe``'s scheduler runs for ``num_inference_steps`` (its spacing, offset, ...): what a schedule for
    this pipeline lists as its teacher timesteps (a timestep a scheduler evaluates twice in a row, as Heun and PLMS do,
    once); for a flow-matching scheduler its sigmas (``kwargs``: what the pipeline passes too, e.g. Flux's ``sigmas``
    and ``mu``). The scheduler is left as it was."""
    import copy

    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.__dict__.pop("set_timesteps", None)
    if kwargs.get("sigmas"):  # the pipeline's own sigmas are the grid (Flux): diffusers then takes no step count
        scheduler.set_timesteps(**kwargs)
    else:
        scheduler.set_timesteps(num_inference_steps, **kwargs)
    return merge_repeats(scheduler_grid(scheduler))


register_integration(DiffusersPipelineIntegration())
