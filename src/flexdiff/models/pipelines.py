"""Real diffusers pipelines from local folders (LDM, Stable Diffusion): their VAE decoders and text encoders.

A pipeline folder holds ``model_index.json`` and one sub-folder per component. The kind follows from the
components and the UNet's class:

=====================  ======================  ====================================================================
kind                   UNet                    other components
=====================  ======================  ====================================================================
pixel (DDPM / DDIM)    UNet2DModel             ``scheduler`` (loaded by :func:`flexdiff.models.load_model` itself)
latent (LDM)           UNet2DModel on latents  ``vqvae`` (VQModel) or ``vae`` (AutoencoderKL), ``scheduler``
text-to-image (SD)     UNet2DConditionModel    ``vae`` (AutoencoderKL), ``text_encoder`` (CLIPTextModel),
                                               ``tokenizer`` (CLIPTokenizer), ``scheduler``
=====================  ======================  ====================================================================

The samplers run on latents (``sample_shape`` is one latent); :class:`LatentDecoder` turns the final latents into
images in [-1, 1] at the end of :func:`flexdiff.sampling.generate`, so rFID, FID and saved samples compare decoded
images. The noise schedule is the folder's ``scheduler/scheduler_config.json``. Weights are safetensors only;
transformers components load with ``local_files_only=True``: nothing is ever downloaded.

Prompts, negative prompts, guidance and labels are set by :mod:`flexdiff.models.conditioning`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flexdiff.errors import FlexdiffError
from flexdiff.models.conditioning import default_conditioning
from flexdiff.models.files import (
    load_component,
    read_config,
    safetensors_only,
    sample_shape,
)
from flexdiff.models.model import DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.utils.device import resolve_device
from flexdiff.utils.optional import require_transformers

#: latents decoded per VAE call (a 512x512 SD decode holds several activations of 128 x 512 x 512 floats per image).
DECODE_BATCH = 4
VAE_NAMES = ("vqvae", "vae")
TEXT_COMPONENTS = ("vae", "text_encoder", "tokenizer")


def components(root: Path) -> dict[str, Any]:
    """The components ``model_index.json`` names (without its ``_`` metadata); {} for a folder without one."""
    index = root / "model_index.json"
    if not index.is_file():
        return {}
    return {k: v for k, v in read_config(index).items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v != [None, None]}


def is_latent_or_text_pipeline(root: Path) -> bool:
    """True for a pipeline folder that is not a plain pixel DDPM/DDIM one (those load as bare UNet folders do)."""
    index = components(root)
    if not index:
        return False
    unet_config = root / "unet" / "config.json"
    if any(k in index for k in (*VAE_NAMES, "text_encoder", "tokenizer")) or not unet_config.is_file():
        return True
    return read_config(unet_config).get("_class_name") != "UNet2DModel"


def _component(root: Path, name: str, what: str) -> Path:
    folder = root / name
    if not (folder / "config.json").is_file() and not (name == "tokenizer" and folder.is_dir()):
        raise FlexdiffError(folder, f"the {what} of this pipeline ({name}/ with its config and safetensors weights)", f"restore {name}/ from the original pipeline folder")
    return folder


class LatentDecoder(nn.Module):
    """Latents -> images in [-1, 1]: ``vae.decode(z / scaling_factor + shift_factor)``, as diffusers' pipelines do."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        self.shift_factor = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)

    @property
    def upscale(self) -> int:
        """Pixels per latent along each side: 2 ** (number of VAE resolution levels - 1)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        weight = next(self.vae.parameters())
        z = latents.to(weight.device, weight.dtype) / self.scaling_factor + self.shift_factor
        return torch.cat([self.vae.decode(chunk).sample.float() for chunk in z.split(DECODE_BATCH)])  # images in float32 whatever the VAE's dtype


class PromptEncoder:
    """Prompts -> (P, L, D) text encoder states: tokenized to the encoder's full length, as diffusers' SD pipeline."""

    def __init__(self, tokenizer: Any, text_encoder: nn.Module) -> None:
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.max_length = min(int(tokenizer.model_max_length), int(text_encoder.config.max_position_embeddings))

    @property
    def dim(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.text_encoder.parameters()).device
        out = []
        for i in range(0, len(prompts), 64):
            ids = self.tokenizer(prompts[i : i + 64], padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt").input_ids
            out.append(self.text_encoder(ids.to(device))[0])
        return torch.cat(out)


def load_prompt_encoder(text_encoder_dir: Path, tokenizer_dir: Path, *, torch_dtype: torch.dtype | None = None, variant: str | None = None) -> PromptEncoder:
    """The CLIP text encoder and tokenizer of a Stable Diffusion pipeline, from local files only."""
    transformers = require_transformers("text encoders of Stable Diffusion pipelines")
    config = read_config(text_encoder_dir / "config.json")
    if config.get("model_type") != "clip_text_model":
        raise FlexdiffError(text_encoder_dir / "config.json", f"a CLIPTextModel (model_type clip_text_model, found {config.get('model_type')!r})", "flexdiff runs Stable Diffusion 1.x/2.x pipelines with CLIP text encoders")
    variant = safetensors_only(text_encoder_dir, variant)
    try:
        encoder = transformers.CLIPTextModel.from_pretrained(str(text_encoder_dir), local_files_only=True, use_safetensors=True, variant=variant, torch_dtype=torch_dtype)
    except Exception as exc:  # transformers raises many types; the user needs one line
        raise FlexdiffError(text_encoder_dir, "a loadable CLIPTextModel folder", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    try:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except Exception as exc:
        raise FlexdiffError(tokenizer_dir, "a CLIPTokenizer folder (vocab.json + merges.txt, or tokenizer.json)", f"restore it ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    return PromptEncoder(tokenizer, encoder.eval().requires_grad_(False))


def load_pipeline(root: Path, name: str, device: str | torch.device = "auto", *, torch_dtype: torch.dtype | None = None, variant: str | None = None) -> DiffusionModel:
    """An LDM or Stable Diffusion pipeline folder as a :class:`DiffusionModel` with its decoder (and text encoder)."""
    options = {"torch_dtype": torch_dtype, "variant": variant}
    index = components(root)
    unet_config = root / "unet" / "config.json"
    if "unet" not in index or not unet_config.is_file():
        found = ", ".join(sorted(index)) or "none"
        raise FlexdiffError(root, f"a UNet pipeline (DDPM, LDM or Stable Diffusion) with unet/config.json (components found: {found})", "pass such a pipeline folder; transformer-based pipelines are not supported")
    unet_class = read_config(unet_config).get("_class_name")
    if "text_encoder_2" in index or "controlnet" in index:  # SDXL / ControlNet: their own call drives them
        return load_own_call_pipeline(root, name, device, torch_dtype=torch_dtype, variant=variant)
    if unet_class == "UNet2DConditionModel":
        if "bert" in index:
            raise FlexdiffError(root, "a Stable Diffusion 1.x/2.x pipeline (one CLIP text encoder)", "LDM text-to-image (BERT) pipelines are not supported")
        folders = {c: _component(root, c, what) for c, what in zip(TEXT_COMPONENTS, ("AutoencoderKL", "CLIP text encoder", "CLIP tokenizer"))}
        vae_dir = folders["vae"]
    elif unet_class == "UNet2DModel":
        vae_name = next((v for v in VAE_NAMES if v in index or (root / v).is_dir()), "vqvae")
        vae_dir, folders = _component(root, vae_name, "VQModel or AutoencoderKL"), {}
    else:
        raise FlexdiffError(unet_config, f"a UNet2DModel or UNet2DConditionModel (found {unet_class!r})", "pass a DDPM, LDM or Stable Diffusion pipeline folder")
    scheduler_file = root / "scheduler" / "scheduler_config.json"
    if not scheduler_file.is_file():
        raise FlexdiffError(scheduler_file, "the pipeline's scheduler config (its noise schedule)", "restore scheduler/ from the original pipeline folder")
    unet = load_component(root / "unet", (unet_class,), "pass a DDPM, LDM or Stable Diffusion pipeline folder", **options)
    if getattr(unet.config, "addition_embed_type", None) or (unet_class == "UNet2DConditionModel" and unet.class_embedding is not None):
        raise FlexdiffError(unet_config, "a Stable Diffusion 1.x/2.x UNet (no added or class embeddings)", "SDXL, upscaler and unCLIP UNets are not supported")
    vae = load_component(vae_dir, ("AutoencoderKL", "VQModel"), "the VAE of a latent pipeline must be an AutoencoderKL or a VQModel", **options)
    if int(vae.config.latent_channels) != int(unet.config.in_channels):
        raise FlexdiffError(vae_dir / "config.json", f"latent_channels = the UNet's in_channels ({unet.config.in_channels}), found {vae.config.latent_channels}", "the VAE and the UNet come from different pipelines")
    prompt_encoder = None
    if folders:
        prompt_encoder = load_prompt_encoder(folders["text_encoder"], folders["tokenizer"], **options)
        if prompt_encoder.dim != int(unet.config.cross_attention_dim):
            raise FlexdiffError(folders["text_encoder"], f"hidden_size = the UNet's cross_attention_dim ({unet.config.cross_attention_dim}), found {prompt_encoder.dim}", "the text encoder and the UNet come from different pipelines")
    scheduler_config = read_config(scheduler_file)
    noise = NoiseSchedule.from_scheduler_config(scheduler_config, scheduler_file)
    shape = sample_shape(unet, unet_config)
    target = resolve_device(device)
    for module in (unet, vae, prompt_encoder.text_encoder if prompt_encoder else None):
        if module is not None:
            module.to(target)
    model = DiffusionModel(
        denoiser=unet, noise=noise, sample_shape=shape,
        name=name, path=root, scheduler_config=scheduler_config, decoder=LatentDecoder(vae), prompt_encoder=prompt_encoder,
    )
    model.conditioning = default_conditioning(model)
    return model


def is_pipeline_object(obj: Any) -> bool:
    """True for a diffusers pipeline instance (strings and paths are never one; diffusers is imported only otherwise)."""
    if isinstance(obj, (str, Path)):
        return False
    from diffusers import DiffusionPipeline

    return isinstance(obj, DiffusionPipeline)


class PipelinePromptEncoder:
    """Prompts -> (P, L, D) states by the pipeline's own ``encode_prompt`` (SDXL's two encoders): what the
    conditioning's key and entry count are made of; the pipeline's call encodes the prompt strings itself."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return self.pipe.encode_prompt(prompt=prompts, device=self.pipe.device, num_images_per_prompt=1, do_classifier_free_guidance=False)[0]


