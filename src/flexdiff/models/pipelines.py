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
images in [-1, 1] at the end of :func:`flexdiff.running.own_loop.generate`, so rFID, FID and saved samples compare decoded
images. The noise schedule is the folder's ``scheduler/scheduler_config.json``. Weights are safetensors only;
transformers components load with ``local_files_only=True``: nothing is ever downloaded.

Prompts, negative prompts, guidance and labels are set by :mod:`flexdiff.models.conditioning`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flexdiff.backbones import backbone_of
from flexdiff.errors import FlexdiffError
from flexdiff.models.conditioning import default_conditioning
from flexdiff.models.files import (
    load_component,
    read_config,
    safetensors_only,
    sample_shape,
)
from flexdiff.models.model import DiffusionModel
from flexdiff.noise import NoiseSchedule, pipeline_noise
from flexdiff.samplers import PIPELINE
from flexdiff.utils.device import resolve_device
from flexdiff.utils.optional import require_transformers

#: latents decoded per VAE call (a 512x512 SD decode holds several activations of 128 x 512 x 512 floats per image).
DECODE_BATCH = 4
VAE_NAMES = ("vqvae", "vae")
#: the UNets flexdiff's own loop drives (DDPM, LDM, Stable Diffusion 1.x/2.x); any other denoiser runs in its pipeline
LOOP_UNETS = ("UNet2DModel", "UNet2DConditionModel")
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
        raise FlexdiffError(
            folder, f"the {what} of this pipeline ({name}/ with its config and safetensors weights)", f"restore {name}/ from the original pipeline folder"
        )
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
        raise FlexdiffError(
            text_encoder_dir / "config.json",
            f"a CLIPTextModel (model_type clip_text_model, found {config.get('model_type')!r})",
            "flexdiff runs Stable Diffusion 1.x/2.x pipelines with CLIP text encoders",
        )
    variant = safetensors_only(text_encoder_dir, variant)
    try:
        encoder = transformers.CLIPTextModel.from_pretrained(
            str(text_encoder_dir), local_files_only=True, use_safetensors=True, variant=variant, torch_dtype=torch_dtype
        )
    except Exception as exc:  # transformers raises many types; the user needs one line
        raise FlexdiffError(
            text_encoder_dir, "a loadable CLIPTextModel folder", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})"
        ) from None
    try:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except Exception as exc:
        raise FlexdiffError(
            tokenizer_dir,
            "a CLIPTokenizer folder (vocab.json + merges.txt, or tokenizer.json)",
            f"restore it ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})",
        ) from None
    return PromptEncoder(tokenizer, encoder.eval().requires_grad_(False))


