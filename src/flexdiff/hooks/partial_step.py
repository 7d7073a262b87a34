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

A forecast partial step (:class:`~flexdiff.hooks.state.StepState`) extrapolates the replayed outputs from the last two
full steps instead. The executor owns the clock: it sets the state (full / partial and branch) before each network
call. Nothing here looks at timestep values.
"""

from __future__ import annotations

from typing import Any

import torch

from flexdiff.hooks.state import StepHook, Technique, register_technique

HOOK_NAME = "flexdiff.partial_step"


def _hollow_view(output: Any) -> Any:
    """``(N, C, H, W)`` -> a ``(N, 0, H, W)`` view (no copy); tuples element-wise; anything else unchanged."""
    if isinstance(output, torch.Tensor) and output.dim() >= 2:
        return output[:, :0]
    if isinstance(output, tuple):
        return tuple(_hollow_view(o) for o in output)
    return output


class PartialStepHook(StepHook):
    """Wraps one unit: computes (and records) in full steps, replays the recorded output when deep in a partial step."""

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        state = self.state
        if state.reuses(self.index):
            if self.index in state.hollow:
                return _hollow_view(state.cached(self.index))
            return state.reused(self.index)  # replayed, or forecast (only the last deep unit's value is ever read)
        output = self.fn_ref.original_forward(*args, **kwargs)
        if state.records(self.index):
            state.cache[self.index] = output
        return output


register_technique(Technique("output", HOOK_NAME, lambda index, state, layout: PartialStepHook(index, state)))