def needs_own_call(pipe: Any) -> bool:
    """Pipelines flexdiff's own loop cannot drive: SDXL (added text-time conditions), ControlNet (its residuals)."""
    unet = getattr(pipe, "unet", None)
    return getattr(pipe, "text_encoder_2", None) is not None or bool(getattr(getattr(unet, "config", None), "addition_embed_type", None)) or getattr(pipe, "controlnet", None) is not None


def model_from_pipeline(pipe: Any, name: str | None = None, path: Path | None = None) -> DiffusionModel:
    """A :class:`DiffusionModel` over a pipeline object the user holds: the same UNet, VAE, text encoder and scheduler
    (shared, not copied; dtype and device stay the pipeline's). SDXL and ControlNet pipelines become
    ``pipeline_only`` models (``sampler="pipeline"``: their own call is the only loop that drives them)."""
    kind = type(pipe).__name__
    unet, scheduler = getattr(pipe, "unet", None), getattr(pipe, "scheduler", None)
    if unet is None or scheduler is None:
        raise FlexdiffError(kind, "a pipeline with a unet and a scheduler", "transformer pipelines are not supported yet")
    own_call = needs_own_call(pipe)
    config = {**dict(scheduler.config), "_class_name": type(scheduler).__name__}
    vae = getattr(pipe, "vae", None) or getattr(pipe, "vqvae", None)
    tokenizer, text_encoder = getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)
    encoder: Any = None
    if tokenizer is not None and text_encoder is not None:  # SDXL / ControlNet: the pipeline's own encode_prompt
        encoder = PipelinePromptEncoder(pipe) if own_call else PromptEncoder(tokenizer, text_encoder)
    model = DiffusionModel(
        denoiser=unet, noise=NoiseSchedule.from_scheduler_config(config, f"{kind}.scheduler.config"), sample_shape=sample_shape(unet, Path(f"{kind}.unet.config")),
        name=name or kind, path=path, scheduler_config=config, decoder=LatentDecoder(vae) if vae is not None else None, prompt_encoder=encoder, pipeline=pipe,
        pipeline_only=own_call,
    )
    model.conditioning = default_conditioning(model)
    return model


