"""Samplers: small pure functions over an explicit decreasing list of timesteps.

A sampler never sees step types. It receives the *active* timesteps (null steps already dropped, so the sampler
jumps over them and sees the true step sizes), optionally the teacher's ``grid`` they were taken from, and a
``denoise(x, t, i)`` callable returning the noise prediction epsilon-hat at timestep ``t`` for the ``i``-th active
step. After the last timestep the trajectory ends at the clean image (alpha-bar = 1), as diffusers does with
``set_alpha_to_one=True`` / ``final_sigmas_type="zero"``. On uniform grids ``ddim`` and ``dpmpp_2m`` equal diffusers'
``DDIMScheduler`` and ``DPMSolverMultistepScheduler`` (tests); ``ddim_2m`` is ours (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from flexdiff.errors import FlexdiffError
from flexdiff.noise import NoiseSchedule

Denoise = Callable[[torch.Tensor, int, int], torch.Tensor]
"""``denoise(x_t, t, i) -> eps_hat``: ``x_t`` is (N, C, H, W), ``t`` the timestep, ``i`` the active-step index."""


#: The extra noise of active step ``i`` (shaped like the batch), for stochastic samplers (k-diffusion's noise_sampler).
NoiseSampler = Callable[[int], torch.Tensor]


class Sampler(Protocol):
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


def check_eta(eta: float) -> None:
    """DDIM's stochasticity must lie in [0, 1] (eq. 16): beyond 1 sigma_t^2 exceeds 1 - alpha_prev and the direction
    term turns imaginary; NaN would silently give NaN images."""
    if not 0 <= eta <= 1:
        raise FlexdiffError(f"--eta {eta}", "eta in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like)", "use 0 for deterministic DDIM")


def ddim(
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
    """DDIM (Song et al. 2021, eq. 12) from ``timesteps[i]`` to ``timesteps[i + 1]`` (the clean image after the last).

    ``eta = 0`` is deterministic; ``eta = 1`` is DDPM-like. Extra noise for ``eta > 0`` is ``noise_sampler(i)`` at
    step ``i`` when given, else drawn from ``generator`` with ``torch.randn(x.shape, generator=generator)``, one draw per
    step (as diffusers' DDIMScheduler does). ``grid`` is ignored: DDIM on a subset of a
    grid is DDIM on that subset.
    """
    check_eta(eta)
    ts = check_timesteps(timesteps, noise.num_train_timesteps)
    for i, t in enumerate(ts):
        eps = denoise(x, t, i)
        a_t = noise.alpha_bar(t)
        a_prev = noise.alpha_bar(ts[i + 1] if i + 1 < len(ts) else None)
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5  # eq. 12, "predicted x0"
        if noise.clip_sample:
            x0 = x0.clamp(-noise.clip_sample_range, noise.clip_sample_range)
        std = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5  # eq. 16, sigma_t(eta)
        x = a_prev**0.5 * x0 + (1 - a_prev - std**2) ** 0.5 * eps  # eq. 12, "direction pointing to x_t"
        if eta > 0:
            z = noise_sampler(i) if noise_sampler is not None else torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = x + std * z.to(x.device, x.dtype)
        if callback is not None:
            callback(i)
    return x


def _lambda(a: float) -> tuple[float, float, float]:
    """(alpha_t, sigma_t, lambda_t = log alpha_t - log sigma_t) for alpha-bar ``a`` (DPM-Solver, Lu et al. 2022)."""
    if a >= 1.0:
        return 1.0, 0.0, math.inf
    return a**0.5, (1 - a) ** 0.5, 0.5 * math.log(a / (1 - a))


def dpmpp_2m(
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
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2, data prediction, midpoint form as in diffusers).

    The first step and the step to the clean image are first order; every other step uses the previous x0-hat.
    Deterministic: ``eta`` must be 0. Like diffusers' scheduler it never clips x0-hat; ``grid`` is ignored (it solves
    the ODE, not the teacher's discretisation of it).
    """
    if eta != 0:
        raise FlexdiffError(eta, "eta = 0 for dpmpp-2m (a deterministic solver)", "drop --eta or use --sampler ddim")
    ts = check_timesteps(timesteps, noise.num_train_timesteps)
    prev_x0: torch.Tensor | None = None
    prev_lambda = 0.0
    for i, t in enumerate(ts):
        eps = denoise(x, t, i)
        alpha_s, sigma_s, lambda_s = _lambda(noise.alpha_bar(t))
        alpha_t, sigma_t, lambda_t = _lambda(noise.alpha_bar(ts[i + 1] if i + 1 < len(ts) else None))
        x0 = (x - sigma_s * eps) / alpha_s
        phi = -math.expm1(-(lambda_t - lambda_s)) if math.isfinite(lambda_t) else 1.0  # 1 - e^{-h}
        last = i + 1 == len(ts)
        if prev_x0 is None or last:
            d = x0  # first order (DPM-Solver++ 1 = DDIM)
        else:
            r = (lambda_s - prev_lambda) / (lambda_t - lambda_s)  # r0 = h_{i-1} / h_i
            d = x0 + (0.5 / r) * (x0 - prev_x0)  # D0 + 0.5 * D1, D1 = (m0 - m1) / r0
        x = (sigma_t / sigma_s) * x + alpha_t * phi * d
        prev_x0, prev_lambda = x0, lambda_s
        if callback is not None:
            callback(i)
    return x


def teacher_error_share(grid: Sequence[int], start: int, stop: int, noise: NoiseSchedule) -> float:
    """The share ``c = 1 - sum(h_j^2) / H^2`` of a first-order step's leading error that DDIM on ``grid`` does not make.

    One DDIM step over ``H = lambda(stop) - lambda(start)`` (log-SNR, DPM-Solver's variable) errs by about
    ``alpha * H^2 / 2 * dx0/dlambda``; the teacher's own DDIM sub-steps ``h_j`` between the two timesteps err by
    ``alpha * sum(h_j^2) / 2 * dx0/dlambda``. DPM-Solver++(2M)'s correction removes ``alpha * H^2 / 2 * dx0/dlambda``,
    so scaled by ``c`` it leaves exactly the teacher's error. ``c = 0`` when the step is one of the grid's own,
    ``1 - 1/m`` for ``m`` equal sub-steps.
    """
    if start not in grid or stop not in grid:
        raise FlexdiffError((start, stop), f"timesteps of the teacher grid {list(grid)}", "take the active timesteps from the grid passed as grid")
    sub = list(grid[grid.index(start) : grid.index(stop) + 1])
    if len(sub) <= 2:
        return 0.0  # the grid's own step (exactly 0, so ddim-2m stays bit-identical to DDIM there)
    lam = [_lambda(noise.alpha_bar(t))[2] for t in sub]
    h = [b - a for a, b in zip(lam, lam[1:])]
    return 1.0 - sum(x * x for x in h) / sum(h) ** 2


def ddim_2m(
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
    """DDIM on the active timesteps, each step that skips points of the teacher's ``grid`` corrected to the teacher's error.

    Why: a schedule is scored against the DDIM teacher on ``grid`` (rFID), and the teacher is itself a discretisation,
    not the exact ODE. Plain DDIM over a skipped stretch errs by about twice (for two sub-steps) the teacher's error there;
    DPM-Solver++(2M) removes that error altogether and so lands elsewhere than the teacher too (and never clips x0-hat,
    which DDIM does under ``clip_sample``). This solver adds DPM-Solver++(2M)'s second-order term (Lu et al. 2022, Alg. 2)
    scaled by :func:`teacher_error_share`, on DDIM's (clipped) x0-hat: where the schedule keeps the grid's steps it *is*
    DDIM (c = 0), and where it skips it keeps the teacher's leading error instead of doubling it. Without ``grid`` the
    active timesteps are the grid, i.e. plain DDIM. The first step (no earlier x0-hat) and the step to the clean image
    are plain DDIM. Deterministic: ``eta`` must be 0.
    """
    if eta != 0:
        raise FlexdiffError(eta, "eta = 0 for ddim-2m (a deterministic solver)", "drop --eta or use --sampler ddim")
    ts = check_timesteps(timesteps, noise.num_train_timesteps)
    teacher = check_timesteps(grid, noise.num_train_timesteps) if grid is not None else ts
    prev_x0: torch.Tensor | None = None
    prev_lambda = 0.0
    for i, t in enumerate(ts):
        eps = denoise(x, t, i)
        stop = ts[i + 1] if i + 1 < len(ts) else None
        alpha_s, sigma_s, lambda_s = _lambda(noise.alpha_bar(t))
        alpha_t, sigma_t, lambda_t = _lambda(noise.alpha_bar(stop))
        x0 = (x - sigma_s * eps) / alpha_s
        if noise.clip_sample:
            x0 = x0.clamp(-noise.clip_sample_range, noise.clip_sample_range)
        step = alpha_t * x0 + sigma_t * eps  # DDIM, eq. 12 with eta = 0 (eps not re-derived from the clipped x0, as diffusers)
        if prev_x0 is not None and stop is not None:
            c = teacher_error_share(teacher, t, stop, noise)
            if c > 0:
                h = lambda_t - lambda_s
                r = (lambda_s - prev_lambda) / h  # r0 = h_{i-1} / h_i
                step = step + c * alpha_t * -math.expm1(-h) * (0.5 / r) * (x0 - prev_x0)  # c * alpha_t (1 - e^-h) D1 / 2
        x = step
        prev_x0, prev_lambda = x0, lambda_s
        if callback is not None:
            callback(i)
    return x


def same_trajectory(a: str, b: str, active: Sequence[int], grid: Sequence[int]) -> bool:
    """Whether samplers ``a`` and ``b`` follow one trajectory over the ``active`` timesteps of ``grid``.

    ddim-2m is DDIM wherever every step it corrects (each but the first and the last) is one of the grid's own, since
    its correction share is then 0 — e.g. DeepCache's plans, which have no null steps. Lets a search skip scoring a plan
    twice for the same images.
    """
    if a == b:
        return True
    if {a, b} != {"ddim", "ddim-2m"}:
        return False
    at = [list(grid).index(t) for t in active]
    return all(q - p == 1 for p, q in zip(at[1:-1], at[2:]))


SAMPLERS: dict[str, Sampler] = {"ddim": ddim, "dpmpp-2m": dpmpp_2m, "ddim-2m": ddim_2m}
#: diffusers' default ``timestep_spacing`` of the scheduler each sampler reproduces (ddim-2m: DDIM's grid).
DEFAULT_SPACING = {"ddim": "leading", "dpmpp-2m": "linspace", "ddim-2m": "leading"}


def get_sampler(name: str, fix: str = "pick one with --sampler") -> Sampler:
    """The sampler called ``name``; ``fix`` says where to change it (an option, or the field of a file)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise FlexdiffError(repr(name), f"a sampler in {{{', '.join(SAMPLERS)}}}", fix) from None


def uniform_timesteps(num_train_timesteps: int, steps: int, spacing: str = "leading") -> list[int]:
    """The ``steps`` uniform timesteps diffusers' schedulers use, decreasing (``spacing`` as in diffusers).

    leading: ``[k * (T // steps)]`` (DDIMScheduler default); trailing: ``round(T - k * T / steps) - 1``;
    linspace: ``round(linspace(0, T - 1, steps + 1))[:0:-1]`` (DPMSolverMultistepScheduler default).
    """
    if not isinstance(steps, int) or steps < 1 or steps > num_train_timesteps:
        raise FlexdiffError(steps, f"a number of steps in [1, {num_train_timesteps}]", "pass e.g. --steps 50")
    n = num_train_timesteps
    if spacing == "leading":
        ts = (np.arange(steps) * (n // steps)).round()[::-1]
    elif spacing == "trailing":
        ts = np.round(np.arange(n, 0, -n / steps)) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, n - 1, steps + 1).round()[::-1][:-1]
    else:
        raise FlexdiffError(spacing, "timestep spacing leading, trailing or linspace", "pick one of those")
    return [int(t) for t in ts]
