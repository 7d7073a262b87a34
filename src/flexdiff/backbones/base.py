"""The contract a denoiser family implements, so that step types, the genome, the search and the report never ask
which family they hold.

A backbone says, for one module of its family:

- its **units** (the modules step types act on, in execution order) and its **branches** (the cheaper partial steps:
  branch ``b`` replays the units in ``Branch.deep`` from the cache of the latest full step; for a UNet the units
  between a skip connection's producer and consumer, for a transformer the middle blocks of a first-F / last-B split);
- the **step kinds** it supports.

That much makes a module *hookable*: step types attach to it inside its pipeline's own call (``flexdiff.enable``).
A backbone may also make it *drivable* by flexdiff's own loop (:meth:`Backbone.drivable`):

- **how to call it** (:meth:`Backbone.call`: noisy sample, timesteps and conditioning in, network output out);
- **how to probe its cost** (:meth:`Backbone.probe`: a seeded input at a timestep inside the model's range).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flexdiff.errors import FlexdiffError
from flexdiff.utils.registry import Registry


@dataclass(frozen=True)
class Branch:
    """A partial step's depth: ``deep`` are the units it replays from the cache; ``hollow`` those of them whose outputs
    only feed other deep units (they may replay a zero-size view: see :mod:`flexdiff.hooks.partial_step`)."""

    index: int
    label: str  # e.g. "conv_in", "down0.layer1", "down1.downsample"
    deep: range
    hollow: frozenset[int]


@dataclass(frozen=True)
class Layout:
    """The units of a denoiser in execution order, and its branches (0 = shallowest = cheapest partial step)."""

    units: tuple[tuple[str, nn.Module], ...]
    branches: tuple[Branch, ...]

    @property
    def num_branches(self) -> int:
        return len(self.branches)

    @property
    def labels(self) -> tuple[str, ...]:
        """The branch labels in branch order (what ``flexdiff inspect`` prints and schedule files' bindings record)."""
        return tuple(b.label for b in self.branches)


class Backbone(ABC):
    """One denoiser family. Subclasses register an instance with :func:`flexdiff.backbones.register_backbone`."""

    #: registry name, e.g. "unet"
    name: str = ""
    #: what a module of this family is, for error messages
    description: str = ""
    #: what a partial step reuses for its deep units (the hook technique, :mod:`flexdiff.hooks`): "output" (each
    #: deep unit replays its cached output: DeepCache) or "residual" (the deep range adds the residual it added at
    #: the latest full step: DBCache)
    reuse: str = "output"

    @abstractmethod
    def matches(self, module: nn.Module) -> bool:
        """Whether ``module`` belongs to this family (by structure; no forward is run)."""

    @abstractmethod
    def layout(self, module: nn.Module) -> Layout:
        """Units and branches of ``module`` (a one-line error when its layout is one the family does not support)."""

    def check_hookable(self, module: nn.Module) -> None:
        """Refuse a module state in which step hooks would be wrong (e.g. FreeU on a UNet); default: none."""

    def drivable(self, module: nn.Module) -> bool:
        """Whether flexdiff's own loop can :meth:`call` ``module`` (otherwise only its pipeline's call drives it)."""
        return True

    @abstractmethod
    def call(self, module: nn.Module, x: torch.Tensor, t: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        """The network output for a batch ``x`` (N, C, H, W) at timesteps ``t`` (N,), with the family's conditioning
        keywords (``encoder_hidden_states``, ``class_labels``)."""

    def probe(self, sample_shape: tuple[int, ...], num_train_timesteps: int, batch_size: int, device: torch.device) -> tuple[torch.Tensor, int]:
        """A seeded input and a mid-trajectory timestep inside the model's range (a model trained on 400 timesteps has
        no t = 500); MACs do not depend on t."""
        x = torch.randn((batch_size, *sample_shape), generator=torch.Generator().manual_seed(0)).to(device)
        return x, num_train_timesteps // 2


BACKBONES: Registry[Backbone] = Registry("a backbone", "use a model of a supported family")


def register_backbone(backbone: Backbone) -> Backbone:
    return BACKBONES.register(backbone.name, backbone)


def backbone_of(module: nn.Module) -> Backbone:
    """The registered family ``module`` belongs to; a one-line error naming the supported families otherwise."""
    for _, backbone in BACKBONES.items():
        if backbone.matches(module):
            return backbone
    families = "; ".join(f"{b.name}: {b.description}" for _, b in BACKBONES.items())
    raise FlexdiffError(type(module).__name__, f"a denoiser of a supported family ({families})", "step types need a model flexdiff has a backbone for")


def layout_of(module: nn.Module) -> Layout:
    """Units and branches of ``module`` (its backbone's :meth:`~Backbone.layout`)."""
    return backbone_of(module).layout(module)
