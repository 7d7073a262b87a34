"""Step-type hooks on unmodified models (diffusers' ``HookRegistry``), one technique per module, each removable by name."""

from flexdiff.hooks.partial_step import (
    HOOK_NAME,
    PartialStepHook,
    StepState,
    apply_partial_steps,
    remove_partial_steps,
)

__all__ = ["HOOK_NAME", "PartialStepHook", "StepState", "apply_partial_steps", "remove_partial_steps"]
