"""Real diffusers pipelines from local folders (LDM, Stable Diffusion), their decoders, prompts and class labels.

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

Prompt files (``--prompts FILE``): UTF-8 (a byte-order mark is dropped), one prompt per line, blank lines skipped.
Lines end at LF or CRLF only: the other characters Python counts as line breaks (U+2028, form feed, ...) stay part of
the prompt, so one line is one prompt and error line numbers match an editor's. A line ``SEED<TAB>prompt``
gives the prompt its own noise seed; a prompt without one gets the run's ``--seed`` + its index (0-based, blank lines
not counted). Image ``i`` of a run takes prompt ``i mod P`` (see :meth:`flexdiff.models.Conditioning.noise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flexdiff.device import resolve_device
from flexdiff.errors import FlexdiffError
from flexdiff.models import Conditioning, DiffusionModel, _read_json, load_component, sample_shape
from flexdiff.noise import NoiseSchedule
from flexdiff.optional import require_transformers

#: diffusers' default guidance scale for Stable Diffusion, used when prompts are given without --guidance.
DEFAULT_GUIDANCE = 7.5
#: latents decoded per VAE call (a 512x512 SD decode holds several activations of 128 x 512 x 512 floats per image).
DECODE_BATCH = 4
PROMPT_FILE_FORMAT = "one prompt per line, or SEED<TAB>prompt"
VAE_NAMES = ("vqvae", "vae")
TEXT_COMPONENTS = ("vae", "text_encoder", "tokenizer")


def components(root: Path) -> dict[str, Any]:
    """The components ``model_index.json`` names (without its ``_`` metadata); {} for a folder without one."""
    index = root / "model_index.json"
    if not index.is_file():
        return {}
    return {k: v for k, v in _read_json(index).items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v != [None, None]}


def is_latent_or_text_pipeline(root: Path) -> bool:
    """True for a pipeline folder that is not a plain pixel DDPM/DDIM one (those load as bare UNet folders do)."""
    index = components(root)
    if not index:
        return False
    unet_config = root / "unet" / "config.json"
    if any(k in index for k in (*VAE_NAMES, "text_encoder", "tokenizer")) or not unet_config.is_file():
        return True
    return _read_json(unet_config).get("_class_name") != "UNet2DModel"


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
        z = latents.to(next(self.vae.parameters()).device) / self.scaling_factor + self.shift_factor
        return torch.cat([self.vae.decode(chunk).sample for chunk in z.split(DECODE_BATCH)])


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


def _safetensors_only(folder: Path) -> None:
    if (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file():
        return
    pickled = sorted(p.name for p in folder.glob("*.bin"))
    hint = f"convert {pickled[0]} to safetensors (flexdiff never unpickles weights)" if pickled else "restore the weights file"
    raise FlexdiffError(folder / "model.safetensors", "transformers weights in safetensors format", hint)


def load_prompt_encoder(text_encoder_dir: Path, tokenizer_dir: Path) -> PromptEncoder:
    """The CLIP text encoder and tokenizer of a Stable Diffusion pipeline, from local files only."""
    transformers = require_transformers("text encoders of Stable Diffusion pipelines")
    config = _read_json(text_encoder_dir / "config.json")
    if config.get("model_type") != "clip_text_model":
        raise FlexdiffError(text_encoder_dir / "config.json", f"a CLIPTextModel (model_type clip_text_model, found {config.get('model_type')!r})", "flexdiff runs Stable Diffusion 1.x/2.x pipelines with CLIP text encoders")
    _safetensors_only(text_encoder_dir)
    try:
        encoder = transformers.CLIPTextModel.from_pretrained(str(text_encoder_dir), local_files_only=True, use_safetensors=True)
    except Exception as exc:  # transformers raises many types; the user needs one line
        raise FlexdiffError(text_encoder_dir, "a loadable CLIPTextModel folder", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    try:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except Exception as exc:
        raise FlexdiffError(tokenizer_dir, "a CLIPTokenizer folder (vocab.json + merges.txt, or tokenizer.json)", f"restore it ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    return PromptEncoder(tokenizer, encoder.eval().requires_grad_(False))


def load_pipeline(root: Path, name: str, device: str | torch.device = "auto") -> DiffusionModel:
    """An LDM or Stable Diffusion pipeline folder as a :class:`DiffusionModel` with its decoder (and text encoder)."""
    index = components(root)
    unet_config = root / "unet" / "config.json"
    if "unet" not in index or not unet_config.is_file():
        found = ", ".join(sorted(index)) or "none"
        raise FlexdiffError(root, f"a UNet pipeline (DDPM, LDM or Stable Diffusion) with unet/config.json (components found: {found})", "pass such a pipeline folder; transformer-based pipelines are not supported")
    unet_class = _read_json(unet_config).get("_class_name")
    if unet_class == "UNet2DConditionModel":
        if "text_encoder_2" in index or "bert" in index:
            raise FlexdiffError(root, "a Stable Diffusion 1.x/2.x pipeline (one CLIP text encoder)", "SDXL and LDM text-to-image (BERT) pipelines are not supported")
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
    unet = load_component(root / "unet", (unet_class,), "pass a DDPM, LDM or Stable Diffusion pipeline folder")
    if getattr(unet.config, "addition_embed_type", None) or (unet_class == "UNet2DConditionModel" and unet.class_embedding is not None):
        raise FlexdiffError(unet_config, "a Stable Diffusion 1.x/2.x UNet (no added or class embeddings)", "SDXL, upscaler and unCLIP UNets are not supported")
    vae = load_component(vae_dir, ("AutoencoderKL", "VQModel"), "the VAE of a latent pipeline must be an AutoencoderKL or a VQModel")
    if int(vae.config.latent_channels) != int(unet.config.in_channels):
        raise FlexdiffError(vae_dir / "config.json", f"latent_channels = the UNet's in_channels ({unet.config.in_channels}), found {vae.config.latent_channels}", "the VAE and the UNet come from different pipelines")
    prompt_encoder = None
    if folders:
        prompt_encoder = load_prompt_encoder(folders["text_encoder"], folders["tokenizer"])
        if prompt_encoder.dim != int(unet.config.cross_attention_dim):
            raise FlexdiffError(folders["text_encoder"], f"hidden_size = the UNet's cross_attention_dim ({unet.config.cross_attention_dim}), found {prompt_encoder.dim}", "the text encoder and the UNet come from different pipelines")
    scheduler_config = _read_json(scheduler_file)
    noise = NoiseSchedule.from_scheduler_config(scheduler_config, scheduler_file)
    shape = sample_shape(unet, unet_config)
    target = resolve_device(device)
    for module in (unet, vae, prompt_encoder.text_encoder if prompt_encoder else None):
        if module is not None:
            module.to(target)
    model = DiffusionModel(
        unet=unet, noise=noise, sample_shape=shape,
        name=name, path=root, scheduler_config=scheduler_config, decoder=LatentDecoder(vae), prompt_encoder=prompt_encoder,
    )
    model.conditioning = default_conditioning(model)
    return model


# --- conditioning: prompts, guidance, labels ---------------------------------------------------------------------


@dataclass(frozen=True)
class PromptEntry:
    """One prompt of a prompt file: its text, its own seed (or None), and the line it came from."""

    prompt: str
    seed: int | None
    line: int


def read_prompt_file(path: str | Path) -> list[PromptEntry]:
    """Parse a prompt file (module docstring); a bad line is a one-line error naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FlexdiffError(path, f"an existing prompt file ({PROMPT_FILE_FORMAT})", "check --prompts")
    try:
        # bytes, not read_text(): its universal newlines would split at a lone \r as well; utf-8-sig drops the BOM
        # Windows editors write, which otherwise became part of the first prompt (and broke its SEED<TAB>)
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FlexdiffError(path, "a UTF-8 text file of prompts", "save it as UTF-8") from None
    except OSError as exc:
        raise FlexdiffError(path, "a readable prompt file", f"check --prompts ({exc.strerror or exc.__class__.__name__})") from None
    entries = []
    # not str.splitlines(): it also splits at U+2028, \x85, form feed ..., turning one prompt into two
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        seed = None
        if "\t" in line:
            seed_text, line = line.split("\t", 1)
            try:
                seed = int(seed_text.strip())
            except ValueError:
                raise FlexdiffError(f"{path}:{number}", f"SEED<TAB>prompt with an integer seed (found {seed_text.strip()!r})", "fix the seed, or drop it and the tab") from None
            if not 0 <= seed < 2**63:
                raise FlexdiffError(f"{path}:{number}", f"a seed in [0, 2**63) (found {seed})", "fix the seed")
            if not line.strip():
                raise FlexdiffError(f"{path}:{number}", "a prompt after the seed and the tab", "write the prompt or delete the line")
        entries.append(PromptEntry(line.strip(), seed, number))
    if not entries:
        raise FlexdiffError(path, f"at least one prompt ({PROMPT_FILE_FORMAT})", "write prompts into the file")
    return entries


