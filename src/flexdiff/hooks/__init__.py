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
from flexdiff.utils.diffusers_private import CACHE_HOOK_PREFIXES, enabled_cache_config, hook_registry
from flexdiff.utils.registry import import_submodules

import_submodules(__name__, __path__)


#: Hook-name prefixes of diffusers' caches (its ``hooks/``: PAB, FasterCache, FirstBlockCache, MagCache, TaylorSeer,
#: SeaCache); the values of private diffusers constants, so they live (and are checked) in ``utils.diffusers_private``.
OTHER_CACHE_HOOKS = CACHE_HOOK_PREFIXES


def other_cache(module: torch.nn.Module) -> str | None:
    """The name of another step cache active on ``module`` (diffusers' ``enable_cache`` or one of its cache hooks on a
    submodule, or cache-dit's), or None. Two caches on one model would each skip work the other assumes was done."""
    if getattr(module, "_is_cached", False):
        return "cache-dit"
    if getattr(module, "is_cache_enabled", False):
        return f"diffusers {type(enabled_cache_config(module)).__name__}"
    for sub in module.modules():
        registry = hook_registry(sub)
        for name in getattr(registry, "hooks", {}):
            if name.startswith(OTHER_CACHE_HOOKS):
                return f"diffusers hook {name}"
    return None


def apply_partial_steps(module: torch.nn.Module, state: StepState | None = None, technique: str | None = None) -> tuple[Layout, StepState]:
    """Attach the backbone's step hook (or the registered ``technique``'s: the hook-technique contract suite runs each
    technique on the models it is for) to every unit of ``module``; raises if flexdiff hooks, or another cache, are
    already on it."""
    backbone = backbone_of(module)
    cache = other_cache(module)
    if cache is not None:
        raise FlexdiffError(
            f"{type(module).__name__} with {cache} active",
            "a denoiser without another step cache (the schedule is flexdiff's cache)",
            "disable the other cache first (pipe.transformer.disable_cache(), cache_dit.disable_cache(pipe))",
        )
    layout = backbone.layout(module)
    hook = TECHNIQUES.get(technique or backbone.reuse)
    state = state or StepState()
    backbone.check_hookable(module)
    if any(HookRegistry.check_if_exists_or_initialize(layout.units[0][1]).get_hook(t.hook_name) is not None for _, t in TECHNIQUES.items()):
        raise FlexdiffError(type(module).__name__, "a model without flexdiff hooks", "remove the active schedule first (leave its `with` block)")
    for index, (_, unit) in enumerate(layout.units):
        HookRegistry.check_if_exists_or_initialize(unit).register_hook(hook.make_hook(index, state, layout), hook.hook_name)
    return layout, state


def remove_partial_steps(module: torch.nn.Module) -> None:
    """Take every flexdiff hook off; the model then computes exactly as before they were applied."""
    for _, unit in backbone_of(module).layout(module).units:
        registry = hook_registry(unit)
        if registry is not None:
            for _, technique in TECHNIQUES.items():
                registry.remove_hook(technique.hook_name, recurse=False)


__all__ = [
    "HOOK_NAME",
    "RESIDUAL_HOOK_NAME",
    "TECHNIQUES",
    "PartialStepHook",
    "ResidualStepHook",
    "StepState",
    "Technique",
    "apply_partial_steps",
    "extrapolate",
    "register_technique",
    "remove_partial_steps",
]
