"""Partial steps (DeepCache) on unmodified denoisers, through diffusers' public hook layer.

The model's own ``forward`` is never copied. Every *unit* of the denoiser (its backbone's
:meth:`~flexdiff.backbones.base.Backbone.layout`: for a UNet each down/up resnet, attention and resampler, and the mid
block) gets a :class:`PartialStepHook` (a diffusers ``ModelHook``) under one name, :data:`HOOK_NAME`, so
:func:`remove_partial_steps` takes all of them off again and the model computes bit-identically to before.

In a full step every unit computes, and the units the following partial steps will replay record their outputs. In a
partial step at branch ``b`` the units in ``Branch.deep`` replay the output they recorded at the latest full step
instead of computing (replaying the last deep unit's output is exactly DeepCache's cached main-branch feature, Ma et
al. 2024, §3.2); the shallow units recompute with the new ``x_t`` and timestep embedding.

A *hollow* deep unit (its output only feeds other deep units) replays a zero-channel view ``(N, 0, H, W)`` of its
cached output instead of the output itself. The values are never read (their consumers replay too), but a UNet's up
blocks' ``torch.cat([hidden, skip])`` then copies nothing: on a CPU those copies of replayed 16x16 features were a large
share of a shallow partial step's time. The last deep unit (feeding the first shallow one) replays the real tensor.

The executor owns the clock: it sets :class:`StepState` (full / partial and branch) before each network call.
Nothing here looks at timestep values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

from flexdiff.backbones import Branch, Layout, backbone_of
from flexdiff.errors import FlexdiffError

HOOK_NAME = "flexdiff.partial_step"


@dataclass
class StepState:
    """Set by the executor before every network call. ``deep`` holds the unit indices that replay the cache."""

    mode: str = "off"  # off (plain model) | full (compute, record `record`) | partial (replay `deep`)
    deep: range = range(0)
    hollow: frozenset[int] = frozenset()  # deep units that may replay a zero-channel view (see module docstring)
    record: range = range(0)
    cache: dict[int, Any] = field(default_factory=dict)

    def enter_full(self, record: range) -> None:
        """The next call computes everything and caches the outputs of the units in ``record``. A recording step
        empties the cache first: what the steps after it replay is what it records, and under ``torch.compile`` every
        recording step then meets the same (empty) cache, one graph for all of them. A step that records nothing
        (``record`` empty) leaves the cache to the steps after it."""
        self.mode, self.record, self.deep, self.hollow = "full", record, range(0), frozenset()
        if record:
            self.cache.clear()

    def enter_partial(self, branch: Branch, hollow: bool = True) -> None:
        """The next call replays ``branch``'s deep units (``hollow=False``: always the real cached tensors)."""
        self.mode, self.deep, self.hollow = "partial", branch.deep, branch.hollow if hollow else frozenset()

    def reset(self) -> None:
        self.mode, self.deep, self.hollow, self.record = "off", range(0), frozenset(), range(0)
        self.cache.clear()


def _hollow_view(output: Any) -> Any:
    """``(N, C, H, W)`` -> a ``(N, 0, H, W)`` view (no copy); tuples element-wise; anything else unchanged."""
    if isinstance(output, torch.Tensor) and output.dim() >= 2:
        return output[:, :0]
    if isinstance(output, tuple):
        return tuple(_hollow_view(o) for o in output)
    return output


class PartialStepHook(ModelHook):
    """Wraps one unit: computes (and records) in full steps, replays the recorded output when deep in a partial step."""

    _is_stateful = True

    def __init__(self, index: int, state: StepState) -> None:
        super().__init__()
        self.index, self.state = index, state

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        state = self.state
        if state.mode == "partial" and self.index in state.deep:
            try:
                cached = state.cache[self.index]
            except KeyError:
                raise FlexdiffError("a partial step", "a full step before it that cached this branch", "start each segment with a full step") from None
            return _hollow_view(cached) if self.index in state.hollow else cached
        output = self.fn_ref.original_forward(*args, **kwargs)
        if state.mode == "full" and self.index in state.record:
            state.cache[self.index] = output
        return output

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state.cache.clear()
        return module


def apply_partial_steps(module: torch.nn.Module, state: StepState | None = None) -> tuple[Layout, StepState]:
    """Attach a :class:`PartialStepHook` to every unit of ``module``; raises if flexdiff hooks are already on it."""
    backbone = backbone_of(module)
    layout = backbone.layout(module)
    state = state or StepState()
    backbone.check_hookable(module)
    if HookRegistry.check_if_exists_or_initialize(layout.units[0][1]).get_hook(HOOK_NAME) is not None:
        raise FlexdiffError(type(module).__name__, "a model without flexdiff hooks", "remove the active schedule first (leave its `with` block)")
    for index, (_, unit) in enumerate(layout.units):
        HookRegistry.check_if_exists_or_initialize(unit).register_hook(PartialStepHook(index, state), HOOK_NAME)
    return layout, state


def remove_partial_steps(module: torch.nn.Module) -> None:
    """Take every flexdiff hook off; the model then computes exactly as before they were applied."""
    for _, unit in backbone_of(module).layout(module).units:
        registry = getattr(unit, "_diffusers_hook", None)
        if registry is not None:
            registry.remove_hook(HOOK_NAME, recurse=False)
