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

The store is bounded in bytes (``max_bytes``; least recently used runs go first) and lives in one process. The
teacher's run is also kept on disk beside the teacher reference, under the reference's key (:func:`save_run`,
:func:`load_run`): ``n x T x C x H x W`` floats (13 MiB for the built-in digits model at n = 256, T = 50), so a
resumed or repeated search starts the teacher's plan, and every schedule sharing its first steps, from it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from flexdiff.samplers import Denoise
from flexdiff.schedule import Schedule
from flexdiff.utils.io import atomic_path, read_tensors

#: the default bound of a store: 512 MiB
DEFAULT_MAX_BYTES = 512 * 2**20


@dataclass
class StoredRun:
    """One run: its schedule, the batch bounds it ran in and, per finished batch (all of them, or the first ones of a
    run stopped early on the rungs), the output of every active step."""

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
    fulls = [a for a, i in enumerate(active[:until]) if schedule.steps[i].info.fills_cache]
    forecasts = any(s.info.forecasts for s in schedule.steps[k:])
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

    def count_saved(self, images: int) -> None:
        """One network call on ``images`` images skipped by a replay."""
        self.saved_steps += images

    def plan(self, schedule: Schedule, bounds: Sequence[tuple[int, int]]) -> list[Plan | None]:
        """Per batch of ``bounds``, the stored run (same batches, that batch finished) sharing the longest prefix with
        ``schedule``, if replaying it saves a call. A run stopped on the rungs holds only its first batches, and
        serves those."""
        plans: list[Plan | None] = [None] * len(bounds)
        for run in self.runs.values():
            if run.bounds != tuple(bounds):
                continue
            candidate = plan_for(schedule, run, common_prefix(schedule, run.schedule))
            if candidate.saved() <= 0:
                continue
            for b in range(len(run.outputs)):
                if plans[b] is None or candidate.saved() > plans[b].saved():
                    plans[b] = candidate
        for used in {p.source.schedule.key for p in plans if p is not None}:
            self.runs.move_to_end(used)  # recently useful: kept longest
        return plans

    def add(self, run: StoredRun) -> None:
        """Keep a run's finished batches (the oldest unused runs make room; a run larger than the bound, or with no
        finished batch, is not kept; a run of the same schedule with as many batches or more replaces it)."""
        known = self.runs.get(run.schedule.key)
        if run.nbytes > self.max_bytes or not run.outputs or (known is not None and len(known.outputs) > len(run.outputs)):
            return
        self.runs[run.schedule.key] = run
        self.runs.move_to_end(run.schedule.key)
        while self.nbytes > self.max_bytes:
            self.runs.popitem(last=False)


def replaying(
    start: Callable[[], Denoise],
    set_step: Callable[[int], None],
    schedule: Schedule,
    plans: Sequence[Plan | None],
    captured: list[list[torch.Tensor]],
    on_saved: Callable[[int], None],
) -> Callable[[], Denoise]:
    """A per-batch ``denoise`` factory for :func:`flexdiff.running.own_loop.generate`: ``start()`` (the executor's) wrapped so
    that the steps ``plans[batch]`` replays return the stored outputs (the executor told of each step by
    ``set_step``; ``on_saved(images)`` told of each network call skipped), and every output is captured
    (``captured[batch][i]``) for later runs."""
    active = schedule.active_indices
    batch = iter(range(len(plans)))

    def factory() -> Denoise:
        b = next(batch)
        plan = plans[b]
        denoise = start()
        captured.append([])

        def step(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
            if plan is not None and i < plan.replay_until and i not in plan.real:
                set_step(active[i])
                out = plan.source.outputs[b][i].to(x.device, copy=True)  # a copy: the stored run stays as it was
                on_saved(x.shape[0])
            else:
                out = denoise(x, t, i)
            captured[-1].append(out.detach().cpu())  # the samplers never write into the denoiser's output
            return out

        return step

    return factory


def finished(schedule: Schedule, bounds: Sequence[tuple[int, int]], captured: list[list[torch.Tensor]]) -> StoredRun:
    """The run of ``captured`` outputs as far as its batches finished (a run stopped early keeps its first ones)."""
    steps = len(schedule.active_indices)
    done = 0
    while done < len(captured) and len(captured[done]) == steps:
        done += 1
    return StoredRun(schedule, tuple(tuple(b) for b in bounds), captured[:done])


def save_run(run: StoredRun, path: Path, key: str) -> None:
    """``run`` as one safetensors file (tensor ``"<batch>.<active step>"``), stamped with ``key`` (what made it: the
    teacher reference's key), its schedule's key and its batches; written whole or not at all."""
    from safetensors.torch import save_file

    tensors = {f"{b}.{i}": t.contiguous() for b, batch in enumerate(run.outputs) for i, t in enumerate(batch)}
    meta = {"key": key, "schedule": run.schedule.key, "bounds": json.dumps(run.bounds)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_run(path: Path, schedule: Schedule, bounds: Sequence[tuple[int, int]], key: str) -> StoredRun | None:
    """The run :func:`save_run` wrote at ``path`` when it is whole and was made under ``key`` for ``schedule`` in
    ``bounds`` (every batch, every active step), else None: a file that does not fit is never used."""
    tensors, meta, why = read_tensors(path)
    bounds = tuple(tuple(b) for b in bounds)
    if why or meta.get("key") != key or meta.get("schedule") != schedule.key or meta.get("bounds") != json.dumps(bounds):
        return None
    steps = len(schedule.active_indices)
    names = [[f"{b}.{i}" for i in range(steps)] for b in range(len(bounds))]
    if set(tensors) != {name for batch in names for name in batch}:
        return None
    outputs = [[tensors[name].clone() for name in batch] for batch in names]  # owned: not a view of the file, which may change
    if any(t.shape[0] != stop - start for (start, stop), batch in zip(bounds, outputs) for t in batch):
        return None
    return StoredRun(schedule, bounds, outputs)