def load_pipeline(
    root: Path,
    name: str,
    device: str | torch.device = "auto",
    *,
    torch_dtype: torch.dtype | None = None,
    variant: str | None = None,
    call_options: dict[str, Any] | None = None,
) -> DiffusionModel:
    """An LDM or Stable Diffusion pipeline folder as a :class:`DiffusionModel` with its decoder (and text encoder)."""
    options = {"torch_dtype": torch_dtype, "variant": variant}
    index = components(root)
    unet_config = root / "unet" / "config.json"
    if "unet" not in index or not unet_config.is_file():
        if any(attr in index for attr in DENOISER_ATTRS):  # a transformer pipeline: its own call drives it
            return load_own_call_pipeline(root, name, device, torch_dtype=torch_dtype, variant=variant, call_options=call_options)
        found = ", ".join(sorted(index)) or "none"
        raise FlexdiffError(
            root,
            f"a diffusers pipeline folder with a denoiser ({', '.join(f'{a}/' for a in DENOISER_ATTRS)}; components found: {found})",
            "point --model to the folder that holds model_index.json",
        )
    unet_class = read_config(unet_config).get("_class_name")
    video_unet = isinstance(unet_class, str) and unet_class.startswith("UNet") and unet_class not in LOOP_UNETS  # AnimateDiff, SVD, ModelScope
    if "text_encoder_2" in index or "controlnet" in index or video_unet:  # SDXL, ControlNet, video UNets: their own call drives them
        return load_own_call_pipeline(root, name, device, torch_dtype=torch_dtype, variant=variant, call_options=call_options)
    if unet_class == "UNet2DConditionModel":
        if "bert" in index:
            raise FlexdiffError(root, "a Stable Diffusion 1.x/2.x pipeline (one CLIP text encoder)", "LDM text-to-image (BERT) pipelines are not supported")
        folders = {c: _component(root, c, what) for c, what in zip(TEXT_COMPONENTS, ("AutoencoderKL", "CLIP text encoder", "CLIP tokenizer"))}
        vae_dir = folders["vae"]
    elif unet_class == "UNet2DModel":
        vae_name = next((v for v in VAE_NAMES if v in index or (root / v).is_dir()), "vqvae")
        vae_dir, folders = _component(root, vae_name, "VQModel or AutoencoderKL"), {}
    else:
        raise FlexdiffError(
            unet_config, f"a UNet2DModel or UNet2DConditionModel (found {unet_class!r})", "pass a DDPM, LDM or Stable Diffusion pipeline folder"
        )
    scheduler_file = root / "scheduler" / "scheduler_config.json"
    if not scheduler_file.is_file():
        raise FlexdiffError(scheduler_file, "the pipeline's scheduler config (its noise schedule)", "restore scheduler/ from the original pipeline folder")
    unet = load_component(root / "unet", (unet_class,), "pass a DDPM, LDM or Stable Diffusion pipeline folder", **options)
    if getattr(unet.config, "addition_embed_type", None) or (unet_class == "UNet2DConditionModel" and unet.class_embedding is not None):
        raise FlexdiffError(unet_config, "a Stable Diffusion 1.x/2.x UNet (no added or class embeddings)", "SDXL, upscaler and unCLIP UNets are not supported")
    vae = load_component(vae_dir, ("AutoencoderKL", "VQModel"), "the VAE of a latent pipeline must be an AutoencoderKL or a VQModel", **options)
    if int(vae.config.latent_channels) != int(unet.config.in_channels):
        raise FlexdiffError(
            vae_dir / "config.json",
            f"latent_channels = the UNet's in_channels ({unet.config.in_channels}), found {vae.config.latent_channels}",
            "the VAE and the UNet come from different pipelines",
        )
    prompt_encoder = None
    if folders:
        prompt_encoder = load_prompt_encoder(folders["text_encoder"], folders["tokenizer"], **options)
        if prompt_encoder.dim != int(unet.config.cross_attention_dim):
            raise FlexdiffError(
                folders["text_encoder"],
                f"hidden_size = the UNet's cross_attention_dim ({unet.config.cross_attention_dim}), found {prompt_encoder.dim}",
                "the text encoder and the UNet come from different pipelines",
            )
    scheduler_config = read_config(scheduler_file)
    noise = NoiseSchedule.from_scheduler_config(scheduler_config, scheduler_file)
    shape = sample_shape(unet, unet_config)
    target = resolve_device(device)
    for module in (unet, vae, prompt_encoder.text_encoder if prompt_encoder else None):
        if module is not None:
            module.to(target)
    model = DiffusionModel(
        denoiser=unet,
        noise=noise,
        sample_shape=shape,
        name=name,
        path=root,
        scheduler_config=scheduler_config,
        decoder=LatentDecoder(vae),
        prompt_encoder=prompt_encoder,
    )
    model.conditioning = default_conditioning(model)
    pipeline_of(model)  # now: a pipeline's constructor may rewrite its scheduler's config (SD's clip_sample), which schedule files bind to
    return model


#: The pipeline attributes that hold a denoiser, in the order a pipeline's loop first calls them (Wan 2.2's
#: ``transformer_2`` is its low-noise expert: the steps after its boundary).
DENOISER_ATTRS = ("unet", "transformer", "transformer_2")


def denoisers_of(pipe: Any) -> list[tuple[str, Any]]:
    """Every denoiser the pipeline holds, as ``(attribute, module)``: each is hooked, with its own cache."""
    return [(attr, m) for attr in DENOISER_ATTRS if isinstance(m := getattr(pipe, attr, None), torch.nn.Module)]


