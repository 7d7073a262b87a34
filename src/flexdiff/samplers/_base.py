"""Samplers: small generators over an explicit decreasing list of timesteps, the registry and what every sampler shares.

A sampler never sees step types. It receives the *active* timesteps (null steps already dropped, so the sampler
jumps over them and sees the true step sizes) and optionally the teacher's ``grid`` they were taken from. It is a
generator (:data:`Steps`): for each active step ``i`` it yields ``(x_t, t, i)``, the input of that step's network
call, receives the prediction it integrates through ``send()`` (epsilon-hat for alpha-bar noise, the velocity for
flow matching) and, after the last timestep, returns the clean image (alpha-bar = 1), as diffusers does with
``set_alpha_to_one=True`` / ``final_sigmas_type="zero"``.

Why generators: the same solver code is driven two ways without a copy or a thread. :func:`run_steps` drives it over
a ``denoise(x, t, i)`` callable (flexdiff's own loop: ``generate``, trajectory reuse, the search); a diffusers
scheduler (:class:`~flexdiff.integrations.flexdiff_scheduler.FlexdiffScheduler`) drives it one ``step()`` call at a
time, in the caller's thread, so the caller's grad / autocast state and exceptions stay the caller's. Each module
registers its generator (:func:`register_sampler`: its diffusers timestep spacing, whether it is deterministic); the
contract tests run for every registered sampler. On uniform grids ``ddim`` and ``dpmpp_2m`` equal diffusers'
``DDIMScheduler`` and ``DPMSolverMultistepScheduler`` (tests); ``ddim_2m`` is ours (see its docstring).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.noise import NoiseSchedule
from flexdiff.utils.registry import Registry

Denoise = Callable[[torch.Tensor, int, int], torch.Tensor]
"""``denoise(x_t, t, i) -> eps_hat``: ``x_t`` is (N, C, H, W), ``t`` the timestep, ``i`` the active-step index."""


#: The extra noise of active step ``i`` (shaped like the batch), for stochastic samplers (k-diffusion's noise_sampler).
NoiseSampler = Callable[[int], torch.Tensor]


Steps = Generator[tuple[torch.Tensor, float, int], torch.Tensor, torch.Tensor]
"""One sampling run: yields ``(x_t, t, i)`` per active step, is sent the model's prediction there, returns x_0."""


class SamplerSteps(Protocol):
    """What a sampler module defines and registers: the generator of one run from ``x`` over ``timesteps``."""

    def __call__(
        self,
        x: torch.Tensor,
        timesteps: Sequence[float],
        noise: NoiseSchedule,
        *,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        grid: Sequence[float] | None = None,
        noise_sampler: NoiseSampler | None = None,
    ) -> Steps: ...


class Sampler(Protocol):
    """The whole-loop form of a sampler (:func:`whole_loop`): ``denoise`` called at every active step."""

    def __call__(
        self,
        denoise: Denoise,
        x: torch.Tensor,
        timesteps: Sequence[int],
        noise: NoiseSchedule,
        *,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        callback: Callable[[int], None] | None = None,
        grid: Sequence[int] | None = None,
        noise_sampler: NoiseSampler | None = None,
    ) -> torch.Tensor: ...


def run_steps(steps: Steps, denoise: Denoise, callback: Callable[[int], None] | None = None) -> torch.Tensor:
    """Drive a sampler run over ``denoise``: each ``(x_t, t, i)`` it yields is answered with ``denoise(x_t, t, i)``;
    ``callback(i)`` after step ``i``'s update. The run is closed whatever happens (an exception in ``denoise``)."""
    try:
        request = next(steps)  # the sampler's checks (timesteps, eta) run here, before any network call
        while True:
            x, t, i = request
            prediction = denoise(x, t, i)
            try:
                request = steps.send(prediction)
            except StopIteration as end:
                if callback is not None:
                    callback(i)
                return end.value
            if callback is not None:
                callback(i)
    finally:
        steps.close()


