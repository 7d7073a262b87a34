"""Step-type hooks on unmodified models (diffusers' ``HookRegistry``), one technique per module, each removable by name.

A backbone's ``reuse`` names the technique its partial steps use: ``output`` (:mod:`.partial_step`, DeepCache: deep
units replay their cached outputs) or ``residual`` (:mod:`.residual_step`, DBCache: the deep blocks add the residual
they added at the latest full step). :func:`apply_partial_steps` attaches the model's technique to every unit.
"""

import torch
from diffusers.hooks import HookRegistry

from flexdiff.backbones import Layout, backbone_of
from flexdiff.errors import FlexdiffError
from flexdiff.hooks.partial_step import HOOK_NAME, PartialStepHook
from flexdiff.hooks.residual_step import HOOK_NAME as RESIDUAL_HOOK_NAME
from flexdiff.hooks.residual_step import ResidualStepHook
from flexdiff.hooks.state import (
    TECHNIQUES,
    StepState,
    Technique,
    extrapolate,
    register_technique,
)
from flexdiff.utils.registry import import_submodules

import_submodules(__name__, __path__)


def apply_partial_steps(module: torch.nn.Module, state: StepState | None = None) -> tuple[Layout, StepState]:
    """Attach the backbone's step hook to every unit of ``module``; raises if flexdiff hooks are already on it."""
    backbone = backbone_of(module)
    layout = backbone.layout(module)
    technique = TECHNIQUES.get(backbone.reuse)
    state = state or StepState()
    backbone.check_hookable(module)
    if any(HookRegistry.check_if_exists_or_initialize(layout.units[0][1]).get_hook(t.hook_name) is not None for _, t in TECHNIQUES.items()):
        raise FlexdiffError(type(module).__name__, "a model without flexdiff hooks", "remove the active schedule first (leave its `with` block)")
    for index, (_, unit) in enumerate(layout.units):
        HookRegistry.check_if_exists_or_initialize(unit).register_hook(technique.make_hook(index, state, layout), technique.hook_name)
    return layout, state


def remove_partial_steps(module: torch.nn.Module) -> None:
    """Take every flexdiff hook off; the model then computes exactly as before they were applied."""
    for _, unit in backbone_of(module).layout(module).units:
        registry = getattr(unit, "_diffusers_hook", None)
        if registry is not None:
            for _, technique in TECHNIQUES.items():
                registry.remove_hook(technique.hook_name, recurse=False)


__all__ = [
    "HOOK_NAME", "RESIDUAL_HOOK_NAME", "TECHNIQUES", "PartialStepHook", "ResidualStepHook", "StepState", "Technique", "apply_partial_steps", "extrapolate",
    "register_technique", "remove_partial_steps",
]
