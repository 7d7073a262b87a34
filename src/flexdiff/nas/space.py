"""The block-wise search space of DiffNAS: random students of a teacher's blocks (the choices themselves, the
student format and its width options are :mod:`flexdiff.models.student`)."""

from __future__ import annotations

import torch

from flexdiff.models.student import Architecture, BlockSpec


def random_architecture(specs: tuple[BlockSpec, ...], gen: torch.Generator) -> Architecture:
    """A uniformly random choice for every block (tests, the global-ranking baseline)."""
    out = []
    for s in specs:
        options = s.choices()
        out.append((s.name, options[int(torch.randint(len(options), (1,), generator=gen))]))
    return Architecture(tuple(out))
