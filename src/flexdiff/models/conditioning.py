"""Conditioning from the user's options: prompt files, negative prompts, guidance, class labels.

Prompt files (``--prompts FILE``): UTF-8 (a byte-order mark is dropped), one prompt per line, blank lines skipped.
Lines end at LF or CRLF only: the other characters Python counts as line breaks (U+2028, form feed, ...) stay part of
the prompt, so one line is one prompt and error line numbers match an editor's. A line ``SEED<TAB>prompt``
gives the prompt its own noise seed; a prompt without one gets the run's ``--seed`` + its index (0-based, blank lines
not counted). Image ``i`` of a run takes prompt ``i mod P`` (see :meth:`flexdiff.models.Conditioning.noise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from flexdiff.data import load_images
from flexdiff.errors import FlexdiffError
from flexdiff.models.model import Conditioning, DiffusionModel

#: diffusers' default guidance scale for Stable Diffusion, used when prompts are given without --guidance.
DEFAULT_GUIDANCE = 7.5
PROMPT_FILE_FORMAT = "one prompt per line, or SEED<TAB>prompt"


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
                raise FlexdiffError(
                    f"{path}:{number}", f"SEED<TAB>prompt with an integer seed (found {seed_text.strip()!r})", "fix the seed, or drop it and the tab"
                ) from None
            if not 0 <= seed < 2**63:
                raise FlexdiffError(f"{path}:{number}", f"a seed in [0, 2**63) (found {seed})", "fix the seed")
            if not line.strip():
                raise FlexdiffError(f"{path}:{number}", "a prompt after the seed and the tab", "write the prompt or delete the line")
        entries.append(PromptEntry(line.strip(), seed, number))
    if not entries:
        raise FlexdiffError(path, f"at least one prompt ({PROMPT_FILE_FORMAT})", "write prompts into the file")
    return entries


def takes_labels(denoiser: torch.nn.Module) -> bool:
    """Whether a denoiser is class-conditional: a UNet with a class embedding, or a DiT (its adaLN embeds the label)."""
    return getattr(denoiser, "class_embedding", None) is not None or type(denoiser).__name__ == "DiTTransformer2DModel"


def class_count(model: DiffusionModel) -> int | None:
    """Number of classes of a class-conditional UNet2DModel (``num_class_embeds``) or DiT (``num_embeds_ada_norm``);
    None when it takes no labels."""
    if not takes_labels(model.denoiser) or model.prompt_encoder is not None:
        return None
    config = model.denoiser.config
    return int(config.get("num_class_embeds") or config.get("num_embeds_ada_norm") or 0) or None


def default_conditioning(model: DiffusionModel) -> Conditioning | None:
    """What a model is conditioned on without options: the empty prompt (no guidance), labels round-robin, or nothing."""
    if model.prompt_encoder is not None:
        return Conditioning(cond=model.prompt_encoder([""]), description={"prompts": [""]})
    if not takes_labels(model.denoiser):
        return None
    embed_type = model.denoiser.config.get("class_embed_type")
    if embed_type not in (None, "timestep"):
        raise FlexdiffError(
            f"class_embed_type {embed_type!r}",
            "integer class labels (num_class_embeds, or class_embed_type 'timestep')",
            "this class-conditional UNet is not supported",
        )
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
    control_images: str | Path | None = None,
) -> Conditioning | None:
    """Set (and return) ``model.conditioning`` from the CLI's options; options the model cannot use are errors.

    A ControlNet pipeline needs ``control_images`` (an image folder or ``.npz``; image ``i`` takes control image
    ``i mod K``); any other model refuses them.

    Text-to-image pipelines: prompts from a file (default: the empty prompt), guidance ``guidance`` (default
    :data:`DEFAULT_GUIDANCE` with prompts, 1 = none without), negative prompt (default: empty). Class-conditional
    UNets: ``labels`` cycled over the images (default: round-robin over every class).
    """
    check_guidance(guidance)
    text_options = [
        o
        for o, v in (("--prompts", prompts), ("--negative-prompt", negative_prompt), ("--guidance", guidance))
        if v is not None and not (o == "--guidance" and v == 1)
    ]
    if model.prompt_encoder is None and text_options:
        raise FlexdiffError(
            f"{text_options[0]} on {model.name}", "a text-to-image (Stable Diffusion) pipeline", f"drop {text_options[0]}: this model takes no prompts"
        )
    if labels is not None and not takes_labels(model.denoiser):
        raise FlexdiffError(
            f"--labels on {model.name}", "a class-conditional UNet (num_class_embeds) or DiT", "drop --labels: this model takes no class labels"
        )
    if model.prompt_encoder is not None:
        entries = read_prompt_file(prompts) if prompts is not None else [PromptEntry("", None, 0)]
        scale = guidance if guidance is not None else (DEFAULT_GUIDANCE if prompts is not None else 1.0)
        if negative_prompt is not None and scale == 1:
            raise FlexdiffError(
                "--negative-prompt",
                "a guidance scale != 1 (the negative prompt is the unconditional half of classifier-free guidance)",
                "pass --guidance, e.g. 7.5",
            )
        texts = [e.prompt for e in entries]
        model.conditioning = Conditioning(
            cond=model.prompt_encoder(texts),
            uncond=model.prompt_encoder([negative_prompt or ""]) if scale != 1 else None,
            guidance_scale=float(scale),
            seeds=tuple(e.seed for e in entries) if prompts is not None else None,
            description={"prompts": texts, "negative_prompt": negative_prompt, "prompt_file": str(prompts) if prompts is not None else None},
        )
    elif labels is not None:
        values = parse_labels(labels, class_count(model))
        model.conditioning = Conditioning(labels=torch.tensor(values, device=model.device), description={"labels": values})
    controlnet = getattr(model.pipeline, "controlnet", None) is not None
    if controlnet != (control_images is not None):
        raise FlexdiffError(
            f"--control-images {control_images}" if control_images is not None else f"{model.name} without --control-images",
            "control images exactly for a ControlNet pipeline",
            "drop --control-images" if control_images is not None else "pass --control-images DIR (the ControlNet's conditioning images)",
        )
    if controlnet:
        control = (load_images(control_images).float().clamp(-1, 1) + 1) / 2  # [-1, 1] -> [0, 1], what diffusers' control image processor takes
        if control.shape[1] == 1:
            control = control.repeat(1, 3, 1, 1)
        base = model.conditioning or Conditioning()
        model.conditioning = replace(base, control=control, description={**base.description, "control_images": str(control_images)})
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
