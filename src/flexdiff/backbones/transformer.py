"""The transformer backbone: diffusers DiT-family denoisers (``DiTTransformer2DModel``, ``PixArtTransformer2DModel``,
``SD3Transformer2DModel``, ``FluxTransformer2DModel`` with its double- and single-stream blocks).

Units: the transformer blocks in execution order (Flux: ``transformer_blocks`` then ``single_transformer_blocks``).
Branches: the DBCache split (cache-dit; Fn / Bn): a partial step at branch ``(F, B)`` computes the first ``F`` and the
last ``B`` blocks, and the middle blocks ``F .. L-B-1`` (``Branch.deep``) are replaced by the residual they added at
the latest full step, on both streams where blocks carry encoder states (:mod:`flexdiff.hooks.residual_step`). Its
cost grows with ``F + B``; branches are ordered by ``F + B`` (then ``F``), so branch 0 is the cheapest: ``F0B0``, every block's
residual reused and only the patch embedding, the timestep embedding and the output head run, the cost of a TaylorSeer
forecast step (with a forecast partial step it is TaylorSeer's whole-stack forecast). On deep models (``L > 8``) ``F`` and
``B`` take the values 0-4, 6, 8, 12, 16, 24, 32, 48 only, so the genome's branch gene stays small.

Which argument and which output element of a block is which stream comes from diffusers' own
``TransformerBlockRegistry`` (the metadata its FirstBlockCache and TaylorSeer hooks use), so a block class diffusers
registers needs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flexdiff.backbones.base import Backbone, Branch, Layout, register_backbone
from flexdiff.errors import FlexdiffError

#: F and B values of deep models (L > 8): every depth up to 4, then roughly geometric.
_COARSE_DEPTHS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48)


@dataclass(frozen=True)
class TransformerBranch(Branch):
    """Partial step computing the first ``front`` and the last ``back`` blocks (DBCache's Fn, Bn)."""

    front: int = 1
    back: int = 0


def block_metadata(block: nn.Module) -> Any:
    """diffusers' ``TransformerBlockMetadata`` of a block class (argument names, output indices of both streams)."""
    from diffusers.hooks._helpers import TransformerBlockRegistry

    try:
        return TransformerBlockRegistry.get(type(block))
    except ValueError:
        return None


def transformer_blocks(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks of a diffusers transformer in execution order, named as in its module tree."""
    units = [(f"transformer_blocks.{i}", b) for i, b in enumerate(getattr(module, "transformer_blocks", None) or [])]
    units += [(f"single_transformer_blocks.{i}", b) for i, b in enumerate(getattr(module, "single_transformer_blocks", None) or [])]
    return units


def _depths(num_blocks: int) -> list[int]:
    return list(range(num_blocks)) if num_blocks <= 8 else [d for d in _COARSE_DEPTHS if d < num_blocks]


def transformer_layout(module: nn.Module) -> Layout:
    """Units (blocks) and (F, B) branches of a diffusers transformer (no forward is run)."""
    units = transformer_blocks(module)
    unknown = sorted({type(b).__name__ for _, b in units if block_metadata(b) is None})
    if unknown:
        raise FlexdiffError(f"{type(module).__name__} blocks {', '.join(unknown)}", "transformer blocks diffusers' TransformerBlockRegistry knows",
                            "use a DiT, PixArt, SD3 or Flux transformer (or register the block class's metadata with diffusers)")
    n = len(units)
    if n < 2:
        raise FlexdiffError(f"{type(module).__name__} with {n} block(s)", "at least 2 transformer blocks (a partial step reuses the middle ones)", "use a deeper model")
    pairs = sorted(((f, b) for f in _depths(n) for b in _depths(n) if f + b < n), key=lambda p: (p[0] + p[1], p[0]))
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
    description = "a diffusers DiT, PixArt, SD3 or Flux transformer"
    #: partial steps reuse the middle blocks' residual (hooks/residual_step.py), not their outputs
    reuse = "residual"

    def matches(self, module: nn.Module) -> bool:
        return type(module).__name__ in CALLS and bool(transformer_blocks(module))

    def layout(self, module: nn.Module) -> Layout:
        return transformer_layout(module)

    def call(self, module: nn.Module, x: torch.Tensor, t: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        return CALLS[type(module).__name__](module, x, t, **conditioning)


register_backbone(TransformerBackbone())
