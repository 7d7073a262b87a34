"""The UNet backbone: diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` (DDPM, LDM, Stable Diffusion, SDXL UNets).

Units: each down/up resnet, attention and resampler, and the whole mid block. Skip branches: the UNet's skip
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


def _blocks(unet: nn.Module) -> tuple[Any, Any, Any]:
    if any(hasattr(b, "skip_conv") for b in [*unet.down_blocks, *unet.up_blocks]):
        raise FlexdiffError(type(unet).__name__, "UNet blocks without skip_conv (Skip*Block2D is not supported)", "use a UNet with standard down/up blocks")
    return unet.down_blocks, getattr(unet, "mid_block", None), unet.up_blocks


def unet_layout(unet: nn.Module) -> Layout:
    """Discover units and branches from the module tree of a diffusers UNet (no forward is run)."""
    down_blocks, mid, up_blocks = _blocks(unet)
    units: list[tuple[str, nn.Module]] = []
    producers: list[tuple[str, int]] = [("conv_in", -1)]
    for d, block in enumerate(down_blocks):
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for j, (resnet, attn) in enumerate(zip(block.resnets, attentions)):
            units.append((f"down{d}.resnet{j}", resnet))
            if attn is not None:
                units.append((f"down{d}.attn{j}", attn))
            producers.append((f"down{d}.layer{j}", len(units) - 1))
        for k, sampler in enumerate(getattr(block, "downsamplers", None) or []):
            units.append((f"down{d}.downsample{k}", sampler))
        if getattr(block, "downsamplers", None):
            producers.append((f"down{d}.downsample", len(units) - 1))
    if mid is not None:
        units.append(("mid", mid))
    consumers: list[int] = []
    for u, block in enumerate(up_blocks):
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for r, (resnet, attn) in enumerate(zip(block.resnets, attentions)):
            units.append((f"up{u}.resnet{r}", resnet))
            consumers.append(len(units) - 1)
            if attn is not None:
                units.append((f"up{u}.attn{r}", attn))
        for k, sampler in enumerate(getattr(block, "upsamplers", None) or []):
            units.append((f"up{u}.upsample{k}", sampler))
    if len(consumers) != len(producers):
        raise FlexdiffError(type(unet).__name__, f"as many up resnets ({len(consumers)}) as skip connections ({len(producers)})", "this UNet layout is not supported")
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
    description = "a diffusers UNet2DModel or UNet2DConditionModel"

    def matches(self, module: nn.Module) -> bool:
        return hasattr(module, "down_blocks") and hasattr(module, "up_blocks")

    def layout(self, module: nn.Module) -> Layout:
        return unet_layout(module)

    def check_hookable(self, module: nn.Module) -> None:
        freeu = [i for i, block in enumerate(module.up_blocks) if any(getattr(block, k, None) for k in ("s1", "s2", "b1", "b2"))]
        if freeu:  # FreeU rescales up-block features in place, between units: it would rewrite the cache (and the hollow views)
            raise FlexdiffError(f"FreeU on up_blocks {freeu}", "a UNet without FreeU for partial steps (it edits cached features in place)", "call unet.disable_freeu() first")

    def call(self, module: nn.Module, x: torch.Tensor, t: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        return module(x, t, **conditioning).sample


register_backbone(UNetBackbone())
