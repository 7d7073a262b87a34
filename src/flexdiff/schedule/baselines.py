"""Every baseline as a schedule: the teacher, DDIM-k, DeepCache uniform and non-uniform 1:N."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from flexdiff.errors import FlexdiffError
from flexdiff.samplers import PIPELINE, sampler_info
from flexdiff.schedule.kinds import FORECAST, FULL, NULL, PARTIAL, Step
from flexdiff.schedule.schedule import Schedule


def full(timesteps: Sequence[int], sampler: str = "ddim") -> Schedule:
    """The teacher: every step full."""
    return Schedule(tuple(Step(FULL) for _ in timesteps), tuple(timesteps), sampler, f"full-{len(timesteps)}", {"family": "teacher"})


def check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise FlexdiffError(f"{name}={value}", f"{name} in [{low}, {high}]", "pick a value in that range")


def ddim_k(timesteps: Sequence[int], k: int, sampler: str = "ddim") -> Schedule:
    """DDIM-k: ``k`` evenly spread active (full) steps at indices ``floor(j T / k)``, the rest null. Under a
    flow-matching sampler the same step cutting is named after it (``flow-euler-k``: Euler-k)."""
    T = len(timesteps)
    check_range("k", k, 1, T)
    active = {j * T // k for j in range(k)}
    steps = tuple(Step(FULL) if i in active else Step(NULL) for i in range(T))
    prefix = sampler if sampler != PIPELINE and sampler_info(sampler).noise_kind == "flow" else "ddim"
    return Schedule(steps, tuple(timesteps), sampler, f"{prefix}-{k}", {"family": "ddim", "k": k})


def deepcache_uniform(timesteps: Sequence[int], interval: int, branch: int = 0, sampler: str = "ddim", forecast: bool = False) -> Schedule:
    """DeepCache uniform 1:N (Ma et al. 2024): full at 0, N, 2N, ...; the N - 1 steps between are partial.
    ``forecast``: the steps between forecast the reused feature from the last two full steps (TaylorSeer's static
    form with flexdiff's forecast step; ``forecast-N<N>-b<branch>``, family ``forecast``)."""
    T = len(timesteps)
    check_range("interval", interval, 1, T)
    between = Step(FORECAST if forecast else PARTIAL, branch)
    steps = tuple(Step(FULL) if i % interval == 0 else between for i in range(T))
    family = "forecast" if forecast else "deepcache"
    return Schedule(steps, tuple(timesteps), sampler, f"{family}-N{interval}-b{branch}", {"family": family, "interval": interval, "branch": branch})


def nonuniform_full_indices(T: int, n_full: int, center: int, power: float) -> list[int]:
    """``n_full`` full-step indices in [0, T), denser around ``center``: x uniform on [-c^(1/p), (T-1-c)^(1/p)], index = c + sign(x)|x|^p.

    Like DeepCache's non-uniform 1:N; when rounding merges indices the power is lowered by 0.02 until they are distinct.
    """
    check_range("center", center, 0, T - 1)
    if not 1 <= power < math.inf:  # p < 1 would thin the steps around the centre, the opposite of the method (and 0 divides)
        raise FlexdiffError(f"--power {power}", "a power >= 1 (1 = uniform; DeepCache uses about 1.4)", "pass e.g. --power 1.4")
    n_full = min(n_full, T)
    p = power
    while True:
        x = np.linspace(-(center ** (1 / p)), (T - 1 - center) ** (1 / p), n_full)
        idx = sorted({0, *(int(round(center + math.copysign(abs(v) ** p, v))) for v in x)})
        if len(idx) >= n_full or p <= 1.0:
            return idx[:n_full] if len(idx) > n_full else idx
        p = max(1.0, p - 0.02)


def deepcache_nonuniform(timesteps: Sequence[int], interval: int, branch: int = 0, center: int = 15, power: float = 1.4, sampler: str = "ddim") -> Schedule:
    """DeepCache non-uniform 1:N: ceil(T / N) full steps clustered around step ``center`` with ``power``; the rest partial."""
    T = len(timesteps)
    check_range("interval", interval, 1, T)
    fulls = set(nonuniform_full_indices(T, math.ceil(T / interval), center, power))
    steps = tuple(Step(FULL) if i in fulls else Step(PARTIAL, branch) for i in range(T))
    meta = {"family": "deepcache-nonuniform", "interval": interval, "branch": branch, "center": center, "power": power}
    return Schedule(steps, tuple(timesteps), sampler, f"deepcache-nu-N{interval}-b{branch}-c{center}", meta)
