"""The student format: a diffusers UNet2DModel whose blocks are slimmed, and the description that rebuilds it.

Blocks are ``down0..down{D-1}``, ``mid``, ``up0..up{U-1}`` (diffusers' order). A block's *choice* (a
:class:`BlockChoice`) gives, for each of its residual layers, the number of internal GroupNorm groups it keeps
(``0`` = residual branch dropped, the layer is its shortcut; ``groups`` = the teacher's width), and whether its
attention layers are kept. Every choice keeps the block's input and output shapes and the number of layers, so the
down path still produces exactly the skip connections the up path consumes: **any** combination of per-block choices
assembles into a valid UNet (tested over many random combinations).

Width options per layer are the teacher's width times 0 (dropped), 0.25, 0.5, 0.75 and 1, rounded to whole groups
(``max(1, round(f * groups))``; duplicates removed, so tiny test UNets get fewer options).

An :class:`Architecture` (the choice of every block) is the student's description on disk: ``flexdiff_student.json``
beside the diffusers ``config.json`` of the teacher's skeleton. :func:`apply_architecture` rebuilds the student's
module tree from the skeleton and the description, so the weights load with their original key names. The slim layers
a student is built of (:class:`SlimResnet`, :class:`NoAttention`) are here too; their weight-sharing supernet forms,
which only training needs, are in :mod:`flexdiff.nas.units`.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flexdiff.errors import FlexdiffError
from flexdiff.utils.io import read_json_object

#: Fractions of the teacher's internal width a residual layer may keep (0 = residual branch dropped).
WIDTH_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: File beside ``config.json`` that marks a model folder as a flexdiff student and describes its blocks.
STUDENT_FILE = "flexdiff_student.json"
STUDENT_FORMAT = "flexdiff-student/1"
SUPPORTED_BLOCKS = ("DownBlock2D", "AttnDownBlock2D", "UNetMidBlock2D", "UpBlock2D", "AttnUpBlock2D")


@dataclass(frozen=True)
class BlockSpec:
    """One block of the teacher: its name, kind, and per-layer group counts at full width."""

    name: str  # down0 | mid | up2 ...
    kind: str  # down | mid | up
    index: int  # position in unet.down_blocks / up_blocks (0 for mid)
    groups: tuple[int, ...]  # norm2 groups of each residual layer (the full internal width)
    has_attention: bool

    def width_options(self, layer: int) -> tuple[int, ...]:
        g = self.groups[layer]
        return tuple(sorted({0 if f == 0 else max(1, round(f * g)) for f in WIDTH_FRACTIONS}))

    def choices(self) -> list["BlockChoice"]:
        """Every choice of this block: the product of per-layer widths and attention kept / dropped."""
        widths = itertools.product(*(self.width_options(i) for i in range(len(self.groups))))
        attention = (True, False) if self.has_attention else (False,)
        return [BlockChoice(tuple(w), a) for w in widths for a in attention]

    def full(self) -> "BlockChoice":
        """The teacher's own block."""
        return BlockChoice(self.groups, self.has_attention)


@dataclass(frozen=True)
class BlockChoice:
    """Internal groups kept per residual layer, and whether the block's attention layers are kept."""

    widths: tuple[int, ...]
    attention: bool

    def label(self, spec: BlockSpec) -> str:
        """Readable form, e.g. ``widths 0.5/0.25/drop, attention on`` (fractions of the teacher's width)."""
        parts = ["drop" if w == 0 else f"{w / g:.2g}" for w, g in zip(self.widths, spec.groups)]
        attn = ("attention on" if self.attention else "attention off") if spec.has_attention else "no attention"
        return f"widths {'/'.join(parts)}, {attn}"

    def to_json(self) -> dict[str, Any]:
        return {"widths": list(self.widths), "attention": self.attention}


def _block(unet: nn.Module, spec: BlockSpec) -> nn.Module:
    if spec.kind == "down":
        return unet.down_blocks[spec.index]
    if spec.kind == "up":
        return unet.up_blocks[spec.index]
    return unet.mid_block


def block_module(unet: nn.Module, spec: BlockSpec) -> nn.Module:
    """The block of ``unet`` that ``spec`` names."""
    return _block(unet, spec)


