"""One supernet per block: every candidate of the block shares the weights of one copy of the teacher's block.

Why a weight-sharing supernet rather than one small training per candidate: a block has up to
``5^layers x 2`` candidates (250 for a three-layer up block with attention, about 800 over the built-in teacher's
seven blocks). Training each one separately for even a hundred steps would cost far more than the whole 40-minute
budget on two CPU cores; one supernet per block, initialised from the teacher's block (so the full-width candidate
*is* the teacher) and trained with a random candidate per step, costs the same as training one block, and after it
every candidate is evaluated by a forward pass. The chosen candidates are then extracted with their trained weights
and initialise the student's retraining.

MACs and parameters of a candidate are additive over the block's units (the residual layers, the attentions, and the
fixed rest: resamplers), so they are counted once per unit option rather than once per candidate.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from flexdiff.models.student import (
    BlockChoice,
    BlockSpec,
    NoAttention,
    block_module,
    num_parameters,
    set_block,
)
from flexdiff.nas.blocks import block_inputs, capture, run_block
from flexdiff.nas.units import SlimmableResnet, SwitchableAttention
from flexdiff.running.cost import count_macs


class BlockSupernet(nn.Module):
    """The teacher's block with slimmable residual layers and switchable attentions (weights shared by all choices)."""

    def __init__(self, teacher_block: nn.Module, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.block = copy.deepcopy(teacher_block)
        for j, resnet in enumerate(teacher_block.resnets):
            self.block.resnets[j] = SlimmableResnet(resnet)
        self.attention_slots = [j for j, a in enumerate(getattr(self.block, "attentions", None) or []) if a is not None]
        for j in self.attention_slots:
            self.block.attentions[j] = SwitchableAttention(self.block.attentions[j])

    def configure(self, choice: BlockChoice) -> None:
        """Make the shared weights run as ``choice``."""
        for resnet, width in zip(self.block.resnets, choice.widths):
            resnet.active = width
        for j in self.attention_slots:
            self.block.attentions[j].on = choice.attention

    def forward(self, hidden: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor) -> list[torch.Tensor]:
        return run_block(self.block, self.spec, hidden, skips, emb)

    def extract(self, choice: BlockChoice, teacher_block: nn.Module) -> nn.Module:
        """A stand-alone diffusers block realising ``choice`` with the supernet's trained weights."""
        block = copy.deepcopy(self.block)
        for j in range(len(block.resnets)):  # full-width layers go back into the teacher's ResnetBlock2D class
            block.resnets[j] = copy.deepcopy(teacher_block.resnets[j])
        for j in self.attention_slots:
            block.attentions[j] = copy.deepcopy(self.block.attentions[j].attention) if choice.attention else NoAttention()
        set_block(block, self.spec, BlockChoice(choice.widths, True), [r.extract(w) for r, w in zip(self.block.resnets, choice.widths)])
        return block.requires_grad_(False).eval()


@dataclass(frozen=True)
class UnitCosts:
    """Per-sample MACs and parameters of a block's units, so any candidate's cost is a sum (see module docstring)."""

    full_macs: int
    full_params: int
    resnet_macs: tuple[dict[int, int], ...]  # per layer: width -> MACs
    resnet_params: tuple[dict[int, int], ...]
    attention_macs: int  # all the block's attentions together
    attention_params: int

    def macs(self, choice: BlockChoice, spec: BlockSpec) -> int:
        m = self.full_macs - (0 if choice.attention or not spec.has_attention else self.attention_macs)
        return m + sum(t[w] - t[g] for t, w, g in zip(self.resnet_macs, choice.widths, spec.groups))

    def params(self, choice: BlockChoice, spec: BlockSpec) -> int:
        p = self.full_params - (0 if choice.attention or not spec.has_attention else self.attention_params)
        return p + sum(t[w] - t[g] for t, w, g in zip(self.resnet_params, choice.widths, spec.groups))


@torch.no_grad()
def unit_costs(supernet: BlockSupernet, teacher_block: nn.Module, example: tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]) -> UnitCosts:
    """Count the block once at full width and once per (layer, width) option on one sample ``example``."""
    spec = supernet.spec
    full = spec.full()

    def block_macs(choice: BlockChoice) -> int:
        supernet.configure(choice)
        macs = count_macs(lambda: supernet(*example))
        supernet.configure(full)
        return macs

    full_macs = block_macs(full)
    resnet_macs, resnet_params = [], []
    for j, resnet in enumerate(supernet.block.resnets):
        macs_j, params_j = {}, {}
        for w in spec.width_options(j):
            widths = list(full.widths)
            widths[j] = w
            macs_j[w] = full_macs if w == spec.groups[j] else block_macs(BlockChoice(tuple(widths), full.attention))
            params_j[w] = num_parameters(resnet.extract(w))
        resnet_macs.append(macs_j)
        resnet_params.append(params_j)
    attention_macs = full_macs - block_macs(BlockChoice(full.widths, False)) if spec.has_attention else 0
    attention_params = sum(num_parameters(supernet.block.attentions[j]) for j in supernet.attention_slots)
    return UnitCosts(full_macs, num_parameters(teacher_block), tuple(resnet_macs), tuple(resnet_params), attention_macs, attention_params)


@torch.no_grad()
def smallest_student(unet: nn.Module, specs: tuple[BlockSpec, ...], sample_shape: tuple[int, int, int], num_train_timesteps: int) -> tuple[int, int, int, int]:
    """(MACs, params) per sample of the smallest student of the space, then of the teacher, before any training.

    Costs do not depend on the weights, so an impossible budget is refused before any work starts. The probe runs at
    ``num_train_timesteps // 2``, inside the model's range (a model trained on 400 timesteps has no t = 500).
    """
    x = torch.zeros((1, *sample_shape), device=next(unet.parameters()).device)
    t = torch.tensor([num_train_timesteps // 2], device=x.device)
    teacher_macs, teacher_params = count_macs(lambda: unet(x, t)), num_parameters(unet)
    with capture(unet, specs) as live:
        unet(x, t)
        example = dict(live)
    macs, params = teacher_macs, teacher_params
    for spec in specs:
        teacher_block = block_module(unet, spec)
        net = BlockSupernet(teacher_block, spec)
        inputs = block_inputs(unet, spec, example)
        full_macs = count_macs(lambda: net(*inputs))
        smallest = BlockChoice(tuple(0 for _ in spec.groups), False)
        net.configure(smallest)
        macs += count_macs(lambda: net(*inputs)) - full_macs
        params += num_parameters(net.extract(smallest, teacher_block)) - num_parameters(teacher_block)
    return macs, params, teacher_macs, teacher_params
