"""Block inputs and outputs of a UNet2DModel forward pass, captured by forward hooks, and a block run on its own.

One forward pass of ``unet(x_t, t)`` is captured as a flat ``dict[str, Tensor]`` (the same layout for the recorded
teacher features on disk and for live activations during retraining):

- ``emb``: the timestep embedding fed to every residual layer, ``(N, T)``
- ``conv_in``: the first skip connection, ``(N, C0, H, W)``
- ``down{d}.{k}``: the ``k``-th output (skip connection) of down block ``d``; the last one is also the hidden state
  the next block receives
- ``mid``: the mid block's output; ``up{u}``: up block ``u``'s output.

From these, every block's inputs follow (down ``d`` reads the previous block's last output, up ``u`` reads the
previous up output plus the skips it consumes, last-in first-out, exactly as ``UNet2DModel.forward`` hands them out),
so a block can be trained and evaluated alone on the teacher's activations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from flexdiff.models.student import BlockSpec, block_module


def _down_keys(unet: nn.Module, d: int) -> list[str]:
    block = unet.down_blocks[d]
    n = len(block.resnets) + (1 if getattr(block, "downsamplers", None) else 0)  # one skip per layer, + downsampler
    return [f"down{d}.{k}" for k in range(n)]


def output_keys(unet: nn.Module, spec: BlockSpec) -> list[str]:
    """Keys of the block's outputs in a capture dict."""
    return _down_keys(unet, spec.index) if spec.kind == "down" else [spec.name]


def skip_keys(unet: nn.Module) -> list[str]:
    """Keys of every skip connection in the order the down path produces them (the branch order of flexdiff.backbones.unet)."""
    return ["conv_in"] + [k for d in range(len(unet.down_blocks)) for k in _down_keys(unet, d)]


def input_keys(unet: nn.Module, spec: BlockSpec) -> tuple[str, list[str]]:
    """(key of the hidden-state input, keys of the skips it consumes — up blocks only)."""
    if spec.kind == "down":
        return ("conv_in" if spec.index == 0 else _down_keys(unet, spec.index - 1)[-1]), []
    if spec.kind == "mid":
        return skip_keys(unet)[-1], []
    stack = skip_keys(unet)
    for u in range(spec.index):
        stack = stack[: -len(unet.up_blocks[u].resnets)]
    consumed = stack[-len(unet.up_blocks[spec.index].resnets) :]
    return ("mid" if spec.index == 0 else f"up{spec.index - 1}"), consumed


def run_block(block: nn.Module, spec: BlockSpec, hidden: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor) -> list[torch.Tensor]:
    """Call a diffusers block (or its supernet) the way UNet2DModel.forward does; its outputs as a list."""
    if spec.kind == "down":
        _, res = block(hidden_states=hidden, temb=emb)
        return list(res)
    if spec.kind == "mid":
        return [block(hidden, emb)]
    return [block(hidden, tuple(skips), emb)]


def block_inputs(
    unet: nn.Module, spec: BlockSpec, data: dict[str, torch.Tensor], index: Any = slice(None)
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """(hidden, skips, emb) of ``spec``'s block for the rows ``index`` of a capture dict."""
    hidden_key, skip_names = input_keys(unet, spec)
    return data[hidden_key][index], [data[k][index] for k in skip_names], data["emb"][index]


def relative_loss(outputs: list[torch.Tensor], targets: list[torch.Tensor], scales: list[float]) -> torch.Tensor:
    """Mean over a block's outputs of ||out - target||^2 / E[target^2] (0 = the teacher's block, 1 = output zero).

    Normalising by the teacher's output power makes the losses of different blocks comparable, so the local search
    can sum them.
    """
    terms = [torch.mean((o - t) ** 2) / s for o, t, s in zip(outputs, targets, scales)]
    return torch.stack(terms).mean()


@contextmanager
def capture(unet: nn.Module, specs: tuple[BlockSpec, ...]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks on conv_in, the time embedding and every block; the dict fills on each forward pass.

    Activations keep their autograd graph (retraining differentiates through the student's captured outputs).
    """
    data: dict[str, torch.Tensor] = {}
    handles = []

    def store(key: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            data[key] = output

        return hook

    def store_down(d: int) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            for k, t in enumerate(output[1]):  # (hidden, res_samples): the res samples are the skips
                data[f"down{d}.{k}"] = t

        return hook

    handles.append(unet.conv_in.register_forward_hook(store("conv_in")))
    handles.append(unet.time_embedding.register_forward_hook(store("emb")))
    for spec in specs:
        block = block_module(unet, spec)
        handles.append(block.register_forward_hook(store_down(spec.index) if spec.kind == "down" else store(spec.name)))
    try:
        yield data
    finally:
        for h in handles:
            h.remove()
