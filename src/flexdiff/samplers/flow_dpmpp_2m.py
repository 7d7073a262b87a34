"""DPM-Solver++(2M) on rectified flow: equals diffusers' ``DPMSolverMultistepScheduler`` with ``use_flow_sigmas``
and ``prediction_type="flow_prediction"`` given the same sigmas (the second-order solver of Sana and Wan)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.noise import FlowSchedule
from flexdiff.samplers._base import (
    NoiseSampler,
    Steps,
    check_sigmas,
    register_sampler,
    whole_loop,
)
from flexdiff.samplers.dpmpp_2m import multistep_2m


def flow_coefficients(s: float) -> tuple[float, float, float]:
    """(alpha, sigma, lambda = log alpha - log sigma) of rectified flow at sigma ``s``: ``x_s = (1 - s) x0 + s eps``."""
    if s <= 0:
        return 1.0, 0.0, math.inf
    return 1.0 - s, s, math.log(1.0 - s) - math.log(s) if s < 1 else -math.inf


@register_sampler("flow-dpmpp-2m", spacing="flow", deterministic=True, noise_kind="flow")
def flow_dpmpp_2m_steps(
    x: torch.Tensor,
    timesteps: Sequence[float],
    noise: FlowSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    grid: Sequence[float] | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Steps:
    """DPM-Solver++(2M) (Lu et al. 2022) with the data prediction ``x0 = x - s v`` over the sigmas ``timesteps``.

    The first step and the step to the clean image are first order (there: Euler, as the first-order DPM-Solver++
    step of rectified flow is ``x + (s' - s) v``). Deterministic (``eta`` must be 0); ``grid`` is ignored."""
    if eta != 0:
        raise FlexdiffError(eta, "eta = 0 for flow-dpmpp-2m (a deterministic ODE solver)", "drop --eta")
    sigmas = check_sigmas(timesteps)
    coefficients = [flow_coefficients(s) for s in sigmas] + [flow_coefficients(0.0)]
    return (yield from multistep_2m(x, sigmas, coefficients, lambda x, velocity, i: x - sigmas[i] * velocity))


flow_dpmpp_2m = whole_loop(flow_dpmpp_2m_steps)
