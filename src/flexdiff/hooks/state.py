"""What the executor tells the step hooks before every network call (:class:`StepState`), and the registry of hook
techniques: how a partial step reuses the latest full step for the deep units (one technique per module)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.hooks import ModelHook

from flexdiff.backbones import Branch
from flexdiff.errors import FlexdiffError
from flexdiff.utils.diffusers_private import stateful_hook
from flexdiff.utils.registry import Registry

#: what the units do in the next call: the executor sets it from the step kind's properties (fills_cache, takes_branch)
OFF, COMPUTE, REUSE = "off", "compute", "reuse"


@dataclass
class StepState:
    """Set by the executor before every network call. ``deep`` holds the unit indices that reuse the cache.

    ``cache`` is what the latest recording full step recorded, ``previous`` what the one before it recorded (kept for
    forecast steps). ``forecast`` is the extrapolation factor of a forecast step (0-dim tensor: a tensor, not a
    float, so ``torch.compile`` does not specialise one graph per value): with full steps at positions ``p1 < p2``
    and the step now at ``p``, ``(p - p2) / (p2 - p1)``; the reused feature is then ``f2 + forecast (f2 - f1)``
    (TaylorSeer's first order, Liu et al. 2025, eq. 7). ``None`` replays ``f2`` as it is.
    """

    mode: str = "off"  # OFF (plain model) | COMPUTE (compute, record `record`) | REUSE (reuse `deep`)
    deep: range = range(0)
    hollow: frozenset[int] = frozenset()  # deep units that may replay a zero-channel view (hooks/partial_step.py)
    record: Collection[int] = range(0)
    cache: dict[Any, Any] = field(default_factory=dict)
    previous: dict[Any, Any] = field(default_factory=dict)
    forecast: torch.Tensor | None = None

    def enter_full(self, record: Collection[int]) -> None:
        """The next call computes everything and caches the outputs of the units in ``record``. A recording step
        starts a new, empty cache (the last one becomes ``previous``): what the steps after it reuse is what it
        records, and under ``torch.compile`` every recording step then meets the same (empty) cache, one graph for all
        of them. A step that records nothing (``record`` empty) leaves the caches to the steps after it."""
        self.mode, self.record, self.deep, self.hollow, self.forecast = COMPUTE, record, range(0), frozenset(), None
        if record:
            self.previous, self.cache = self.cache, {}

    def enter_partial(self, branch: Branch, hollow: bool = True, forecast: torch.Tensor | None = None) -> None:
        """The next call reuses ``branch``'s deep units (``hollow=False``: always the real cached tensors); with
        ``forecast`` (see the class docstring) extrapolated from the last two full steps instead of replayed."""
        self.mode, self.deep, self.hollow, self.forecast = REUSE, branch.deep, branch.hollow if hollow else frozenset(), forecast

    def reset(self) -> None:
        self.mode, self.deep, self.hollow, self.record, self.forecast = OFF, range(0), frozenset(), range(0), None
        self.cache.clear()
        self.previous.clear()

    def reuses(self, index: int) -> bool:
        """Unit ``index`` reuses the cache in this call (it is deep in a replaying step) instead of computing."""
        return self.mode == REUSE and index in self.deep

    def records(self, index: int) -> bool:
        """Unit ``index`` computes and its output goes into the cache in this call (a cache-filling step)."""
        return self.mode == COMPUTE and index in self.record

    def cached(self, key: Any) -> Any:
        """The latest full step's entry ``key``, or a one-line error when no full step recorded it."""
        try:
            return self.cache[key]
        except KeyError:
            raise FlexdiffError("a partial step", "a full step before it that cached this branch", "start each segment with a full step") from None

    def reused(self, key: Any) -> Any:
        """Entry ``key`` as this partial step reuses it: replayed, or forecast from the last two full steps
        (tensors and tuples of tensors element-wise; ``None`` stays ``None``)."""
        last = self.cached(key)
        if self.forecast is None:
            return last
        return extrapolate(last, self.previous.get(key, last), self.forecast)


def extrapolate(last: Any, before: Any, factor: torch.Tensor) -> Any:
    """``last + factor (last - before)`` over tensors, tuples of them and ``None`` (TaylorSeer's first order)."""
    if isinstance(last, torch.Tensor):
        return last + factor.to(last.dtype) * (last - before)
    if isinstance(last, tuple):
        return tuple(extrapolate(a, b, factor) for a, b in zip(last, before))
    return last


@stateful_hook
class StepHook(ModelHook):
    """What every technique's hook shares: the unit's index in the layout and the executor's :class:`StepState`
    (stateful: diffusers' ``reset_stateful_hooks`` empties the cache)."""

    def __init__(self, index: int, state: StepState) -> None:
        super().__init__()
        self.index, self.state = index, state

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state.cache.clear()
        return module


@dataclass(frozen=True)
class Technique:
    """A way of reusing the latest full step in partial steps: its hook's name (removable by it) and its factory."""

    name: str  # the backbones' ``reuse`` value that selects it
    hook_name: str
    make_hook: Callable[[int, StepState, Any], ModelHook]  # (unit index, state, layout) -> hook


TECHNIQUES: Registry[Technique] = Registry("a step-hook technique", "a backbone's `reuse` must name a registered technique")


def register_technique(technique: Technique) -> Technique:
    return TECHNIQUES.register(technique.name, technique)