def denoiser_of(pipe: Any) -> Any:
    """The pipeline's (first) denoiser: its ``unet``, or its ``transformer``; None if it has none."""
    found = denoisers_of(pipe)
    return found[0][1] if found else None


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
        params = inspect.signature(self.pipe.encode_prompt).parameters
        # SD3 and Flux take their other encoders' prompts positionally (None: the same prompt); PixArt would clean captions with bs4
        wanted = {
            "prompt": prompts,
            "prompt_2": None,
            "prompt_3": None,
            "device": self.pipe.device,
            "num_images_per_prompt": 1,
            "num_videos_per_prompt": 1,
            "do_classifier_free_guidance": False,
            "clean_caption": False,
        }
        out = self.pipe.encode_prompt(**{k: v for k, v in wanted.items() if k in params})
        return out[0] if isinstance(out, tuple) else out  # the prompt embeddings come first in every diffusers pipeline


def needs_own_call(pipe: Any) -> bool:
    """Pipelines flexdiff's own loop cannot drive: SDXL (added text-time conditions), ControlNet (its residuals), and
    every denoiser other than the UNets of DDPM, LDM and Stable Diffusion (transformers, video UNets: each pipeline
    prepares its own inputs, packing, rotary ids and guidance)."""
    unet = getattr(pipe, "unet", None)
    return (
        getattr(pipe, "text_encoder_2", None) is not None
        or bool(getattr(getattr(unet, "config", None), "addition_embed_type", None))
        or getattr(pipe, "controlnet", None) is not None
        or type(denoiser_of(pipe)).__name__ not in LOOP_UNETS
    )


class _FirstCall(Exception):
    """Raised by :func:`first_denoiser_call`'s hook: the pipeline's call stops at its first denoiser call."""


