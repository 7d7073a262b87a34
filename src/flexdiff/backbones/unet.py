"""The UNet backbone: diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` (DDPM, LDM, Stable Diffusion, SDXL UNets),
and the video UNets built of the same blocks with temporal layers (AnimateDiff's ``UNetMotionModel``,
``UNet3DConditionModel``, SVD's ``UNetSpatioTemporalConditionModel``).

Units: each down/up resnet, attention, temporal layer (:data:`LAYER_PARTS`) and resampler, and the whole mid block. Skip branches: the UNet's skip
connections ``S[0..B-1]`` in the order the down path produces them (``conv_in``, then each down resnet/attention
output, then each downsampler output); branch ``b`` joins ``S[b]`` to the up resnet that consumes it. A partial step at
branch ``b`` (DeepCache, Ma et al. 2024, §3.2) runs only the units shallower than that branch: the units strictly
between the producer of ``S[b]`` and its consumer are *deep* and replay the cache. A deep unit whose output only feeds
other deep units (the next unit and, for a skip producer, the up resnet that consumes that skip) is *hollow*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flexdiff.backbones.base import Backbone, Branch, Layout, register_backbone
from flexdiff.errors import FlexdiffError


@dataclass(frozen=True)
class UNetBranch(Branch):
    """Skip connection ``index``: produced after unit ``producer`` (-1 = conv_in), consumed by unit ``consumer``."""

    producer: int = -1
    consumer: int = 0


#: What one layer of a down / up block runs, in execution order: the resnet, then (video UNets) its temporal conv
#: (``UNet3DConditionModel``), attention, temporal attention, and AnimateDiff's motion module (``UNetMotionModel``).
#: Every one is a unit: a module of a deep layer left out would compute on a replayed (or hollow) feature.
LAYER_PARTS = ("resnets", "temp_convs", "attentions", "temp_attentions", "motion_modules")


def _blocks(unet: nn.Module) -> tuple[Any, Any, Any]:
    if any(hasattr(b, "skip_conv") for b in [*unet.down_blocks, *unet.up_blocks]):
        raise FlexdiffError(type(unet).__name__, "UNet blocks without skip_conv (Skip*Block2D is not supported)", "use a UNet with standard down/up blocks")
    odd = sorted({type(b).__name__ for b in [*unet.down_blocks, *unet.up_blocks] if not isinstance(getattr(b, "resnets", None), nn.ModuleList)})
    if odd:  # Kandinsky 3's blocks: resnets_in / resnets_out, one skip per block: not diffusers' per-layer skips
        raise FlexdiffError(
            f"{type(unet).__name__} blocks {', '.join(odd)}",
            "down / up blocks with diffusers' per-layer resnets and skip connections",
            "this UNet's skip layout is not supported for partial steps",
        )
    return unet.down_blocks, getattr(unet, "mid_block", None), unet.up_blocks


def _layer(block: nn.Module, j: int, prefix: str) -> list[tuple[str, nn.Module]]:
    """The units of layer ``j`` of a down / up block (:data:`LAYER_PARTS`), named ``{prefix}.{part}{j}``."""
    names = {"resnets": "resnet", "temp_convs": "tconv", "attentions": "attn", "temp_attentions": "tattn", "motion_modules": "motion"}
    parts = [(part, getattr(block, part, None)) for part in LAYER_PARTS]
    return [(f"{prefix}.{names[part]}{j}", modules[j]) for part, modules in parts if modules is not None and j < len(modules) and modules[j] is not None]


def unet_layout(unet: nn.Module) -> Layout:
    """Discover units and branches from the module tree of a diffusers UNet (no forward is run)."""
    down_blocks, mid, up_blocks = _blocks(unet)
    units: list[tuple[str, nn.Module]] = []
    producers: list[tuple[str, int]] = [("conv_in", -1)]
    for d, block in enumerate(down_blocks):
        for j in range(len(block.resnets)):
            units += _layer(block, j, f"down{d}")
            producers.append((f"down{d}.layer{j}", len(units) - 1))
        for k, sampler in enumerate(getattr(block, "downsamplers", None) or []):
            units.append((f"down{d}.downsample{k}", sampler))
        if getattr(block, "downsamplers", None):
            producers.append((f"down{d}.downsample", len(units) - 1))
    if mid is not None:
        units.append(("mid", mid))
    consumers: list[int] = []
    for u, block in enumerate(up_blocks):
        for r in range(len(block.resnets)):
            consumers.append(len(units))  # the layer's resnet consumes the skip
            units += _layer(block, r, f"up{u}")
        for k, sampler in enumerate(getattr(block, "upsamplers", None) or []):
            units.append((f"up{u}.upsample{k}", sampler))
    if len(consumers) != len(producers):
        raise FlexdiffError(
            type(unet).__name__, f"as many up resnets ({len(consumers)}) as skip connections ({len(producers)})", "this UNet layout is not supported"
        )
    # the up path consumes skips last-in first-out: consumers[k] takes producers[B - 1 - k]
    consumer_of = {producer: consumers[len(producers) - 1 - j] for j, (_, producer) in enumerate(producers)}
    branches = []
    for b, (label, producer) in enumerate(producers):
        consumer = consumers[len(producers) - 1 - b]
        # unit k feeds unit k + 1 and, when it produces a skip, that skip's consumer: hollow when all of them are deep
        hollow = frozenset(k for k in range(producer + 1, consumer - 1) if consumer_of.get(k, producer + 1) in range(producer + 1, consumer))
        branches.append(UNetBranch(b, label, range(producer + 1, consumer), hollow, producer, consumer))
    return Layout(tuple(units), tuple(branches))


class UNetBackbone(Backbone):
    name = "unet"
    description = "a diffusers UNet (UNet2DModel, UNet2DConditionModel, video: UNetMotionModel, UNet3DConditionModel, UNetSpatioTemporalConditionModel)"

    def matches(self, module: nn.Module) -> bool:
        return hasattr(module, "down_blocks") and hasattr(module, "up_blocks")

    def layout(self, module: nn.Module) -> Layout:
        return unet_layout(module)

    def check_hookable(self, module: nn.Module) -> None:
        freeu = [i for i, block in enumerate(module.up_blocks) if any(getattr(block, k, None) for k in ("s1", "s2", "b1", "b2"))]
        if freeu:  # FreeU rescales up-block features in place, between units: it would rewrite the cache (and the hollow views)
            raise FlexdiffError(
                f"FreeU on up_blocks {freeu}", "a UNet without FreeU for partial steps (it edits cached features in place)", "call unet.disable_freeu() first"
            )

    def call(self, module: nn.Module, x: torch.Tensor, t: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        return module(x, t, **conditioning).sample


register_backbone(UNetBackbone())
