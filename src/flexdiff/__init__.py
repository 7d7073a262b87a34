"""flexdiff: make pretrained diffusion models faster at the same output quality.

Python API mirroring the CLI::

    import flexdiff
    model = flexdiff.load_model("builtin:digits")          # or a local diffusers folder
    plan = flexdiff.deepcache_uniform(flexdiff.teacher_timesteps(model, "ddim", 50), interval=3, branch=0)
    images = flexdiff.sample(model, n=256, seed=0, schedule=plan)
    print(flexdiff.fid(images, flexdiff.load_images("builtin:digits-heldout")))

The names below are imported on first use (PEP 562), so ``import flexdiff`` itself stays light: the command line
and tools that only need one part do not pay for torch, diffusers and optuna up front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flexdiff._version import __version__

#: public name -> the module that defines it
_EXPORTS = {
    "FlexdiffError": "flexdiff.errors",
    "DiffusionModel": "flexdiff.models",
    "Conditioning": "flexdiff.models",
    "load_model": "flexdiff.models",
    "condition": "flexdiff.models",
    "load_images": "flexdiff.data",
    "initial_noise": "flexdiff.noise",
    "fid": "flexdiff.measuring.metrics",
    "frechet_distance": "flexdiff.measuring.metrics",
    "rfid": "flexdiff.measuring.metrics",
    "ddim": "flexdiff.samplers",
    "dpmpp_2m": "flexdiff.samplers",
    "ddim_2m": "flexdiff.samplers",
    "get_sampler": "flexdiff.samplers",
    "sampler_names": "flexdiff.samplers",
    "uniform_timesteps": "flexdiff.samplers",
    "Schedule": "flexdiff.schedule",
    "Step": "flexdiff.schedule",
    "Genome": "flexdiff.schedule",
    "full": "flexdiff.schedule",
    "ddim_k": "flexdiff.schedule",
    "deepcache_uniform": "flexdiff.schedule",
    "deepcache_nonuniform": "flexdiff.schedule",
    "apply_schedule": "flexdiff.running.executor",
    "enable": "flexdiff.integrations",
    "disable": "flexdiff.integrations",
    "enabled": "flexdiff.integrations",
    "pipeline_timesteps": "flexdiff.integrations",
    "generate": "flexdiff.running.own_loop",
    "sample": "flexdiff.either_loop",
    "teacher_timesteps": "flexdiff.running.own_loop",
    "measure_macs": "flexdiff.running.cost",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flexdiff' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from flexdiff.data import load_images  # noqa: F401
    from flexdiff.either_loop import sample  # noqa: F401
    from flexdiff.errors import FlexdiffError  # noqa: F401
    from flexdiff.integrations import disable, enable, enabled, pipeline_timesteps  # noqa: F401
    from flexdiff.measuring.metrics import fid, frechet_distance, rfid  # noqa: F401
    from flexdiff.models import Conditioning, DiffusionModel, condition, load_model  # noqa: F401
    from flexdiff.noise import initial_noise  # noqa: F401
    from flexdiff.running.cost import measure_macs  # noqa: F401
    from flexdiff.running.executor import apply_schedule  # noqa: F401
    from flexdiff.running.own_loop import generate, teacher_timesteps  # noqa: F401
    from flexdiff.samplers import (  # noqa: F401
        ddim,
        ddim_2m,
        dpmpp_2m,
        get_sampler,
        sampler_names,
        uniform_timesteps,
    )
    from flexdiff.schedule import (  # noqa: F401
        Genome,
        Schedule,
        Step,
        ddim_k,
        deepcache_nonuniform,
        deepcache_uniform,
        full,
    )
