"""Denoiser families (the backbone contract is :class:`~flexdiff.backbones.base.Backbone`), one per module.

Adding a family is adding a module here that registers an instance (:func:`register_backbone`); :func:`backbone_of`
then finds it for any module of that family, and the backbone contract tests run for it.
"""

from flexdiff.backbones.base import (
    BACKBONES,
    Backbone,
    Branch,
    Layout,
    backbone_of,
    layout_of,
    register_backbone,
)
from flexdiff.utils.registry import import_submodules

import_submodules(__name__, __path__)

from flexdiff.backbones.transformer import (  # noqa: E402 - after discovery
    TransformerBackbone,
    TransformerBranch,
    transformer_layout,
)
from flexdiff.backbones.unet import UNetBackbone, UNetBranch, unet_layout  # noqa: E402

__all__ = [
    "BACKBONES",
    "Backbone",
    "Branch",
    "Layout",
    "TransformerBackbone",
    "TransformerBranch",
    "UNetBackbone",
    "UNetBranch",
    "backbone_of",
    "layout_of",
    "register_backbone",
    "transformer_layout",
    "unet_layout",
]