def load_own_call_pipeline(root: Path, name: str, device: str | torch.device = "auto", *, torch_dtype: torch.dtype | None = None, variant: str | None = None) -> DiffusionModel:
    """An SDXL or ControlNet pipeline folder, loaded by diffusers itself (safetensors only, local files only) as a
    ``pipeline_only`` model: the components and their conditioning inputs are the pipeline's own."""
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    bars = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # a loading bar per component would break the one-line error contract
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(root, use_safetensors=True, local_files_only=True, torch_dtype=torch_dtype, variant=variant)
    except Exception as exc:  # diffusers raises many types on a bad folder; the user needs one line
        raise FlexdiffError(root, "a loadable diffusers pipeline folder with safetensors weights", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    finally:
        if bars:
            diffusers_logging.enable_progress_bar()
    pipe.to(resolve_device(device))
    pipe.set_progress_bar_config(disable=True)
    return model_from_pipeline(pipe, name, root)


def pipeline_of(model: DiffusionModel) -> Any:
    """The diffusers pipeline over ``model``'s own modules and its folder's scheduler as configured (built once, from
    the folder's ``model_index.json`` class, nothing read again from disk): how ``sampler="pipeline"`` generates."""
    if model.pipeline is not None:
        return model.pipeline
    import diffusers

    name = model.scheduler_class
    scheduler_class = getattr(diffusers, name, None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
        raise FlexdiffError(f"scheduler _class_name {name!r}", "a diffusers scheduler class", "fix scheduler/scheduler_config.json")
    index = read_config(model.path / "model_index.json") if model.path is not None and (model.path / "model_index.json").is_file() else {}
    pipeline_name = index.get("_class_name", "DDPMPipeline")
    pipeline_class = getattr(diffusers, pipeline_name, None)
    if pipeline_class is None:
        raise FlexdiffError(f"model_index.json _class_name {pipeline_name!r}", "a diffusers pipeline class", "fix model_index.json")
    parts: dict[str, Any] = {"unet": model.denoiser, "scheduler": scheduler_class.from_config(model.scheduler_config)}
    if isinstance(model.decoder, LatentDecoder):
        parts["vqvae" if "vqvae" in index else "vae"] = model.decoder.vae
    if isinstance(model.prompt_encoder, PromptEncoder):
        parts.update(tokenizer=model.prompt_encoder.tokenizer, text_encoder=model.prompt_encoder.text_encoder)
    accepted = inspect.signature(pipeline_class.__init__).parameters
    parts.update({k: None for k in ("safety_checker", "feature_extractor", "image_encoder") if k in accepted})
    if "requires_safety_checker" in accepted:
        parts["requires_safety_checker"] = False
    try:
        pipe = pipeline_class(**{k: v for k, v in parts.items() if k in accepted})
    except TypeError as exc:
        raise FlexdiffError(f"{pipeline_name} from {model.path}", "a pipeline of a UNet, a scheduler and (for latent pipelines) a VAE and a text encoder", f"this pipeline kind is not supported ({str(exc)[:100]})") from None
    pipe.set_progress_bar_config(disable=True)
    model.pipeline = pipe
    return pipe
