"""Models: loading a local diffusers folder or the built-in teacher as a :class:`DiffusionModel` (:mod:`.load`,
:mod:`.pipelines`), reading its files strictly (:mod:`.files`), conditioning it (:mod:`.conditioning`), and the
compressed-student format it may carry (:mod:`.student`)."""

from flexdiff.models.conditioning import (
    condition,
    conditioning_summary,
    default_conditioning,
    image_prompts,
    read_prompt_file,
)
from flexdiff.models.load import (
    BUILTIN_MODELS,
    DEFAULT_SCHEDULER_CONFIG,
    load_model,
    save_model,
)
from flexdiff.models.model import WEIGHTS_NAME, Conditioning, DiffusionModel, entry_rows
from flexdiff.models.pipelines import model_from_pipeline, pipeline_of

__all__ = [
    "BUILTIN_MODELS",
    "Conditioning",
    "DEFAULT_SCHEDULER_CONFIG",
    "DiffusionModel",
    "WEIGHTS_NAME",
    "condition",
    "conditioning_summary",
    "default_conditioning",
    "entry_rows",
    "image_prompts",
    "load_model",
    "model_from_pipeline",
    "pipeline_of",
    "read_prompt_file",
    "save_model",
]
