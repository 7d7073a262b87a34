"""The student on disk: a diffusers-style pipeline folder that :func:`flexdiff.models.load_model` loads like any model.

Layout (safetensors only, never pickle)::

    STUDENT/model_index.json
    STUDENT/scheduler/scheduler_config.json            # the teacher's noise schedule
    STUDENT/unet/config.json                           # the teacher's UNet2DModel config: the skeleton
    STUDENT/unet/flexdiff_student.json                 # per block: internal width of each residual layer, attention
    STUDENT/unet/diffusion_pytorch_model.safetensors   # the student's weights, teacher key names

``load_model`` sees ``flexdiff_student.json``, builds the skeleton from ``config.json``, applies the architecture
(:func:`flexdiff.models.student.apply_architecture`) and loads the weights strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from flexdiff.models.load import save_model
from flexdiff.models.student import STUDENT_FILE, Architecture
from flexdiff.utils.io import folder_as_unit, write_json


def save_student(unet: nn.Module, arch: Architecture, out: Path, scheduler_config: dict[str, Any], card: dict[str, Any] | None = None) -> None:
    """Write the student folder as a unit (the whole old folder or the whole new one): the teacher's skeleton config,
    the architecture description beside it, the weights under the teacher's key names."""
    with folder_as_unit(out) as tmp:
        save_model(unet, tmp, scheduler_config)
        write_json(tmp / "unet" / STUDENT_FILE, {**arch.to_json(), **({"card": card} if card else {})})
