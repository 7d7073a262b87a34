"""The transformer backbone: any diffusers transformer whose block lists it can find (DiT, PixArt, SD3, Flux, Wan,
Qwen-Image, HunyuanVideo, LTX, CogVideoX, Mochi, Sana, CogView4, Chroma, ...), found by structure, not by a list.

**Finding the blocks.** The model's top-level ``nn.ModuleList`` children named as diffusers' own hooks name block lists
(diffusers' block identifiers, :func:`~flexdiff.utils.diffusers_private.block_identifiers`: ``blocks``,
``transformer_blocks``, ``single_transformer_blocks``, ``layers``, ...) or as dual-stream models name theirs
(``joint_transformer_blocks``, ``double_stream_blocks``, ...),
in the order the model defines them, which is the order its ``forward`` runs them (Flux: ``transformer_blocks`` then
``single_transformer_blocks``). Refiner lists (``noise_refiner``, ``refiner_blocks``) are not block lists: they run on
one stream before the main stack. Interleaved spatial / temporal lists (Latte) are refused in one line: their blocks
do not run one list after the other.

**Hookable, and optionally drivable.** Partial steps need only the blocks and their stream layout (*hookable*): any
such model works under ``flexdiff.enable(pipe, ...)``. flexdiff's own loop (``flexdiff sample``, the search's
built-in models) also needs to call the model (*drivable*, :data:`CALLS`); a model without an entry there runs
through its pipeline's own call.

Units: the transformer blocks in execution order.
Branches: the DBCache split (cache-dit; Fn / Bn): a partial step at branch ``(F, B)`` computes the first ``F`` and the
last ``B`` blocks, and the middle blocks ``F .. L-B-1`` (``Branch.deep``) are replaced by the residual they added at
the latest full step, on both streams where blocks carry encoder states (:mod:`flexdiff.hooks.residual_step`). Its
cost grows with ``F + B``; branches are ordered by ``F + B`` (then ``F``), so branch 0 is the cheapest: ``F0B0``, every block's
residual reused and only the patch embedding, the timestep embedding and the output head run, the cost of a TaylorSeer
forecast step (with a forecast partial step it is TaylorSeer's whole-stack forecast). On deep models (``L > 8``) ``F`` and
``B`` take the values 0-4, 6, 8, 12, 16, 24, 32, 48 only, so the genome's branch gene stays small.

Which argument and which output element of a block is which stream comes from diffusers' own
``TransformerBlockRegistry`` (the metadata its FirstBlockCache and TaylorSeer hooks use), so a block class diffusers
registers needs nothing here; a class it has not registered yet is one line of :data:`OWN_BLOCKS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flexdiff.backbones.base import Backbone, Branch, Layout, register_backbone
from flexdiff.errors import FlexdiffError
from flexdiff.utils.diffusers_private import (
    block_identifiers,
    block_metadata_for,
    registered_block_classes,
    registered_block_metadata,
    unwrap_compiled,
)

#: F and B values of deep models (L > 8): every depth up to 4, then roughly geometric.
_COARSE_DEPTHS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48)


@dataclass(frozen=True)
class TransformerBranch(Branch):
    """Partial step computing the first ``front`` and the last ``back`` blocks (DBCache's Fn, Bn)."""

    front: int = 1
    back: int = 0


#: Block classes diffusers' ``TransformerBlockRegistry`` does not describe (diffusers 0.42), one line each: class name ->
#: (output index of the hidden stream, of the encoder stream or None, "joined" when the class runs on the
#: concatenation [encoder, hidden] the model builds before its list: a deep range must not cross into it).
OWN_BLOCKS: dict[str, tuple[int, int | None, bool]] = {
    "SanaTransformerBlock": (0, None, False),  # Sana: returns hidden_states
    "Lumina2TransformerBlock": (0, None, False),  # Lumina 2 ``layers``: returns hidden_states (text joined before them)
    "ChromaTransformerBlock": (1, 0, False),  # returns (encoder_hidden_states, hidden_states), as Flux's
    "ChromaSingleTransformerBlock": (0, None, True),  # runs on torch.cat([encoder, hidden])
    "AuraFlowJointTransformerBlock": (1, 0, False),  # returns (encoder_hidden_states, hidden_states)
    "AuraFlowSingleTransformerBlock": (0, None, True),  # runs on torch.cat([encoder, hidden])
    "HunyuanDiTBlock": (0, None, False),  # returns hidden_states (its long skips read the pass-through of deep blocks)
    # HiDream's lists hold HiDreamBlock wrappers (forward: hidden_states, ..., encoder_hidden_states, ...) around these:
    "HiDreamImageTransformerBlock": (0, 1, False),  # returns (hidden_states, encoder_hidden_states)
    "HiDreamImageSingleTransformerBlock": (0, None, True),  # runs on torch.cat([hidden, encoder]), returns hidden_states
}

#: Block-list names dual-stream models use beyond diffusers' identifiers (AuraFlow, HiDream, JoyImage).
STREAM_LISTS = ("joint_transformer_blocks", "double_stream_blocks", "single_stream_blocks", "double_blocks")
#: Lists whose blocks run interleaved with another list's, not after it (Latte's temporal blocks).
INTERLEAVED_LISTS = ("temporal_transformer_blocks",)


def block_metadata(block: nn.Module) -> Any:
    """diffusers' ``TransformerBlockMetadata`` of a block class (argument names, output indices of both streams), or
    the one built from :data:`OWN_BLOCKS`; None for a class neither knows."""
    try:
        return _named_as_called(registered_block_metadata(type(block)), type(block))
    except ValueError:
        pass
    # a model module's own copy of a registered class ("Copied from diffusers...": ChronoEdit's and Wan Animate's
    # WanTransformerBlock) has its layout: the registered class of that name with the same forward signature
    twin = next((m for cls, m in registered_block_classes() if cls.__name__ == type(block).__name__ and _same_signature(cls, type(block))), None)
    entry = OWN_BLOCKS.get(own_name(block))
    if twin is None and entry is None:
        return None
    if twin is not None:
        return block_metadata_for(type(block), twin)
    return block_metadata_for(type(block), return_hidden_states_index=entry[0], return_encoder_hidden_states_index=entry[1])


def _named_as_called(metadata: Any, cls: type) -> Any:
    """``metadata`` with the hidden-stream argument named as ``cls.forward`` names it: diffusers 0.42 registers
    Z-Image's block under ``hidden_states`` while its forward takes ``x`` (the first argument either way)."""
    names = list(inspect.signature(cls.forward).parameters)[1:]
    if metadata.hidden_states_argument_name in names or not names:
        return metadata
    return block_metadata_for(cls, metadata, hidden_states_argument_name=names[0])


def own_name(block: nn.Module) -> str:
    """The class name :data:`OWN_BLOCKS` knows a block by: its own, or for a wrapper that only forwards to its
    ``block`` (HiDream's ``HiDreamBlock``) the wrapped block's; the wrapper's forward names the arguments."""
    inner = getattr(block, "block", None)
    return type(inner).__name__ if type(block).__name__ not in OWN_BLOCKS and isinstance(inner, nn.Module) else type(block).__name__


def _same_signature(a: type, b: type) -> bool:
    return list(inspect.signature(a.forward).parameters) == list(inspect.signature(b.forward).parameters)


def unwrapped(module: nn.Module) -> nn.Module:
    """The model itself under a ``torch.compile(model)`` wrapper (whose only child is the compiled model)."""
    return unwrap_compiled(module)


def block_lists(module: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """The model's top-level block lists, in definition (= execution) order: children named as diffusers' hooks name
    transformer block lists, or as dual-stream models do (:data:`STREAM_LISTS`)."""
    names = {*block_identifiers(), *STREAM_LISTS}
    return [(name, child) for name, child in unwrapped(module).named_children() if name in names and isinstance(child, nn.ModuleList) and len(child) > 0]


def transformer_blocks(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks of a diffusers transformer in execution order, named as in its module tree."""
    return [(f"{name}.{i}", b) for name, blocks in block_lists(module) if name not in INTERLEAVED_LISTS for i, b in enumerate(blocks)]


def joined_from(units: list[tuple[str, nn.Module]]) -> int:
    """The first unit running on a joined [encoder, hidden] sequence (:data:`OWN_BLOCKS`), or ``len(units)``."""
    return next((i for i, (_, b) in enumerate(units) if OWN_BLOCKS.get(own_name(b), (0, None, False))[2]), len(units))


def _depths(num_blocks: int) -> list[int]:
    return list(range(num_blocks)) if num_blocks <= 8 else [d for d in _COARSE_DEPTHS if d < num_blocks]


def transformer_layout(module: nn.Module) -> Layout:
    """Units (blocks) and (F, B) branches of a diffusers transformer (no forward is run). A one-line refusal where
    the layout is ambiguous: interleaved lists, or a block class whose stream layout nobody describes."""
    name = type(unwrapped(module)).__name__
    interleaved = [n for n, _ in block_lists(module) if n in INTERLEAVED_LISTS]
    if interleaved:
        raise FlexdiffError(
            f"{name} with {', '.join(interleaved)}",
            "block lists that run one after the other",
            "this model interleaves its spatial and temporal blocks: not supported",
        )
    units = transformer_blocks(module)
    unknown = sorted({type(b).__name__ for _, b in units if block_metadata(b) is None})
    if unknown:
        raise FlexdiffError(
            f"{name} blocks {', '.join(unknown)}",
            "transformer blocks whose stream layout diffusers' TransformerBlockRegistry or flexdiff's OWN_BLOCKS describes",
            "add a one-line OWN_BLOCKS entry for the class (flexdiff/backbones/transformer.py)",
        )
    n = len(units)
    if n < 2:
        raise FlexdiffError(f"{name} with {n} block(s)", "at least 2 transformer blocks (a partial step reuses the middle ones)", "use a deeper model")
    joined = joined_from(units)  # a deep range ends before the joined blocks or starts in them: one residual, one shape
    pairs = sorted(((f, b) for f in _depths(n) for b in _depths(n) if f + b < n and (n - b <= joined or f >= joined)), key=lambda p: (p[0] + p[1], p[0]))
    branches = tuple(TransformerBranch(i, f"F{f}B{b}", range(f, n - b), frozenset(), f, b) for i, (f, b) in enumerate(pairs))
    return Layout(tuple(units), branches)


def _learned_sigma(module: nn.Module, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """DiT / PixArt with learned variance output 2C channels: the first C are the prediction (as their pipelines do)."""
    return output[:, : x.shape[1]] if output.shape[1] == 2 * x.shape[1] else output


def _dit(module: nn.Module, x: torch.Tensor, t: torch.Tensor, **c: Any) -> torch.Tensor:
    labels = c.get("class_labels")
    if labels is None:
        raise FlexdiffError(type(module).__name__, "class labels (a class-conditional DiT)", "pass --labels, or load the model with flexdiff.load_model")
    return _learned_sigma(module, module(x, timestep=t, class_labels=labels).sample, x)


def _pixart(module: nn.Module, x: torch.Tensor, t: torch.Tensor, **c: Any) -> torch.Tensor:
    added = c.pop("added_cond_kwargs", None) or {"resolution": None, "aspect_ratio": None}
    return _learned_sigma(module, module(x, timestep=t, added_cond_kwargs=added, **c).sample, x)


def _sd3(module: nn.Module, x: torch.Tensor, t: torch.Tensor, **c: Any) -> torch.Tensor:
    return module(hidden_states=x, timestep=t, **c).sample


def _flux(module: nn.Module, x: torch.Tensor, t: torch.Tensor, **c: Any) -> torch.Tensor:
    """Flux takes packed latents (N, S, 4C) and sigma rather than the model timestep (its pipeline divides by 1000)."""
    return module(hidden_states=x, timestep=t / 1000, **c).sample


#: How flexdiff's own loop calls each class (its pipeline's conventions), by class name.
CALLS: dict[str, Callable[..., torch.Tensor]] = {
    "DiTTransformer2DModel": _dit,
    "PixArtTransformer2DModel": _pixart,
    "SD3Transformer2DModel": _sd3,
    "FluxTransformer2DModel": _flux,
}


class TransformerBackbone(Backbone):
    name = "transformer"
    description = "a diffusers transformer with block lists (DiT, PixArt, SD3, Flux, Wan, Qwen-Image, HunyuanVideo, LTX, CogVideoX, Mochi, Sana, ...)"
    #: partial steps reuse the middle blocks' residual (hooks/residual_step.py), not their outputs
    reuse = "residual"

    def matches(self, module: nn.Module) -> bool:
        """A diffusers model (``ModelMixin``: a family registered by a plugin keeps its own modules) with block lists
        and no UNet down path."""
        from diffusers import ModelMixin

        model = unwrapped(module)
        return isinstance(model, ModelMixin) and bool(block_lists(model)) and not hasattr(model, "down_blocks")

    def layout(self, module: nn.Module) -> Layout:
        return transformer_layout(module)

    def drivable(self, module: nn.Module) -> bool:
        return type(unwrapped(module)).__name__ in CALLS

    def call(self, module: nn.Module, x: torch.Tensor, t: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        name = type(unwrapped(module)).__name__
        if name not in CALLS:
            raise FlexdiffError(
                name,
                f"a transformer flexdiff's own loop can call ({', '.join(CALLS)})",
                "run it through its pipeline: flexdiff.enable(pipe, schedule), or --sampler pipeline",
            )
        return CALLS[name](module, x, t, **conditioning)


register_backbone(TransformerBackbone())
