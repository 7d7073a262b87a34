"""Partial steps that reuse a residual (DBCache, cache-dit; the transformer backbone's technique).

Every transformer block gets a :class:`ResidualStepHook` under :data:`HOOK_NAME`. In a full step each block computes,
and the blocks in the record set keep their inputs and outputs (both streams; references, no copies). In a partial
step at branch ``(F, B)`` the middle blocks ``deep = F .. E-1`` (``E = L - B``) do not compute: block ``F`` returns

    h = h_in + (h_out[E-1] - h_in[F])_full,    e = e_in + (e_out[E-1] - e_in[F])_full

(``h`` the image tokens, ``e`` the encoder / text tokens of double-stream blocks, ``_full`` what the latest full step
recorded), and blocks ``F+1 .. E-1`` pass their input through, in their own output layout. A stream a block returns as
``None`` in the full step (SD3's last, context-pre-only block) is ``None`` again. A forecast partial step
extrapolates the residual from the last two full steps (:class:`~flexdiff.hooks.state.StepState`).

Which argument and which output element is which stream is diffusers' ``TransformerBlockMetadata`` of the block class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from flexdiff.backbones.transformer import block_metadata
from flexdiff.hooks.state import (
    StepHook,
    StepState,
    Technique,
    extrapolate,
    register_technique,
)
from flexdiff.utils.diffusers_private import parameter_from_args_kwargs

HOOK_NAME = "flexdiff.residual_step"


def _streams(metadata: Any, output: Any) -> tuple[Any, Any]:
    """(hidden, encoder) of a block's output: a tensor is the hidden stream alone."""
    if metadata.return_encoder_hidden_states_index is None:
        return (output[metadata.return_hidden_states_index] if isinstance(output, tuple) else output), None
    return output[metadata.return_hidden_states_index], output[metadata.return_encoder_hidden_states_index]


def _layout(metadata: Any, hidden: Any, encoder: Any, like: Any) -> Any:
    """``hidden`` and ``encoder`` in the output layout of ``like`` (a full-step output of the same block)."""
    if not isinstance(like, tuple):
        return hidden
    out = list(like)
    out[metadata.return_hidden_states_index] = hidden
    if metadata.return_encoder_hidden_states_index is not None:
        out[metadata.return_encoder_hidden_states_index] = encoder
    return tuple(out)


class ResidualStepHook(StepHook):
    """Wraps one block: computes (and records) in full steps; in a partial step adds the cached residual of the deep
    range (the first deep block) or passes its input through (the other deep blocks)."""

    def __init__(self, index: int, state: StepState, blocks: list[Any]) -> None:
        """``blocks``: the metadata of every block of the model (the first deep block reads the last one's output)."""
        super().__init__(index, state)
        self.blocks, self.metadata = blocks, blocks[index]

    def _residual(self, entry: Callable[[Any], Any], last: int) -> tuple[Any, Any]:
        """(h, e) residual of blocks ``self.index .. last`` in one recorded full step (``entry(key)`` reads its
        cache): output of ``last`` minus input of this block."""
        h_in, e_in = entry(("in", self.index))
        h_out, e_out = _streams(self.blocks[last], entry(("out", last)))
        return h_out - h_in, (e_out - e_in if e_out is not None and e_in is not None else None)

    def _inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        m = self.metadata
        hidden = parameter_from_args_kwargs(m, m.hidden_states_argument_name, args, kwargs)
        encoder = None
        if m.return_encoder_hidden_states_index is not None:
            encoder = parameter_from_args_kwargs(m, m.encoder_hidden_states_argument_name, args, kwargs)
        return hidden, encoder

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        state = self.state
        if state.reuses(self.index):
            hidden, encoder = self._inputs(args, kwargs)
            last = state.deep[-1]
            like = state.cached(("out", self.index))
            if self.index == state.deep[0]:
                dh, de = self._residual(state.cached, last)  # a one-line error when no full step recorded them
                if state.forecast is not None and ("in", self.index) in state.previous:  # TaylorSeer's first order on the residual
                    dh, de = extrapolate((dh, de), self._residual(state.previous.__getitem__, last), state.forecast)
                hidden = hidden + dh
                encoder = encoder + de if encoder is not None and de is not None else encoder
            if _streams(self.metadata, like)[1] is None:
                encoder = None
            return _layout(self.metadata, hidden, encoder, like)
        output = self.fn_ref.original_forward(*args, **kwargs)
        if state.records(self.index):
            state.cache[("in", self.index)] = self._inputs(args, kwargs)
            state.cache[("out", self.index)] = output
        return output


register_technique(Technique("residual", HOOK_NAME, lambda index, state, layout: ResidualStepHook(index, state, [block_metadata(b) for _, b in layout.units])))