def whole_loop(make_steps: SamplerSteps) -> Sampler:
    """The whole-loop function of a sampler generator: ``fn(denoise, x, timesteps, noise, ..., callback=...)``."""

    @functools.wraps(make_steps)
    def sample(
        denoise: Denoise,
        x: torch.Tensor,
        timesteps: Sequence[int],
        noise: NoiseSchedule,
        *,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        callback: Callable[[int], None] | None = None,
        grid: Sequence[int] | None = None,
        noise_sampler: NoiseSampler | None = None,
    ) -> torch.Tensor:
        return run_steps(make_steps(x, timesteps, noise, eta=eta, generator=generator, grid=grid, noise_sampler=noise_sampler), denoise, callback)

    return sample


def check_timesteps(timesteps: Sequence[int], num_train_timesteps: int) -> list[int]:
    """Validate a timestep list: non-empty, strictly decreasing integers in ``[0, num_train_timesteps)``."""
    ts = [int(t) for t in timesteps]
    if not ts:
        raise FlexdiffError("[]", "at least one timestep", "pass a non-empty decreasing list")
    if any(b >= a for a, b in zip(ts, ts[1:])):
        raise FlexdiffError(ts, "strictly decreasing timesteps", "sort them from noisy to clean without repeats")
    if ts[0] >= num_train_timesteps or ts[-1] < 0:
        raise FlexdiffError(ts, f"timesteps in [0, {num_train_timesteps})", "use the model's training timestep range")
    return ts


def check_sigmas(sigmas: Sequence[float]) -> list[float]:
    """Validate a flow-matching grid: non-empty, strictly decreasing sigmas in (0, 1] (the terminal 0 is implied)."""
    ss = [float(s) for s in sigmas]
    if not ss:
        raise FlexdiffError("[]", "at least one sigma", "pass a non-empty decreasing list")
    if any(b >= a for a, b in zip(ss, ss[1:])):
        raise FlexdiffError(ss, "strictly decreasing sigmas", "sort them from noisy to clean without repeats")
    if ss[0] > 1 or ss[-1] <= 0:
        raise FlexdiffError(ss, "sigmas in (0, 1]", "use the model's flow-matching sigmas")
    return ss


def check_eta(eta: float) -> None:
    """DDIM's stochasticity must lie in [0, 1] (eq. 16): beyond 1 sigma_t^2 exceeds 1 - alpha_prev and the direction
    term turns imaginary; NaN would silently give NaN images."""
    if not 0 <= eta <= 1:
        raise FlexdiffError(f"--eta {eta}", "eta in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like)", "use 0 for deterministic DDIM")


def alpha_sigma_lambda(a: float) -> tuple[float, float, float]:
    """(alpha_t, sigma_t, lambda_t = log alpha_t - log sigma_t) for alpha-bar ``a`` (DPM-Solver, Lu et al. 2022)."""
    if a >= 1.0:
        return 1.0, 0.0, math.inf
    return a**0.5, (1 - a) ** 0.5, 0.5 * math.log(a / (1 - a))


@dataclass(frozen=True)
class SamplerInfo:
    """A registered sampler and what the rest of flexdiff needs to know about it."""

    name: str
    #: the generator of one run (what the module registers; :func:`run_steps` or a scheduler's ``step()`` drives it)
    steps: SamplerSteps
    #: diffusers' default ``timestep_spacing`` of the scheduler it reproduces: the teacher's grid for ``--steps``.
    spacing: str
    #: True when ``eta`` must be 0 (an ODE solver).
    deterministic: bool
    #: Another sampler this one follows step for step wherever every step it corrects (each but the first and the
    #: last) is one of the grid's own (ddim-2m is DDIM there): lets a search skip scoring a plan twice.
    same_on_grid_as: str | None = None
    #: The noise-schedule kind it integrates (:mod:`flexdiff.noise`): "alpha_bar" (integer timesteps, epsilon-hat)
    #: or "flow" (sigmas, the velocity).
    noise_kind: str = "alpha_bar"

    @property
    def fn(self) -> Sampler:
        """The whole-loop form (:func:`whole_loop`)."""
        return whole_loop(self.steps)


SAMPLERS: Registry[SamplerInfo] = Registry("a sampler", "pick one with --sampler")


