"""Phase 2: block-wise distillation — each block's supernet learns to map the teacher's block input to its output.

Every step draws a batch of recorded rows and one uniformly random candidate of the block (each layer's width and the
attention switch drawn independently), runs the shared weights as that candidate on the teacher's block input and
timestep embedding, and minimises :func:`~flexdiff.nas.blocks.relative_loss` to the teacher's block outputs (DNA-style
block-wise supervision, Li et al. 2020). Adam, cosine-decayed learning rate. After training, every candidate is scored
on the held-out recorded rows (phase 3 reads these scores).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from flexdiff.models.student import BlockChoice, BlockSpec
from flexdiff.nas.blocks import block_inputs, output_keys, relative_loss
from flexdiff.nas.record import Records
from flexdiff.nas.supernet import BlockSupernet


def random_choice(spec: BlockSpec, gen: torch.Generator) -> BlockChoice:
    """Each layer's width uniformly among its options; attention on or off with probability 1/2."""
    widths = []
    for j in range(len(spec.groups)):
        options = spec.width_options(j)
        widths.append(options[int(torch.randint(len(options), (1,), generator=gen))])
    attention = bool(torch.randint(2, (1,), generator=gen)) if spec.has_attention else False
    return BlockChoice(tuple(widths), attention)


def _device(module: nn.Module) -> torch.device:
    """Where a block computes (its teacher's device, e.g. CUDA under --device auto)."""
    return next(module.parameters()).device


def train_supernet(
    supernet: BlockSupernet,
    unet: nn.Module,
    records: Records,
    steps: int,
    gen: torch.Generator,
    lr: float = 5e-4,
    batch_size: int = 64,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``supernet`` for ``steps`` steps on the training rows; returns the per-step losses."""
    spec = supernet.spec
    keys = output_keys(unet, spec)
    scales = records.scales(keys)
    opt = torch.optim.Adam(supernet.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    supernet.train().requires_grad_(True)
    losses = []
    for step in range(steps):
        rows = torch.randint(0, records.n_train, (batch_size,), generator=gen)
        data = records.rows(rows, _device(supernet))
        supernet.configure(random_choice(spec, gen))
        loss = relative_loss(supernet(*block_inputs(unet, spec, data)), [data[k] for k in keys], scales)
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:  # the smallest candidate of a block without resamplers is the identity: nothing to train
            loss.backward()
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, losses[-1])
    supernet.configure(spec.full())
    supernet.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def score_candidates(
    supernet: BlockSupernet,
    unet: nn.Module,
    records: Records,
    choices: list[BlockChoice],
    batch_size: int = 512,
    on_choice: Callable[[], None] | None = None,
) -> list[float]:
    """Relative distillation loss of every candidate on the held-out recorded rows (the same rows for all)."""
    spec = supernet.spec
    keys = output_keys(unet, spec)
    scales = records.scales(keys)
    data = records.rows(records.val, _device(supernet))
    losses = []
    for choice in choices:
        supernet.configure(choice)
        total = 0.0
        for start in range(0, records.n_val, batch_size):
            part = slice(start, min(start + batch_size, records.n_val))
            outs = supernet(*block_inputs(unet, spec, data, part))
            total += float(relative_loss(outs, [data[k][part] for k in keys], scales)) * (part.stop - part.start)
        losses.append(total / records.n_val)
        if on_choice is not None:
            on_choice()
    supernet.configure(spec.full())
    return losses