def class_count(model: DiffusionModel) -> int | None:
    """Number of classes of a class-conditional UNet2DModel (``num_class_embeds``); None when it takes no labels."""
    if getattr(model.unet, "class_embedding", None) is None or model.prompt_encoder is not None:
        return None
    return int(model.unet.config.num_class_embeds or 0) or None


def default_conditioning(model: DiffusionModel) -> Conditioning | None:
    """What a model is conditioned on without options: the empty prompt (no guidance), labels round-robin, or nothing."""
    if model.prompt_encoder is not None:
        return Conditioning(cond=model.prompt_encoder([""]), description={"prompts": [""]})
    if getattr(model.unet, "class_embedding", None) is None:
        return None
    embed_type = getattr(model.unet.config, "class_embed_type", None)
    if embed_type not in (None, "timestep"):
        raise FlexdiffError(f"class_embed_type {embed_type!r}", "integer class labels (num_class_embeds, or class_embed_type 'timestep')", "this class-conditional UNet is not supported")
    count = class_count(model) or 1
    return Conditioning(labels=torch.arange(count, device=model.device), description={"labels": "round-robin"})


#: Labels become an int64 tensor; a ``class_embed_type="timestep"`` UNet has no class count to bound them, so a
#: larger one failed in torch ("Overflow when unpacking long long").
MAX_LABEL = 2**63 - 1


