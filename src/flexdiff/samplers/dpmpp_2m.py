"""DPM-Solver++(2M) (Lu et al. 2022); equals diffusers' DPMSolverMultistepScheduler on uniform grids."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.noise import NoiseSchedule
from flexdiff.samplers._base import (
    NoiseSampler,
    Steps,
    alpha_sigma_lambda,
    check_timesteps,
    register_sampler,
    whole_loop,
)


@register_sampler("dpmpp-2m", spacing="linspace", deterministic=True)
def dpmpp_2m_steps(
    x: torch.Tensor,
    timesteps: Sequence[int],
    noise: NoiseSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    grid: Sequence[int] | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Steps:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2, data prediction, midpoint form as in diffusers).

    The first step and the step to the clean image are first order; every other step uses the previous x0-hat.
    Deterministic: ``eta`` must be 0. Like diffusers' scheduler it never clips x0-hat; ``grid`` is ignored (it solves
    the ODE, not the teacher's discretisation of it).
    """
    if eta != 0:
        raise FlexdiffError(eta, "eta = 0 for dpmpp-2m (a deterministic solver)", "drop --eta or use --sampler ddim")
    ts = check_timesteps(timesteps, noise.num_train_timesteps)
    coefficients = [alpha_sigma_lambda(noise.alpha_bar(t)) for t in ts] + [alpha_sigma_lambda(1.0)]
    return (yield from multistep_2m(x, ts, coefficients, lambda x, eps, i: (x - coefficients[i][1] * eps) / coefficients[i][0]))


dpmpp_2m = whole_loop(dpmpp_2m_steps)


def multistep_2m(
    x: torch.Tensor,
    points: Sequence[float],
    coefficients: Sequence[tuple[float, float, float]],
    data_prediction: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
) -> Steps:
    """DPM-Solver++(2M) over any noise schedule: ``coefficients[i]`` = (alpha_i, sigma_i, lambda_i) of grid point
    ``points[i]`` (the last one the clean end: alpha = 1, sigma = 0), ``data_prediction(x, prediction, i)`` = x0-hat
    from the model's prediction sent for point ``i``.

    ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} (1 - e^{-h}) D`` with ``D`` the first-order x0-hat at the
    first step and at the step to the clean image, ``x0 + (x0 - x0_prev) / (2 r)`` otherwise (r = h_{i-1} / h_i).
    """
    prev_x0: torch.Tensor | None = None
    prev_lambda = 0.0
    steps = len(coefficients) - 1
    for i in range(steps):
        x0 = data_prediction(x, (yield x, points[i], i), i)
        alpha_s, sigma_s, lambda_s = coefficients[i]
        alpha_t, sigma_t, lambda_t = coefficients[i + 1]
        phi = -math.expm1(-(lambda_t - lambda_s)) if math.isfinite(lambda_t) else 1.0  # 1 - e^{-h}
        last = i + 1 == steps
        if prev_x0 is None or last:
            d = x0  # first order (DPM-Solver++ 1 = DDIM)
        else:
            r = (lambda_s - prev_lambda) / (lambda_t - lambda_s)  # r0 = h_{i-1} / h_i
            d = x0 + (0.5 / r) * (x0 - prev_x0)  # D0 + 0.5 * D1, D1 = (m0 - m1) / r0
        x = (sigma_t / sigma_s) * x + alpha_t * phi * d
        prev_x0, prev_lambda = x0, lambda_s
    return x