def first_denoiser_call(pipe: Any, call: dict[str, Any], prompts: dict[str, Any] | None = None) -> tuple[torch.Tensor, tuple[Any, ...], dict[str, Any]]:
    """``pipe(**call)`` run up to its first denoiser call, which does not run: the initial latents the pipeline's
    ``prepare_latents`` made (their shape is what ``latents=`` takes back: packed tokens for Flux, frames for video)
    and that call's arguments (its CFG batch, added conditions, rotary ids, ControlNet residuals). Text encoders and
    image encoders run (answered from ``prompts``, a model's :attr:`~DiffusionModel.prompt_embeddings`, when given);
    no denoiser step does."""
    seen: dict[str, Any] = {}
    original = pipe.prepare_latents

    @functools.wraps(original)
    def prepare_latents(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        seen.setdefault("latents", out[0] if isinstance(out, tuple) else out)
        return out

    def stop(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen["call"] = (args, dict(kwargs))
        raise _FirstCall

    handles = [m.register_forward_pre_hook(stop, with_kwargs=True) for _, m in denoisers_of(pipe)]
    pipe.prepare_latents = prepare_latents
    try:
        with torch.no_grad(), prompts_encoded_once(pipe, prompts) if prompts is not None else nullcontext():
            pipe(**call)
    except _FirstCall:
        pass
    except FlexdiffError:
        raise
    except Exception as exc:  # a pipeline refusing its inputs (an image-to-video one without its image): one line
        raise FlexdiffError(
            f"{type(pipe).__name__}({', '.join(sorted(call))})",
            "a call the pipeline accepts",
            f"pass the inputs it needs with --pipeline-kwargs ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
        ) from None
    finally:
        vars(pipe).pop("prepare_latents", None)
        for handle in handles:
            handle.remove()
    if "call" not in seen or not isinstance(seen.get("latents"), torch.Tensor):
        raise FlexdiffError(type(pipe).__name__, "a pipeline whose call prepares latents and then calls its denoiser", "this pipeline's loop is not supported")
    return seen["latents"], *seen["call"]


def latent_shape(pipe: Any, options: dict[str, Any]) -> tuple[int, ...]:
    """The shape of one sample's initial latents ``pipe`` prepares for a call with ``options``."""
    return tuple(first_denoiser_call(pipe, probe_call(pipe, options))[0].shape[1:])


#: the call's keywords flexdiff sets itself (from --prompts, --guidance, --seed, the noise, --steps): not call options
OWN_KEYWORDS = (
    "prompt",
    "negative_prompt",
    "guidance_scale",
    "latents",
    "generator",
    "num_inference_steps",
    "output_type",
    "return_dict",
    "batch_size",
    "num_images_per_prompt",
    "image",
    "timesteps",
    "sigmas",
    "callback_on_step_end",
)


def check_call_options(options: dict[str, Any] | None, pipeline_driven: bool, name: str) -> None:
    """Pipeline call options (``--height``, ``--pipeline-kwargs`` ...) only where the pipeline's own call runs, and
    never a keyword flexdiff sets from its own options."""
    taken = sorted(set(options or {}) & set(OWN_KEYWORDS))
    if taken:
        raise FlexdiffError(
            f"pipeline option {taken[0]!r}",
            "keywords flexdiff does not set itself",
            "use --prompts, --negative-prompt, --guidance, --steps, --seed or --control-images for it",
        )
    if options and not pipeline_driven:
        raise FlexdiffError(
            f"pipeline options {sorted(options)} on {name}",
            "a pipeline its own call drives (transformers, video, SDXL, ControlNet)",
            "drop them: this model's size is its config's sample_size",
        )


def probe_call(pipe: Any, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The smallest call of ``pipe`` that reaches its denoiser: the empty prompt, two steps, latents out, and the
    user's ``options`` (height, width, num_frames, ...)."""
    params = inspect.signature(pipe.__call__).parameters
    call: dict[str, Any] = {"num_inference_steps": 2, "output_type": "latent", **(options or {})}
    if "prompt" in params and "prompt_embeds" not in call:
        call["prompt"] = ""
    return call


def pipeline_call_args(pipe: Any, model: DiffusionModel, noise: torch.Tensor, steps: int, seeds: Sequence[int], start: int) -> dict[str, Any]:
    """The keyword arguments of ``pipe(...)`` for images ``start ..`` of a run: ``noise`` (their initial latents), their
    prompts as strings (image ``i`` takes prompt ``i mod P``: the pipeline encodes them itself, SDXL's two encoders
    included), negative prompt and guidance, one generator per image."""
    params = inspect.signature(pipe.__call__).parameters
    n = len(noise)
    args: dict[str, Any] = {"num_inference_steps": steps, "generator": [torch.Generator().manual_seed(s) for s in seeds], "output_type": "np"}
    c = model.conditioning
    if c is not None and c.labels is not None:
        raise FlexdiffError(
            f"class labels with sampler {PIPELINE}",
            "a pipeline that takes the conditioning flexdiff holds (prompts)",
            "use flexdiff's own loop (--sampler ddim) for class-conditional models",
        )
    if c is not None and c.cond is not None:
        if "prompt" not in params:
            raise FlexdiffError(type(pipe).__name__, "a text-to-image pipeline that takes prompts", "use flexdiff's own loop (--sampler ddim)")
        texts = c.description.get("prompts") or [""]
        args["prompt"] = [texts[(start + i) % len(texts)] for i in range(n)]
        if c.guided:
            if c.guidance_scale <= 1:
                raise FlexdiffError(
                    f"--guidance {c.guidance_scale:g} with sampler {PIPELINE}",
                    "a guidance scale > 1 (diffusers' pipelines skip guidance at or below 1)",
                    "pass --guidance > 1, or 1 for none",
                )
            args["guidance_scale"] = c.guidance_scale
            if c.description.get("negative_prompt") is not None:  # else the pipeline's own default (SDXL: zeros, SD: "")
                args["negative_prompt"] = [c.description["negative_prompt"]] * n
        else:
            args["guidance_scale"] = 1.0
    if getattr(pipe, "controlnet", None) is not None:  # its conditioning images: image i takes control image i mod K
        if c is None or c.control is None:
            raise FlexdiffError(
                type(pipe).__name__, "control images for the ControlNet", "pass --control-images DIR (Python: flexdiff.condition(model, control_images=DIR))"
            )
        args["image"] = c.control[[(start + i) % len(c.control) for i in range(n)]].to(pipe.device)
    if "latents" in params:
        dtype = next(denoiser_of(pipe).parameters()).dtype
        args["latents"] = noise.to(pipe.device, dtype)
        if "height" in params and noise.ndim == 4 and not model.call_options:  # a UNet's (C, H, W) latents say the size
            scale = int(getattr(pipe, "vae_scale_factor", 1))
            args.update(height=noise.shape[-2] * scale, width=noise.shape[-1] * scale)
    else:
        args["batch_size"] = n
    return {**args, **model.call_options}


def captured_denoiser_call(model: DiffusionModel) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The first denoiser call of ``pipe(...)`` for one image under the model's conditioning (its CFG batch, added
    conditions, rotary ids, ControlNet residuals; :func:`~flexdiff.models.pipelines.first_denoiser_call`), as a
    function of ``(x, t)`` that makes that call once per image of ``x``: the cost model's and the memory check's
    probe. It costs what a step costs; its values are not a prediction at ``(x, t)`` (the call keeps the pipeline's
    own timestep, and its own sample where ``x`` is not shaped like it: SVD concatenates the image latents)."""
    pipe = pipeline_of(model)
    with model.for_images(0, 1):
        _, args, kwargs = first_denoiser_call(
            pipe, {**pipeline_call_args(pipe, model, model.initial_noise(1, 0), 2, [0], start=0), "output_type": "latent"}, model.prompt_embeddings
        )
    args = list(args)
    name = next((k for k in ("sample", "hidden_states") if isinstance(kwargs.get(k), torch.Tensor)), None)
    sample = kwargs[name] if name else args[0]
    denoiser = denoiser_of(pipe)

    def one(x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) == tuple(sample.shape[1:]):  # x in the sample's place, repeated to the call's batch (2 under CFG)
            rows = x.to(sample.device, sample.dtype).expand(sample.shape[0], *x.shape[1:])
            if name:
                kwargs[name] = rows
            else:
                args[0] = rows
        out = denoiser(*args, **kwargs)  # pipelines pass return_dict=False: a tuple
        return (out[0] if isinstance(out, tuple) else out.sample)[:1].float()

    def replay(x: torch.Tensor, t: int) -> torch.Tensor:
        """A batch of ``B`` images costs ``B`` captured one-image calls (the conditioning was captured for one)."""
        return torch.cat([one(x[i : i + 1]) for i in range(x.shape[0])])

    return replay


@contextmanager
def prompts_encoded_once(pipe: Any, cache: dict[str, Any]) -> Iterator[None]:
    """Within the block, ``pipe.encode_prompt`` answers a call it has answered before (the same prompts and options,
    no tensor given) from ``cache`` instead of running the text encoders again: a search calls the pipeline for the
    teacher, every candidate and the validation on the same prompt batches, and a T5-XXL or a Qwen2.5-VL encoder costs
    more than a tiny step. The embeddings are the encoder's own, so the images are bit for bit those of the plain call."""
    original = getattr(pipe, "encode_prompt", None)
    if original is None:
        yield
        return

    @functools.wraps(original)
    def encode_prompt(*args: Any, **kwargs: Any) -> Any:
        values = [*args, *kwargs.values()]
        if any(isinstance(v, torch.Tensor) for v in values):  # precomputed embeddings given: nothing to encode
            return original(*args, **kwargs)
        key = repr((args, sorted(kwargs.items())))
        if key not in cache:
            cache[key] = original(*args, **kwargs)
        out = cache[key]
        return (
            tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in out)
            if isinstance(out, tuple)
            else out.clone()
            if isinstance(out, torch.Tensor)
            else out
        )

    pipe.encode_prompt = encode_prompt
    try:
        yield
    finally:
        vars(pipe).pop("encode_prompt", None)


class LazyReplay:
    """:func:`captured_denoiser_call` made at its first use (the model's conditioning and call options are set by then)."""

    def __init__(self, model: DiffusionModel) -> None:
        self.model, self.replay = model, None

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if self.replay is None:
            self.replay = captured_denoiser_call(self.model)
        return self.replay(x, t)


def model_from_pipeline(pipe: Any, name: str | None = None, path: Path | None = None, call_options: dict[str, Any] | None = None) -> DiffusionModel:
    """A :class:`DiffusionModel` over a pipeline object the user holds: the same UNet, VAE, text encoder and scheduler
    (shared, not copied; dtype and device stay the pipeline's). SDXL and ControlNet pipelines become
    ``pipeline_only`` models (``sampler="pipeline"``: their own call is the only loop that drives them)."""
    kind = type(pipe).__name__
    unet, scheduler = denoiser_of(pipe), getattr(pipe, "scheduler", None)
    if unet is None or scheduler is None:
        raise FlexdiffError(kind, f"a pipeline with a denoiser ({', '.join(DENOISER_ATTRS)}) and a scheduler", "pass a diffusers denoising pipeline")
    for _, denoiser in denoisers_of(pipe):
        backbone_of(denoiser)  # a one-line refusal for a family flexdiff cannot hook, before anything runs
    own_call, loop_unet = needs_own_call(pipe), type(unet).__name__ in LOOP_UNETS
    config = {**dict(scheduler.config), "_class_name": type(scheduler).__name__}
    vae = getattr(pipe, "vae", None) or getattr(pipe, "vqvae", None)
    tokenizer, text_encoder = getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)
    encoder: Any = None
    if text_encoder is not None or "prompt" in inspect.signature(pipe.__call__).parameters and hasattr(pipe, "encode_prompt"):
        # SDXL, ControlNet, transformers: the pipeline's own encode_prompt
        encoder = PipelinePromptEncoder(pipe) if own_call else PromptEncoder(tokenizer, text_encoder)
    # a UNet's sample is (C, H, W) by its config; any other denoiser's latents are what its pipeline prepares (packed
    # tokens, frames): one call up to the denoiser says
    check_call_options(call_options, own_call, kind)
    shape = sample_shape(unet, Path(f"{kind}.unet.config")) if loop_unet else latent_shape(pipe, call_options or {})
    model = DiffusionModel(
        denoiser=unet,
        noise=pipeline_noise(config, f"{kind}.scheduler.config"),
        sample_shape=shape,
        name=name or kind,
        path=path,
        scheduler_config=config,
        decoder=LatentDecoder(vae) if vae is not None and loop_unet else None,
        prompt_encoder=encoder,
        pipeline=pipe,
        pipeline_only=own_call,
        call_options=dict(call_options or {}),
    )
    model.replay = LazyReplay(model) if own_call else None
    model.conditioning = default_conditioning(model)
    return model


