"""The contract of an integration: how a schedule attaches to an object a user holds (their own diffusers pipeline)
so that the object's own call runs under it, and comes off again, restoring it bit for bit."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import Binding, Schedule, check_binding
from flexdiff.utils.registry import Registry


class Integration(ABC):
    """One kind of object schedules attach to. Subclasses register an instance with :func:`register_integration`."""

    #: registry name, e.g. "diffusers-pipeline"
    name: str = ""
    #: what objects of this kind are, for error messages
    description: str = ""

    @abstractmethod
    def matches(self, obj: Any) -> bool:
        """Whether this integration handles ``obj``."""

    @abstractmethod
    def enable(self, obj: Any, schedule: Schedule) -> None:
        """From now on ``obj``'s own calls run under ``schedule`` (a one-line error if one is enabled already)."""

    @abstractmethod
    def disable(self, obj: Any) -> None:
        """Take the schedule off: ``obj`` computes exactly as before :meth:`enable`."""

    def binding(self, obj: Any) -> Binding | None:
        """What ``obj`` is, for refusing a schedule file made for something else; None: no check."""
        return None


def timestep_value(timestep: Any, integer: bool = True) -> float:
    """A timestep as diffusers passes it (int, float, 0-d or batched tensor: one value for the batch) as an int, or
    with ``integer=False`` as a float (a flow model's timesteps, sigma x num_train_timesteps, are not integers)."""
    value = timestep.flatten()[0].item() if isinstance(timestep, torch.Tensor) else timestep
    return int(value) if integer else float(value)


def grid_position(grid: list[float], value: float, scales: tuple[float, ...] = (1.0,)) -> int | None:
    """Where ``value`` (times one of ``scales``) lies in a scheduler's ``grid`` of timesteps, to a relative 1e-3 (a flow
    model's timesteps are float32 sigma x T, passed back as floats or scaled); None if nowhere."""
    for scale in scales:
        found = next((i for i, t in enumerate(grid) if abs(value * scale - t) <= 1e-3 * max(1.0, abs(t))), None)
        if found is not None:
            return found
    return None


INTEGRATIONS: Registry[Integration] = Registry("an integration", "pass an object flexdiff integrates with")


def register_integration(integration: Integration) -> Integration:
    return INTEGRATIONS.register(integration.name, integration)


def integration_for(obj: Any) -> Integration:
    """The registered integration for ``obj``; a one-line error naming what is supported otherwise (never a silent
    no-op: a schedule that attaches to nothing would leave the user's images unchanged without a word)."""
    for _, integration in INTEGRATIONS.items():
        if integration.matches(obj):
            return integration
    supported = "; ".join(f"{i.name}: {i.description}" for _, i in INTEGRATIONS.items())
    raise FlexdiffError(
        type(obj).__name__,
        f"an object flexdiff can enable a schedule on ({supported})",
        "for a model from flexdiff.load_model use flexdiff.sample(model, schedule=...) or flexdiff.apply_schedule",
    )


def _schedule(schedule: Schedule | str | Path) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if not isinstance(schedule, (str, Path)):
        raise FlexdiffError(
            f"schedule {type(schedule).__name__} {str(schedule)[:60]!r}",
            "a flexdiff.Schedule or the path of a schedule file",
            "pass e.g. flexdiff.deepcache_uniform(flexdiff.pipeline_timesteps(pipe, 50), 3, 0) or 'best.json'",
        )
    return Schedule.load(schedule)


def enable(obj: Any, schedule: Schedule | str | Path, strict: bool = True) -> None:
    """Attach ``schedule`` (a :class:`~flexdiff.schedule.Schedule` or a schedule file) to ``obj``: afterwards
    ``obj(...)`` runs under it, called exactly as before. A schedule file made for another model or scheduler is
    refused in one line; ``strict=False`` applies it anyway."""
    integration = integration_for(obj)
    plan = _schedule(schedule)
    check_binding(plan, lambda: integration.binding(obj), where=None if isinstance(schedule, Schedule) else schedule, strict=strict)
    integration.enable(obj, plan)


def disable(obj: Any) -> None:
    """Take the schedule :func:`enable` attached off again."""
    integration_for(obj).disable(obj)


@contextmanager
def enabled(obj: Any, schedule: Schedule | str | Path, strict: bool = True) -> Iterator[Any]:
    """``with flexdiff.enabled(pipe, "best.json"): pipe(...)``: :func:`enable` for the block, :func:`disable` after it."""
    enable(obj, schedule, strict)
    try:
        yield obj
    finally:
        disable(obj)
