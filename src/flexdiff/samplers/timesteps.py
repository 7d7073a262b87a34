"""The uniform timestep grids of diffusers' schedulers (``timestep_spacing`` leading, trailing, linspace)."""

from __future__ import annotations

import numpy as np

from flexdiff.errors import FlexdiffError

SPACINGS = ("leading", "trailing", "linspace")


def _grid(n: int, steps: int, spacing: str) -> list[int]:
    if spacing == "leading":
        ts = (np.arange(steps) * (n // steps)).round()[::-1]
    elif spacing == "trailing":  # diffusers' float arange (its ties round as diffusers' do), its first `steps` points only
        ts = (np.round(np.arange(n, 0, -n / steps)) - 1)[:steps]
    else:
        ts = np.linspace(0, n - 1, steps + 1).round()[::-1][:-1]
    return [int(t) for t in ts]


def check_steps(num_train_timesteps: int, steps: object, spacing: str = "leading") -> None:
    """Refuse, before any image is drawn, a step count whose grid holds no step or repeats a timestep: more steps
    than training timesteps, or linspace spacing at ``steps = T`` (its ``T + 1`` points over ``[0, T - 1]`` round two
    onto one timestep). A sampler stepping from t to t again divides by zero or stalls; the grid used to be refused
    only once sampling had started, with every timestep in the message."""
    if spacing not in SPACINGS:
        raise FlexdiffError(spacing, f"timestep spacing {', '.join(SPACINGS[:-1])} or {SPACINGS[-1]}", "pick one of those")
    n = num_train_timesteps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= n:
        raise FlexdiffError(f"--steps {steps}", f"a number of steps in [1, {n}] (the model has {n} training timesteps)", f"pass e.g. --steps {min(50, n)}")
    if len(set(_grid(n, steps, spacing))) < steps:
        most = next(k for k in range(steps - 1, 0, -1) if len(set(_grid(n, k, spacing))) == k)
        raise FlexdiffError(
            f"--steps {steps}",
            f"at most {most} steps: {spacing} spacing over {n} training timesteps repeats a timestep beyond",
            f"pass --steps {most} or fewer",
        )


def uniform_timesteps(num_train_timesteps: int, steps: int, spacing: str = "leading") -> list[int]:
    """The ``steps`` uniform timesteps diffusers' schedulers use, decreasing (``spacing`` as in diffusers), each once.

    leading: ``[k * (T // steps)]`` (DDIMScheduler default); trailing: ``round(T - k * T / steps) - 1``;
    linspace: ``round(linspace(0, T - 1, steps + 1))[:0:-1]`` (DPMSolverMultistepScheduler default). Trailing takes
    only the first ``steps`` points of diffusers' float ``arange``: for some counts (61 of 1000) float error adds a
    point ``steps + 1``, timestep -1.
    """
    check_steps(num_train_timesteps, steps, spacing)
    return _grid(num_train_timesteps, steps, spacing)