def _transformers_bars_off() -> Callable[[], None]:
    """transformers' "Loading weights" bars off (its text encoders load inside diffusers' ``from_pretrained``); returns
    what turns them back on."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # the light install has no transformers: nothing to silence
        return lambda: None
    if not transformers_logging.is_progress_bar_enabled():
        return lambda: None
    transformers_logging.disable_progress_bar()
    return transformers_logging.enable_progress_bar


def load_own_call_pipeline(
    root: Path,
    name: str,
    device: str | torch.device = "auto",
    *,
    torch_dtype: torch.dtype | None = None,
    variant: str | None = None,
    call_options: dict[str, Any] | None = None,
) -> DiffusionModel:
    """A pipeline folder its own call drives (SDXL, ControlNet, transformers, video), loaded by diffusers itself
    (safetensors only, local files only) as a ``pipeline_only`` model: the components and their conditioning inputs
    are the pipeline's own. A component ``model_index.json`` lists as null (SD3 without its T5 encoder, as diffusers
    documents) loads absent."""
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    bars = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # a loading bar per component would break the one-line error contract
    quiet = _transformers_bars_off()
    try:
        absent = {k: None for k, v in read_config(root / "model_index.json").items() if not k.startswith("_") and v == [None, None]}
        pipe = diffusers.DiffusionPipeline.from_pretrained(
            root, use_safetensors=True, local_files_only=True, torch_dtype=torch_dtype, variant=variant, **absent
        )
    except Exception as exc:  # diffusers raises many types on a bad folder; the user needs one line
        raise FlexdiffError(
            root,
            "a loadable diffusers pipeline folder with safetensors weights",
            f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})",
        ) from None
    finally:
        if bars:
            diffusers_logging.enable_progress_bar()
        quiet()
    pipe.to(resolve_device(device))
    pipe.set_progress_bar_config(disable=True)
    return model_from_pipeline(pipe, name, root, call_options)


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
        raise FlexdiffError(
            f"{pipeline_name} from {model.path}",
            "a pipeline of a UNet, a scheduler and (for latent pipelines) a VAE and a text encoder",
            f"this pipeline kind is not supported ({str(exc)[:100]})",
        ) from None
    pipe.set_progress_bar_config(disable=True)
    model.pipeline = pipe
    return pipe
