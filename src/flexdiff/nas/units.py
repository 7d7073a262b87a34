"""The supernet forms of a student block's units: a residual layer run at any width, an attention switched on or off
(the stand-alone slim layers they extract to are :mod:`flexdiff.models.student`'s).

A diffusers ``ResnetBlock2D`` (``time_embedding_norm="default"``) computes::

    h = conv1(act(norm1(x))) + proj(act(temb))     # (N, C_out, H, W)
    h = conv2(act(norm2(h)))                       # (N, C_out, H, W)
    y = (shortcut(x) + h) / output_scale_factor    # shortcut = 1x1 conv when C_in != C_out, else identity

Its *internal width* is the channel count of ``h`` between conv1 and conv2. :class:`~flexdiff.models.student.SlimResnet` is the same layer
with an internal width of ``k`` whole GroupNorm groups of ``norm2`` (``k * channels_per_group`` channels); the input
and output shapes stay the teacher's, so any slim layer drops into the unmodified diffusers block. ``k = 0`` drops the
residual branch: the layer is its shortcut alone (a 1x1 conv or the identity), which removes the layer's cost while
keeping its skip connection, so the down/up skip structure of the UNet never changes.

:class:`SlimmableResnet` is the supernet form used during block-wise distillation: it holds the teacher's full
weights, internal groups reordered by importance, and runs with the first ``active`` groups. Keeping whole groups keeps
``norm2``'s statistics of the kept channels exact, so a slice of the teacher is a good starting point.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flexdiff.models.student import SlimResnet


class SwitchableAttention(nn.Module):
    """Supernet form of an attention layer: the wrapped diffusers ``Attention`` when ``on``, else the identity."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.attention = attention
        self.on = True

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.attention(hidden_states, *args, **kwargs) if self.on else hidden_states


def _group_order(resnet: nn.Module) -> torch.Tensor:
    """Internal groups by decreasing importance: |gamma of norm2| x ||conv2 input weights||, summed per group.

    A cheap proxy for how much each group contributes to the layer's output (the post-norm scale times the weight
    that carries it out); the supernet training corrects what the proxy gets wrong.
    """
    groups = resnet.norm2.num_groups
    per_channel = resnet.norm2.weight.detach().abs() * resnet.conv2.weight.detach().flatten(2).norm(dim=(0, 2))  # (C_mid,)
    return per_channel.view(groups, -1).sum(1).argsort(descending=True, stable=True)  # (groups,)


class SlimmableResnet(nn.Module):
    """The teacher's ResnetBlock2D with internal groups reordered by importance, run at ``active`` groups.

    Reordering the internal channels of conv1 / proj / norm2 / conv2 consistently is function-preserving, so at
    ``active = groups`` the supernet layer is exactly the teacher's layer.
    """

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.groups = resnet.norm2.num_groups
        self.per_group = resnet.norm2.num_channels // self.groups
        self.eps = resnet.norm2.eps
        self.output_scale_factor = float(resnet.output_scale_factor)
        order = _group_order(resnet)
        channels = (order[:, None] * self.per_group + torch.arange(self.per_group)).flatten()  # (C_mid,) new -> old
        self.norm1 = _copy(resnet.norm1)
        self.conv1 = _copy(resnet.conv1)
        self.time_emb_proj = _copy(resnet.time_emb_proj)
        self.norm2 = _copy(resnet.norm2)
        self.conv2 = _copy(resnet.conv2)
        self.conv_shortcut = _copy(resnet.conv_shortcut) if resnet.conv_shortcut is not None else None
        with torch.no_grad():
            for p in (self.conv1.weight, self.conv1.bias, self.time_emb_proj.weight, self.time_emb_proj.bias, self.norm2.weight, self.norm2.bias):
                p.copy_(p[channels])
            self.conv2.weight.copy_(self.conv2.weight[:, channels])
        self.nonlinearity = nn.SiLU()
        self.active = self.groups

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        # diffusers' Attention returns channels-last strided tensors; supernet training on them segfaulted inside torch's
        # CPU channels-last GroupNorm backward kernel (gdb backtrace, torch 2.13); NCHW inputs never reach that kernel
        input_tensor = input_tensor.contiguous()
        shortcut = self.conv_shortcut(input_tensor) if self.conv_shortcut is not None else input_tensor
        if self.active == 0:
            return shortcut / self.output_scale_factor
        k = self.active * self.per_group
        h = F.conv2d(self.nonlinearity(self.norm1(input_tensor)), self.conv1.weight[:k], self.conv1.bias[:k], padding=1)  # (N, k, H, W)
        h = h + F.linear(self.nonlinearity(temb), self.time_emb_proj.weight[:k], self.time_emb_proj.bias[:k])[:, :, None, None]
        h = F.group_norm(h, self.active, self.norm2.weight[:k], self.norm2.bias[:k], self.eps)
        # a column slice of conv2's weight is a strided view; oneDNN's CPU convolution backward crashes on such weights
        h = F.conv2d(self.nonlinearity(h), self.conv2.weight[:, :k].contiguous(), self.conv2.bias, padding=1)  # (N, C_out, H, W)
        return (shortcut + h) / self.output_scale_factor

    def extract(self, mid_groups: int) -> nn.Module:
        """A stand-alone layer with the first ``mid_groups`` groups: the diffusers layer itself at full width."""
        slim = SlimResnet(
            self.norm1.num_channels,
            self.conv2.out_channels,
            self.time_emb_proj.in_features,
            self.norm1.num_groups,
            self.per_group,
            mid_groups,
            self.eps,
            self.output_scale_factor,
        )
        k = mid_groups * self.per_group
        with torch.no_grad():
            if slim.conv_shortcut is not None:
                slim.conv_shortcut.load_state_dict(self.conv_shortcut.state_dict())
            if mid_groups > 0:
                slim.norm1.load_state_dict(self.norm1.state_dict())
                slim.conv1.weight.copy_(self.conv1.weight[:k])
                slim.conv1.bias.copy_(self.conv1.bias[:k])
                slim.time_emb_proj.weight.copy_(self.time_emb_proj.weight[:k])
                slim.time_emb_proj.bias.copy_(self.time_emb_proj.bias[:k])
                slim.norm2.weight.copy_(self.norm2.weight[:k])
                slim.norm2.bias.copy_(self.norm2.bias[:k])
                slim.conv2.weight.copy_(self.conv2.weight[:, :k])
                slim.conv2.bias.copy_(self.conv2.bias)
        return slim


def _copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)
