"""Exact trajectory reuse: a schedule whose first ``k`` steps equal those of an already-run schedule (the teacher, or
an evaluated parent: an evolutionary child usually changes one segment) starts from that run instead of from noise.

What is stored is each run's denoiser output at every active step, per batch (``(B, C, H, W)`` each: ``n x active
steps x C x H x W`` floats per schedule). A new run with the same sampler, grid and batches, whose steps equal a
stored run's up to teacher step ``k``, is driven through the same sampler from the same noise, but at the active
steps before ``k`` the stored outputs are returned instead of calling the network; the sampler's arithmetic (its
multistep history included) therefore reaches exactly the stored run's state at ``k``, bit for bit. The executor is
still told every step (the positions of full steps, which forecast factors need), and the full steps whose recordings
the steps from ``k`` on reuse are computed for real: the last full step before ``k`` (it fills the cache partial
steps replay) and, when the schedule forecasts, the one before it (a forecast extrapolates from the last two). A full
step computed for real returns what was stored (same input, same batch), so the trajectory is unchanged.

The store is bounded in bytes (``max_bytes``; least recently used runs go first) and lives in one process.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from flexdiff.samplers import Denoise
from flexdiff.schedule import FORECAST, FULL, Schedule

#: the default bound of a store: 512 MiB
DEFAULT_MAX_BYTES = 512 * 2**20


@dataclass
class StoredRun:
    """One finished run: its schedule, the batch bounds it ran in and, per batch, the output of every active step."""

    schedule: Schedule
    bounds: tuple[tuple[int, int], ...]
    outputs: list[list[torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for batch in self.outputs for t in batch)


def common_prefix(a: Schedule, b: Schedule) -> int:
    """Teacher steps the two schedules share from the start (0 when their sampler or grid differ)."""
    if a.sampler != b.sampler or tuple(a.timesteps) != tuple(b.timesteps):
        return 0
    k = 0
    for x, y in zip(a.steps, b.steps):
        if x != y:
            break
        k += 1
    return k


@dataclass(frozen=True)
class Plan:
    """How a run reuses a stored one: active steps ``< replay_until`` come from ``source`` except those in ``real``."""

    source: StoredRun
    replay_until: int  # active-step index of teacher step k
    real: frozenset[int]  # active-step indices of the full steps computed anyway

    def saved(self) -> int:
        """Active steps per image whose network call is skipped."""
        return self.replay_until - len(self.real)


def plan_for(schedule: Schedule, source: StoredRun, k: int) -> Plan:
    """The replay of ``source`` for ``schedule`` sharing its first ``k`` teacher steps (see the module docstring)."""
    active = schedule.active_indices
    until = sum(1 for i in active if i < k)
    fulls = [a for a, i in enumerate(active[:until]) if schedule.steps[i].kind == FULL]
    forecasts = any(s.kind == FORECAST for s in schedule.steps[k:])
    return Plan(source, until, frozenset(fulls[-2:] if forecasts else fulls[-1:]))


class TrajectoryStore:
    """Runs of this process, for :meth:`plan` to find the one sharing the longest prefix with a new schedule."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.runs: OrderedDict[str, StoredRun] = OrderedDict()
        self.saved_steps = 0  # active steps x images not computed, over the store's life (what the reuse saved)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.runs.values())

    def plan(self, schedule: Schedule, bounds: Sequence[tuple[int, int]]) -> Plan | None:
        """The stored run (same batches) sharing the longest prefix with ``schedule``, if replaying it saves a call."""
        best: Plan | None = None
        for key, run in self.runs.items():
            if run.bounds != tuple(bounds):
                continue
            candidate = plan_for(schedule, run, common_prefix(schedule, run.schedule))
            if candidate.saved() > 0 and (best is None or candidate.saved() > best.saved()):
                best = candidate
        if best is not None:
            self.runs.move_to_end(best.source.schedule.key)  # recently useful: kept longest
        return best

    def add(self, run: StoredRun) -> None:
        """Keep a finished run (the oldest unused ones make room; a run larger than the bound is not kept)."""
        if run.nbytes > self.max_bytes:
            return
        self.runs[run.schedule.key] = run
        self.runs.move_to_end(run.schedule.key)
        while self.nbytes > self.max_bytes:
            self.runs.popitem(last=False)


def replaying(start: Callable[[], Denoise], set_step: Callable[[int], None], schedule: Schedule, plan: Plan | None,
              bounds: Sequence[tuple[int, int]], captured: list[list[torch.Tensor]]) -> Callable[[], Denoise]:
    """A per-batch ``denoise`` factory for :func:`flexdiff.sampling.generate`: ``start()`` (the executor's) wrapped so
    that the steps ``plan`` replays return the stored outputs (the executor told of each step by ``set_step``), and
    every output is captured (``captured[batch][i]``) for later runs."""
    active = schedule.active_indices
    batch = iter(range(len(bounds)))

    def factory() -> Denoise:
        b = next(batch)
        denoise = start()
        captured.append([])

        def step(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
            if plan is not None and i < plan.replay_until and i not in plan.real:
                set_step(active[i])
                out = plan.source.outputs[b][i].to(x.device, copy=True)  # a copy: the stored run stays as it was
            else:
                out = denoise(x, t, i)
            captured[-1].append(out.detach().cpu())  # the samplers never write into the denoiser's output
            return out

        return step

    return factory