def register_sampler(
    name: str, *, spacing: str, deterministic: bool, same_on_grid_as: str | None = None, noise_kind: str = "alpha_bar"
) -> Callable[[SamplerSteps], SamplerSteps]:
    """Decorator: make a sampler generator available as ``--sampler name`` (and to schedules, the search, the report,
    and :class:`~flexdiff.integrations.flexdiff_scheduler.FlexdiffScheduler`)."""

    def decorate(make_steps: SamplerSteps) -> SamplerSteps:
        SAMPLERS.register(name, SamplerInfo(name, make_steps, spacing, deterministic, same_on_grid_as, noise_kind))
        return make_steps

    return decorate


def sampler_info(name: str, fix: str = "pick one with --sampler") -> SamplerInfo:
    return SAMPLERS.get(name, fix)


def get_sampler(name: str, fix: str = "pick one with --sampler") -> Sampler:
    """The sampler called ``name``, whole-loop form; ``fix`` says where to change it (an option, or the field of a file)."""
    return SAMPLERS.get(name, fix).fn


#: Not a function of this package: the model folder's own diffusers scheduler, run by the pipeline's own ``__call__``
#: (:mod:`flexdiff.either_loop`). Valid wherever a sampler name is (options, schedule files); flexdiff's pure samplers
#: cannot stand in for it because every diffusers scheduler has its own spacing, offset and solver.
PIPELINE = "pipeline"


#: ``--sampler auto`` (the CLI's default): the model's noise kind picks the sampler, :data:`DEFAULT_SAMPLERS`
AUTO = "auto"
#: The sampler of each noise kind when none is named: DDIM (the papers' teacher) and flow-matching Euler (what
#: ``FlowMatchEulerDiscreteScheduler`` does), so ``--model builtin:digits-dit`` needs no ``--sampler``.
DEFAULT_SAMPLERS = {"alpha_bar": "ddim", "flow": "flow-euler"}


def resolve_sampler(name: str, noise_kind: str) -> str:
    """``name``, or the default sampler of ``noise_kind`` for :data:`AUTO`."""
    return DEFAULT_SAMPLERS[noise_kind] if name == AUTO else name


def check_sampler(name: str, fix: str = "pick one with --sampler", auto: bool = False) -> None:
    """A one-line error unless ``name`` is a registered sampler or :data:`PIPELINE` (or, with ``auto``, :data:`AUTO`)."""
    if name != PIPELINE and not (auto and name == AUTO):
        SAMPLERS.get(name, f"{fix} (or {PIPELINE}: the model folder's own scheduler{f', or {AUTO}: the model picks' if auto else ''})")


def sampler_names(noise_kind: str | None = None) -> list[str]:
    """The registered samplers (flexdiff's own loop; :data:`PIPELINE` is not one of them), of one noise kind if given."""
    return [n for n in SAMPLERS.names() if noise_kind is None or SAMPLERS.get(n).noise_kind == noise_kind]


def check_sampler_for(name: str, noise_kind: str, where: object = "--sampler") -> None:
    """A one-line error when sampler ``name`` integrates another noise-schedule kind than the model's."""
    if name != PIPELINE and sampler_info(name).noise_kind != noise_kind:
        raise FlexdiffError(
            f"{where} {name}",
            f"a sampler for this model's {noise_kind.replace('_', '-')} noise schedule ({', '.join(sampler_names(noise_kind))})",
            f"pick one of those, e.g. --sampler {sampler_names(noise_kind)[0]}",
        )


def same_trajectory(a: str, b: str, active: Sequence[int], grid: Sequence[int]) -> bool:
    """Whether samplers ``a`` and ``b`` follow one trajectory over the ``active`` timesteps of ``grid``.

    True when they are one sampler, or when one is registered as following the other wherever every step it corrects
    (each but the first and the last) is one of the grid's own — e.g. ddim-2m and DDIM on DeepCache's plans, which
    have no null steps.
    """
    if a == b:
        return True
    ia, ib = sampler_info(a), sampler_info(b)
    if ia.same_on_grid_as != b and ib.same_on_grid_as != a:
        return False
    at = [list(grid).index(t) for t in active]
    return all(q - p == 1 for p, q in zip(at[1:-1], at[2:]))
