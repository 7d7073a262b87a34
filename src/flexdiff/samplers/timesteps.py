"""The uniform timestep grids of diffusers' schedulers (``timestep_spacing`` leading, trailing, linspace)."""

from __future__ import annotations

import numpy as np

from flexdiff.errors import FlexdiffError


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
