"""The cost model: MACs per step type and branch (FlopCounterMode), and measured latency per step type.

A schedule's cost is the sum over its steps (null steps cost nothing; the sampler's own arithmetic is a few
element-wise ops per step and is left out). Speed-up is reported both as a MACs ratio and as a measured
wall-clock ratio of the whole sampling loop (see ``benchmarks/``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from flexdiff.models import DiffusionModel
from flexdiff.running.executor import ScheduleExecutor, apply_schedule
from flexdiff.schedule import FULL, Schedule, Step


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    """FLOPs of the CPU fused attention op, which FlopCounterMode does not count by itself (about 5 % of a UNet)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


def count_macs(fn: Callable[[], object]) -> int:
    """Multiply-accumulates of one call of ``fn`` (FLOPs / 2, FlopCounterMode's convention)."""
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        fn()
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class StepCosts:
    """Per-sample MACs of a full step and of a partial step at each branch (index = branch)."""

    full: int
    partial: tuple[int, ...]

    def step(self, step: Step) -> int:
        """A step that calls the network costs a full step, or its branch's partial step; one that does not, 0."""
        kind = step.info
        if not kind.calls_network:
            return 0
        return self.partial[step.branch] if kind.takes_branch and step.branch is not None else self.full

    def schedule(self, schedule: Schedule) -> int:
        """Total MACs per sample of a schedule: the sum over its steps."""
        return sum(self.step(s) for s in schedule.steps)

    def speedup(self, schedule: Schedule) -> float:
        """Teacher MACs (T full steps) / schedule MACs."""
        return self.full * schedule.T / max(self.schedule(schedule), 1)


def probe_input(model: DiffusionModel, batch_size: int) -> tuple[torch.Tensor, float]:
    """The backbone's cost probe: a seeded input and a grid point inside the model's range (a flow model's: sigma 0.5)."""
    x, t = model.backbone.probe(model.sample_shape, model.noise.num_train_timesteps, batch_size, model.device)
    return x, (0.5 if model.noise.kind == "flow" else t)


def full_step_macs(model: DiffusionModel) -> int:
    """MACs per sample of one plain (unhooked) network call: a full step."""
    x, t = probe_input(model, 1)
    return count_macs(lambda: model.eps(x, t))


def _each_step_type(
    model: DiffusionModel, run: ScheduleExecutor, x: torch.Tensor, t: int, measure: Callable[[Callable[[], object]], object]
) -> tuple[object, list[object]]:
    """Measure a full step, then a partial step at each branch (each after a full step that fills its cache)."""
    full = measure(lambda: (run.set_step(0), model.eps(x, t)))
    partial = []
    for branch in range(run.layout.num_branches):
        run.state.enter_full(run.layout.branches[branch].deep)
        model.eps(x, t)
        run.state.enter_partial(run.layout.branches[branch], run.hollow)
        partial.append(measure(lambda: model.eps(x, t)))
    return full, partial


def _probe_schedule(t: int) -> Schedule:
    return Schedule((Step(FULL),), (t,), "ddim", "probe")


@torch.no_grad()
def measure_macs(model: DiffusionModel) -> StepCosts:
    """MACs per sample of every step type, counted on a batch of one."""
    x, t = probe_input(model, 1)
    with apply_schedule(model, _probe_schedule(t)) as run:
        full, partial = _each_step_type(model, run, x, t, count_macs)
    return StepCosts(int(full), tuple(int(p) for p in partial))


@dataclass(frozen=True)
class StepLatency:
    """Median seconds of one UNet call on a batch of ``batch_size`` for each step type."""

    batch_size: int
    full: float
    partial: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@torch.no_grad()
def measure_latency(model: DiffusionModel, batch_size: int = 64, repeats: int = 5, warmup: int = 2) -> StepLatency:
    """Wall-clock per step type: ``warmup`` untimed calls, then the median of ``repeats``."""

    def timed(fn: Callable[[], object]) -> float:
        for _ in range(warmup):
            fn()
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    x, t = probe_input(model, batch_size)
    with apply_schedule(model, _probe_schedule(t)) as run:
        full, partial = _each_step_type(model, run, x, t, timed)
    return StepLatency(batch_size, float(full), tuple(float(p) for p in partial))
