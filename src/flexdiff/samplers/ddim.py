"""DDIM (Song et al. 2021): the teacher's sampler of the DDPM / DDIM / LDM / SD family; equals diffusers' DDIMScheduler."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flexdiff.noise import NoiseSchedule
from flexdiff.samplers._base import (
    NoiseSampler,
    Steps,
    check_eta,
    check_timesteps,
    register_sampler,
    whole_loop,
)


@register_sampler("ddim", spacing="leading", deterministic=False)
def ddim_steps(
    x: torch.Tensor,
    timesteps: Sequence[int],
    noise: NoiseSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    grid: Sequence[int] | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Steps:
    """DDIM (Song et al. 2021, eq. 12) from ``timesteps[i]`` to ``timesteps[i + 1]`` (the clean image after the last).

    ``eta = 0`` is deterministic; ``eta = 1`` is DDPM-like. Extra noise for ``eta > 0`` is ``noise_sampler(i)`` at
    step ``i`` when given, else drawn from ``generator`` with ``torch.randn(x.shape, generator=generator)``, one draw per
    step (as diffusers' DDIMScheduler does). ``grid`` is ignored: DDIM on a subset of a
    grid is DDIM on that subset.
    """
    check_eta(eta)
    ts = check_timesteps(timesteps, noise.num_train_timesteps)
    for i, t in enumerate(ts):
        eps = yield x, t, i
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
    return x


ddim = whole_loop(ddim_steps)
