"""Loading a diffusion model: the built-in teacher ``builtin:digits`` or a local diffusers folder; saving one.

Weights are read from safetensors only (never unpickled); nothing is downloaded. Pipeline folders with a VAE or a
text encoder (LDM, Stable Diffusion) are loaded by :mod:`flexdiff.models.pipelines`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.models.conditioning import default_conditioning
from flexdiff.models.files import load_component, read_config, sample_shape
from flexdiff.models.model import DiffusionModel
from flexdiff.models.pipelines import (
    check_call_options,
    is_latent_or_text_pipeline,
    is_pipeline_object,
    load_pipeline,
    model_from_pipeline,
)
from flexdiff.noise import NoiseSchedule, noise_schedule
from flexdiff.utils.device import resolve_device, resolve_dtype
from flexdiff.utils.io import write_json

ASSETS = Path(__file__).parent.parent / "assets"
BUILTIN_MODELS = {"builtin:digits": ASSETS / "digits-teacher", "builtin:digits-dit": ASSETS / "digits-dit"}
#: Pixel transformers a bare ``transformer/`` pipeline folder may hold (latent ones come with their pipeline's VAE).
PIXEL_TRANSFORMERS = ("DiTTransformer2DModel",)
#: The noise schedule assumed when a bare UNet folder carries no scheduler config (DDPM, Ho et al. 2020).
DEFAULT_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "clip_sample": True,
}


def _unet_folder(root: Path) -> tuple[Path, Path | None]:
    """(UNet folder, scheduler config file or None) for a pipeline folder or a bare model folder."""
    if (root / "unet" / "config.json").is_file():
        sched = root / "scheduler" / "scheduler_config.json"
        return root / "unet", sched if sched.is_file() else None
    if (root / "config.json").is_file():
        sched = root / "scheduler_config.json"
        return root, sched if sched.is_file() else None
    raise FlexdiffError(
        root,
        "a diffusers folder: a pipeline with unet/config.json, or a model with config.json",
        "point --model to the folder that holds model_index.json or config.json, or use builtin:digits",
    )


def load_model(
    spec: Any = "builtin:digits",
    device: str | torch.device = "auto",
    *,
    torch_dtype: torch.dtype | str | None = None,
    variant: str | None = None,
    call_options: dict[str, Any] | None = None,
) -> DiffusionModel:
    """Load ``builtin:digits``, a local diffusers folder, or wrap a diffusers pipeline object the user already holds.

    ``torch_dtype`` (e.g. ``torch.float16``) and ``variant`` (``"fp16"``: ``diffusion_pytorch_model.fp16.safetensors``)
    work as in diffusers' ``from_pretrained``; a pipeline object keeps its own modules, dtype and device (it is wrapped,
    not copied: :func:`flexdiff.models.pipelines.model_from_pipeline`). ``call_options`` (``height``, ``width``,
    ``num_frames``, any keyword of the pipeline's call) go to every call of a pipeline its own call drives.

    Accepts a pipeline folder (``model_index.json``: DDPM / DDIM with a pixel ``UNet2DModel``, LDM with a latent
    ``UNet2DModel`` and a VAE, Stable Diffusion; see :mod:`flexdiff.models.pipelines`) or a bare ``UNet2DModel`` folder
    (``config.json`` and ``diffusion_pytorch_model.safetensors``, with an optional ``scheduler_config.json``;
    without one the DDPM linear schedule is assumed).
    """
    if is_pipeline_object(spec):
        return model_from_pipeline(spec, call_options=call_options)
    torch_dtype = resolve_dtype(torch_dtype)
    text = str(spec)
    if text.startswith("builtin:"):
        if text not in BUILTIN_MODELS:
            raise FlexdiffError(text, f"a built-in model in {{{', '.join(BUILTIN_MODELS)}}}", "or pass a diffusers folder")
        root = BUILTIN_MODELS[text]
    else:
        root = Path(text).expanduser()
        if not root.is_dir():
            raise FlexdiffError(text, "an existing diffusers model folder", "check the path, or use builtin:digits")
    if (root / "transformer" / "config.json").is_file() and not (root / "vae").is_dir():
        return _load_pixel_transformer(root, text, device, torch_dtype, variant)
    if is_latent_or_text_pipeline(root):
        return load_pipeline(root, text, device, torch_dtype=torch_dtype, variant=variant, call_options=call_options)
    check_call_options(call_options, False, text)
    unet_dir, scheduler_file = _unet_folder(root)
    unet = load_component(
        unet_dir,
        ("UNet2DModel",),
        "a bare UNet folder must hold a pixel UNet2DModel; a UNet2DConditionModel needs its Stable Diffusion pipeline folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)",
        torch_dtype=torch_dtype,
        variant=variant,
    )
    scheduler_config = read_config(scheduler_file) if scheduler_file else dict(DEFAULT_SCHEDULER_CONFIG)
    noise = NoiseSchedule.from_scheduler_config(scheduler_config, scheduler_file or "the default scheduler config")
    shape = sample_shape(unet, unet_dir / "config.json")
    unet.to(resolve_device(device))
    model = DiffusionModel(
        denoiser=unet,
        noise=noise,
        sample_shape=shape,
        name=text,
        path=root,
        scheduler_config=scheduler_config,
    )
    model.conditioning = default_conditioning(model)  # class-conditional UNet2DModel: labels round-robin
    return model


def _load_pixel_transformer(root: Path, name: str, device: str | torch.device, torch_dtype: torch.dtype | None, variant: str | None) -> DiffusionModel:
    """A pixel-space transformer folder (``transformer/`` + ``scheduler/``, e.g. ``builtin:digits-dit``); a flow-matching
    scheduler config gives the rectified-flow noise schedule (with ``mu`` for the model's token count)."""
    folder = root / "transformer"
    net = load_component(
        folder,
        PIXEL_TRANSFORMERS,
        "a pixel transformer folder holds a DiTTransformer2DModel; latent transformers load with their pipeline folder (vae/)",
        torch_dtype=torch_dtype,
        variant=variant,
    )
    scheduler_file = root / "scheduler" / "scheduler_config.json"
    scheduler_config = read_config(scheduler_file) if scheduler_file.is_file() else dict(DEFAULT_SCHEDULER_CONFIG)
    shape = sample_shape(net, folder / "config.json")
    patch = int(getattr(net.config, "patch_size", 1) or 1)
    noise = noise_schedule(scheduler_config, scheduler_file, image_seq_len=(shape[1] // patch) * (shape[2] // patch))
    net.to(resolve_device(device))
    model = DiffusionModel(denoiser=net, noise=noise, sample_shape=shape, name=name, path=root, scheduler_config=scheduler_config)
    model.conditioning = default_conditioning(model)  # class-conditional DiT: labels round-robin
    return model


def save_model(model_or_net: DiffusionModel | torch.nn.Module, out: Path, scheduler_config: dict[str, Any] | None = None) -> None:
    """Save a denoiser as a diffusers pipeline folder (``model_index.json``, ``unet/`` or ``transformer/``,
    ``scheduler/``), safetensors only. A transformer folder names no diffusers pipeline class (a pixel DiT has no VAE,
    so diffusers' ``DiTPipeline`` cannot drive it): :func:`load_model` reads it."""
    net = model_or_net.denoiser if isinstance(model_or_net, DiffusionModel) else model_or_net
    if scheduler_config is None:
        scheduler_config = model_or_net.scheduler_config if isinstance(model_or_net, DiffusionModel) else DEFAULT_SCHEDULER_CONFIG
    component = "unet" if type(net).__name__.startswith("UNet") else "transformer"
    net.save_pretrained(out / component, safe_serialization=True)
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    write_json(out / "scheduler" / "scheduler_config.json", scheduler_config)
    pipeline = "DDPMPipeline" if component == "unet" else "FlexdiffTransformerPipeline"
    index = {
        "_class_name": pipeline,
        component: ["diffusers", type(net).__name__],
        "scheduler": ["diffusers", scheduler_config.get("_class_name", "DDPMScheduler")],
    }
    write_json(out / "model_index.json", index)