def block_specs(unet: nn.Module) -> tuple[BlockSpec, ...]:
    """The teacher's blocks, or a one-line error when the UNet is not one compress can handle."""
    name = type(unet).__name__
    if name != "UNet2DModel":
        raise FlexdiffError(name, "a diffusers UNet2DModel (pixel space, no cross-attention)", "compress a UNet2DModel folder or builtin:digits")
    if getattr(unet, "class_embedding", None) is not None:
        raise FlexdiffError("class_embed_type", "an unconditional UNet2DModel", "compress an unconditional model")
    if unet.mid_block is None:
        raise FlexdiffError("mid_block_type None", "a UNet2DModel with a mid block", "compress a UNet with a UNetMidBlock2D")
    specs = []
    for kind, blocks in (("down", list(unet.down_blocks)), ("mid", [unet.mid_block]), ("up", list(unet.up_blocks))):
        for i, block in enumerate(blocks):
            label = "mid" if kind == "mid" else f"{kind}{i}"
            if type(block).__name__ not in SUPPORTED_BLOCKS:
                raise FlexdiffError(
                    f"{label}: {type(block).__name__}", f"one of {', '.join(SUPPORTED_BLOCKS)}", "compress supports these diffusers blocks only"
                )
            for j, resnet in enumerate(block.resnets):
                check_resnet(resnet, f"{label}.resnets.{j}")
            attentions = [a for a in (getattr(block, "attentions", None) or []) if a is not None]
            specs.append(BlockSpec(label, kind, i, tuple(int(r.norm2.num_groups) for r in block.resnets), bool(attentions)))
    return tuple(specs)


@dataclass(frozen=True)
class Architecture:
    """The choice of every block: the student's whole description (with the teacher's diffusers config)."""

    choices: tuple[tuple[str, BlockChoice], ...]  # (block name, choice), in block order

    def __getitem__(self, name: str) -> BlockChoice:
        return dict(self.choices)[name]

    def to_json(self) -> dict[str, Any]:
        return {"format": STUDENT_FORMAT, "blocks": [{"block": name, **choice.to_json()} for name, choice in self.choices]}

    @classmethod
    def from_json(cls, data: dict[str, Any], specs: tuple[BlockSpec, ...], where: object = STUDENT_FILE) -> "Architecture":
        """Parse and validate against the skeleton's blocks; a bad file is a one-line error."""
        try:
            if data.get("format") != STUDENT_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            blocks = {b["block"]: BlockChoice(tuple(int(w) for w in b["widths"]), bool(b["attention"])) for b in data["blocks"]}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FlexdiffError(where, f"a {STUDENT_FORMAT} description of every block", f"the file is malformed ({exc}); re-save the student") from None
        if set(blocks) != {s.name for s in specs}:
            raise FlexdiffError(where, f"one entry per block {[s.name for s in specs]}", "re-save the student from the same teacher config")
        for s in specs:
            c = blocks[s.name]
            if len(c.widths) != len(s.groups) or any(not 0 <= w <= g for w, g in zip(c.widths, s.groups)) or (c.attention and not s.has_attention):
                raise FlexdiffError(
                    f"{where}: {s.name}", f"{len(s.groups)} widths within 0..{list(s.groups)} groups", "re-save the student from the same teacher config"
                )
        return cls(tuple((s.name, blocks[s.name]) for s in specs))

    @classmethod
    def full(cls, specs: tuple[BlockSpec, ...]) -> "Architecture":
        return cls(tuple((s.name, s.full()) for s in specs))


def _attention_slots(block: nn.Module) -> Iterator[int]:
    attentions = getattr(block, "attentions", None) or []
    return (j for j, a in enumerate(attentions) if a is not None)


def set_block(block: nn.Module, spec: BlockSpec, choice: BlockChoice, resnets: list[nn.Module] | None = None) -> None:
    """Replace ``block``'s residual layers and attentions in place to realise ``choice``.

    ``resnets`` gives the trained layers to install (supernet extracts); without it, untrained layers of the right
    shapes are built (loading a saved student, whose weights are loaded next). A full-width layer stays the diffusers
    ``ResnetBlock2D``; a dropped attention becomes :class:`NoAttention`.
    """
    for j, width in enumerate(choice.widths):
        old = block.resnets[j]
        if resnets is not None:
            new = resnets[j]
            if width == spec.groups[j] and not isinstance(old, SlimResnet):  # keep the real diffusers module
                layer = copy.deepcopy(old)
                layer.load_state_dict(new.state_dict())
                new = layer
        elif width == spec.groups[j]:
            continue
        else:
            new = SlimResnet.like(old, width)
        block.resnets[j] = new
    if spec.has_attention and not choice.attention:
        for j in _attention_slots(block):
            if block is not None and hasattr(block, "attentions"):
                block.attentions[j] = NoAttention()