def parse_labels(text: str, count: int | None) -> list[int]:
    """``--labels 0,3,7`` -> [0, 3, 7], each checked against the model's number of classes (or the int64 range)."""
    try:
        labels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise FlexdiffError(f"--labels {text}", "comma-separated integer class labels, e.g. 0,3,7", "fix --labels") from None
    if not labels:
        raise FlexdiffError(f"--labels {text!r}", "at least one class label", "fix --labels or drop it (labels then go round-robin)")
    bad = [v for v in labels if not 0 <= v < (count or MAX_LABEL + 1)]
    if bad:
        raise FlexdiffError(f"--labels {bad[0]}", f"class labels in [0, {count})" if count else "class labels in [0, 2**63)", "fix --labels")
    return labels


def check_guidance(guidance: float | None) -> None:
    """A classifier-free guidance scale must be finite and >= 0: ``inf`` turned every image into NaN (and NaN too)."""
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):
        raise FlexdiffError(f"--guidance {guidance}", "a finite guidance scale >= 0 (1 = no guidance)", "pass e.g. --guidance 7.5")


def condition(
    model: DiffusionModel,
    *,
    prompts: str | Path | None = None,
    negative_prompt: str | None = None,
    guidance: float | None = None,
    labels: str | None = None,
) -> Conditioning | None:
    """Set (and return) ``model.conditioning`` from the CLI's options; options the model cannot use are errors.

    Text-to-image pipelines: prompts from a file (default: the empty prompt), guidance ``guidance`` (default
    :data:`DEFAULT_GUIDANCE` with prompts, 1 = none without), negative prompt (default: empty). Class-conditional
    UNets: ``labels`` cycled over the images (default: round-robin over every class).
    """
    check_guidance(guidance)
    text_options = [o for o, v in (("--prompts", prompts), ("--negative-prompt", negative_prompt), ("--guidance", guidance)) if v is not None and not (o == "--guidance" and v == 1)]
    if model.prompt_encoder is None and text_options:
        raise FlexdiffError(f"{text_options[0]} on {model.name}", "a text-to-image (Stable Diffusion) pipeline", f"drop {text_options[0]}: this model takes no prompts")
    if labels is not None and getattr(model.unet, "class_embedding", None) is None:
        raise FlexdiffError(f"--labels on {model.name}", "a class-conditional UNet (num_class_embeds)", "drop --labels: this model takes no class labels")
    if model.prompt_encoder is not None:
        entries = read_prompt_file(prompts) if prompts is not None else [PromptEntry("", None, 0)]
        scale = guidance if guidance is not None else (DEFAULT_GUIDANCE if prompts is not None else 1.0)
        if negative_prompt is not None and scale == 1:
            raise FlexdiffError("--negative-prompt", "a guidance scale != 1 (the negative prompt is the unconditional half of classifier-free guidance)", "pass --guidance, e.g. 7.5")
        texts = [e.prompt for e in entries]
        model.conditioning = Conditioning(
            cond=model.prompt_encoder(texts), uncond=model.prompt_encoder([negative_prompt or ""]) if scale != 1 else None, guidance_scale=float(scale),
            seeds=tuple(e.seed for e in entries) if prompts is not None else None,
            description={"prompts": texts, "negative_prompt": negative_prompt, "prompt_file": str(prompts) if prompts is not None else None},
        )
    elif labels is not None:
        values = parse_labels(labels, class_count(model))
        model.conditioning = Conditioning(labels=torch.tensor(values, device=model.device), description={"labels": values})
    return model.conditioning


def image_prompts(model: DiffusionModel, n: int) -> list[str] | None:
    """The prompt of each of ``n`` images (image ``i`` takes prompt ``i mod P``); None without prompts."""
    c = model.conditioning
    texts = c.description.get("prompts") if c is not None else None
    return [texts[i % len(texts)] for i in range(n)] if texts else None


def conditioning_summary(model: DiffusionModel) -> dict[str, Any] | None:
    """What run.json records about the conditioning (prompts, guidance, negative prompt, labels)."""
    c = model.conditioning
    if c is None:
        return None
    return {**c.description, "guidance": c.guidance_scale, "entries": c.entries, "seeds": list(c.seeds) if c.seeds else None}
