"""flexdiff: make pretrained diffusion models faster at the same output quality.

Python API mirroring the CLI::

    import flexdiff
    model = flexdiff.load_model("builtin:digits")          # or a local diffusers folder
    images = flexdiff.sample(model, n=256, sampler="ddim", steps=50, seed=0)
    print(flexdiff.fid(images, flexdiff.load_images("builtin:digits-heldout")))
"""

from flexdiff.data import load_images
from flexdiff.errors import FlexdiffError
from flexdiff.executor import apply_schedule
from flexdiff.metrics import fid, frechet_distance
from flexdiff.models import DiffusionModel, load_model
from flexdiff.noise import initial_noise
from flexdiff.samplers import ddim, dpmpp_2m, uniform_timesteps
from flexdiff.sampling import generate, sample

__version__ = "0.1.0"
__all__ = [
    "DiffusionModel",
    "apply_schedule",
    "FlexdiffError",
    "ddim",
    "dpmpp_2m",
    "fid",
    "frechet_distance",
    "generate",
    "initial_noise",
    "load_images",
    "load_model",
    "sample",
    "uniform_timesteps",
]
