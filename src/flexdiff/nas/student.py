"""The student on disk: a diffusers-style pipeline folder that :func:`flexdiff.models.load_model` loads like any model.

Layout (safetensors only, never pickle)::

    STUDENT/model_index.json
    STUDENT/scheduler/scheduler_config.json            # the teacher's noise schedule
    STUDENT/unet/config.json                           # the teacher's UNet2DModel config: the skeleton
    STUDENT/unet/flexdiff_student.json                 # per block: internal width of each residual layer, attention
    STUDENT/unet/diffusion_pytorch_model.safetensors   # the student's weights, teacher key names

``load_model`` sees ``flexdiff_student.json``, builds the skeleton from ``config.json``, applies the architecture
(:func:`flexdiff.nas.space.apply_architecture`) and loads the weights strictly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from flexdiff.models import WEIGHTS_NAME
from flexdiff.nas.space import STUDENT_FILE, Architecture


def save_student(unet: nn.Module, arch: Architecture, out: Path, scheduler_config: dict[str, Any], card: dict[str, Any] | None = None) -> None:
    """Write the student folder atomically (into ``OUT.partial``, then renamed): no half-written model."""
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "unet").mkdir(parents=True)
    (tmp / "scheduler").mkdir()
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    config = {"_class_name": "UNet2DModel", **{k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}}
    (tmp / "unet" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (tmp / "unet" / STUDENT_FILE).write_text(json.dumps({**arch.to_json(), **({"card": card} if card else {})}, indent=2) + "\n")
    save_file({k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}, str(tmp / "unet" / WEIGHTS_NAME), metadata={"format": "pt"})
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2) + "\n")
    index = {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", scheduler_config.get("_class_name", "DDPMScheduler")]}
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
