"""Euler on the rectified-flow ODE ``dx/ds = v(x, s)``: equals diffusers' ``FlowMatchEulerDiscreteScheduler``."""

from __future__ import annotations

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


@register_sampler("flow-euler", spacing="flow", deterministic=True, noise_kind="flow")
def flow_euler_steps(
    x: torch.Tensor,
    timesteps: Sequence[float],
    noise: FlowSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    grid: Sequence[float] | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Steps:
    """``x_{i+1} = x_i + (s_{i+1} - s_i) v(x_i, s_i)`` over the sigmas ``timesteps`` (then s = 0, the clean image).

    Dropping a sigma (a null step) is one longer Euler step over the gap, exactly what diffusers does given the same
    custom ``sigmas``. Deterministic (``eta`` must be 0); ``grid`` is ignored."""
    if eta != 0:
        raise FlexdiffError(eta, "eta = 0 for flow-euler (a deterministic ODE solver)", "drop --eta")
    sigmas = check_sigmas(timesteps)
    for i, s in enumerate(sigmas):
        velocity = yield x, s, i
        dt = torch.tensor(sigmas[i + 1] if i + 1 < len(sigmas) else 0.0, dtype=torch.float32) - torch.tensor(s, dtype=torch.float32)  # float32, as diffusers
        x = (x + dt * velocity).to(x.dtype)
    return x


flow_euler = whole_loop(flow_euler_steps)