def apply_architecture(unet: nn.Module, data: dict[str, Any], where: object = STUDENT_FILE) -> Architecture:
    """Turn a teacher-config skeleton (freshly built, untrained) into the student that ``data`` describes, in place."""
    specs = block_specs(unet)
    arch = Architecture.from_json(data, specs, where)
    for s in specs:
        set_block(_block(unet, s), s, arch[s.name])
    return arch


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_resnet(resnet: nn.Module, where: str) -> None:
    """Raise unless ``resnet`` is a plain diffusers ResnetBlock2D this module knows how to slim."""
    from diffusers.models.resnet import ResnetBlock2D

    ok = (
        isinstance(resnet, ResnetBlock2D)
        and resnet.time_embedding_norm == "default"
        and resnet.time_emb_proj is not None
        and not resnet.skip_time_act
        and resnet.upsample is None
        and resnet.downsample is None
        and resnet.conv1.out_channels == resnet.conv2.in_channels == resnet.norm2.num_channels
    )
    if not ok:
        raise FlexdiffError(
            where,
            "a ResnetBlock2D with the default time-embedding norm, no up/down sampling",
            "compress supports UNet2DModel blocks DownBlock2D / AttnDownBlock2D / UNetMidBlock2D / UpBlock2D / AttnUpBlock2D",
        )


class SlimResnet(nn.Module):
    """A ResnetBlock2D with ``mid_groups`` internal GroupNorm groups (0 = residual branch dropped).

    Same call signature ``(hidden_states, temb)`` and same parameter names as diffusers' layer, so state dicts keep
    the teacher's key layout and the step hooks of :mod:`flexdiff.hooks` treat it like any unit.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        groups: int,
        channels_per_group: int,
        mid_groups: int,
        eps: float,
        output_scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.mid_groups = in_channels, out_channels, mid_groups
        self.mid_channels = mid_groups * channels_per_group
        self.output_scale_factor = output_scale_factor
        self.nonlinearity = nn.SiLU()
        if mid_groups > 0:
            self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
            self.conv1 = nn.Conv2d(in_channels, self.mid_channels, 3, padding=1)
            self.time_emb_proj = nn.Linear(temb_channels, self.mid_channels)
            self.norm2 = nn.GroupNorm(mid_groups, self.mid_channels, eps=eps)
            self.conv2 = nn.Conv2d(self.mid_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    @classmethod
    def like(cls, resnet: nn.Module, mid_groups: int) -> "SlimResnet":
        """An (untrained) slim layer with ``resnet``'s input/output shapes and ``mid_groups`` internal groups."""
        groups_out = resnet.norm2.num_groups
        return cls(
            resnet.conv1.in_channels,
            resnet.conv2.out_channels,
            resnet.time_emb_proj.in_features,
            resnet.norm1.num_groups,
            resnet.norm2.num_channels // groups_out,
            mid_groups,
            resnet.norm2.eps,
            float(resnet.output_scale_factor),
        )

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        input_tensor = input_tensor.contiguous()  # see SlimmableResnet.forward: no channels-last GroupNorm backward
        shortcut = self.conv_shortcut(input_tensor) if self.conv_shortcut is not None else input_tensor  # (N, C_out, H, W)
        if self.mid_groups == 0:
            return shortcut / self.output_scale_factor
        h = self.conv1(self.nonlinearity(self.norm1(input_tensor)))  # (N, mid, H, W)
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]  # temb (N, T) -> (N, mid, 1, 1)
        h = self.conv2(self.nonlinearity(self.norm2(h)))  # (N, C_out, H, W)
        return (shortcut + h) / self.output_scale_factor


class NoAttention(nn.Module):
    """A dropped attention layer: returns its input. Accepts the keyword arguments diffusers blocks pass."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


def apply_student(unet: nn.Module, folder: Path) -> None:
    """A ``flexdiff compress`` student (``flexdiff_student.json`` beside ``config.json``): slim the skeleton's blocks."""
    description = folder / STUDENT_FILE
    if description.is_file():
        apply_architecture(unet, read_json_object(description, "a readable UTF-8 JSON config", "the file is corrupt; restore it"), description)
