"""CLIP from a local folder: image features (the ``clip`` feature network) and the CLIP score of images vs prompts.

The folder is a transformers ``CLIPModel`` (both towers: features and CLIP score) or ``CLIPVisionModelWithProjection``
(features only), with safetensors weights, loaded with ``local_files_only=True``. Images are preprocessed as CLIP's
image processor does — shortest side resized (bicubic) to the model's ``image_size``, centre crop, normalised with
the folder's ``preprocessor_config.json`` mean / std (OpenAI's when absent) — in torch, since transformers' own
processor would want torchvision. Features are the L2-normalised projected image embeddings (the space CLIP score
compares in). CLIP score = ``max(100 * cos(image, prompt), 0)`` per image, averaged over images: Hessel et al. 2021's
per-image clamp, on torchmetrics' scale of 100 (the paper's w is 2.5). It is *not* torchmetrics' ``CLIPScore``, which
averages ``100 * cos`` first and clamps the mean: the two agree while no image scores below 0, and flexdiff's is
higher otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from flexdiff.errors import FlexdiffError
from flexdiff.utils.hashing import weights_hash
from flexdiff.utils.io import read_json_object
from flexdiff.utils.optional import require_transformers

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_FOLDER = "a local CLIP folder (config.json + model.safetensors of a transformers CLIPModel)"


@dataclass
class Clip:
    """A loaded CLIP: vision tower + projection, and (CLIPModel folders) the text tower + tokenizer."""

    vision: Any  # callable pixel_values -> projected embeddings
    text: Any | None  # callable input_ids -> projected embeddings
    tokenizer: Any | None
    image_size: int
    mean: torch.Tensor
    std: torch.Tensor
    dim: int
    weights_hash: str
    device: torch.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> CLIP pixel values (N, 3, S, S): grey to RGB, resize, centre crop, normalise."""
        x = (images.float().clamp(-1, 1) + 1) / 2
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
        h, w = x.shape[-2:]
        scale = self.image_size / min(h, w)
        size = (max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale)))
        if (h, w) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
        x = x[..., top : top + self.image_size, left : left + self.image_size]
        return (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.vision(self.preprocess(images).to(self.device)), dim=-1)

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        if self.text is None or self.tokenizer is None:
            raise FlexdiffError("--clip", "a CLIPModel folder with its text tower and tokenizer (for the CLIP score)", "pass a full CLIP folder, not a vision-only one")
        max_length = min(int(self.tokenizer.model_max_length), 77)
        ids = self.tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt").input_ids
        return F.normalize(self.text(ids.to(self.device)), dim=-1)

    def score(self, images: torch.Tensor, prompts: list[str], batch_size: int = 64) -> float:
        """CLIP score of images (N, C, H, W) in [-1, 1] against their prompts (one per image): each image's
        ``100 * cos`` clamped at 0, then averaged (not torchmetrics' clamp of the mean; module docstring)."""
        if len(prompts) != len(images) or not prompts:
            raise FlexdiffError(f"{len(images)} images, {len(prompts)} prompts", "one prompt per image", "pass the prompts the images were generated from")
        total = 0.0
        for i in range(0, len(images), batch_size):
            cos = (self.image_features(images[i : i + batch_size]) * self.text_features(prompts[i : i + batch_size])).sum(-1)
            total += float((100 * cos).clamp(min=0).sum())
        return total / len(images)


def load_clip(path: Path | None, device: torch.device | str = "cpu") -> Clip:
    """Load a local CLIP folder; one-line errors for a missing folder, weights or package (never a download)."""
    if path is None:
        raise FlexdiffError("--features clip", f"{CLIP_FOLDER}, given with --clip PATH", "pass --clip DIR")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FlexdiffError(path, CLIP_FOLDER, "check --clip; flexdiff never downloads weights")
    if not (path / "model.safetensors").is_file() and not (path / "model.safetensors.index.json").is_file():
        raise FlexdiffError(path / "model.safetensors", "CLIP weights in safetensors format", "convert the weights to safetensors (flexdiff never unpickles weights)")
    config = read_json_object(path / "config.json", "a readable JSON config", "restore the CLIP folder")
    model_type = config.get("model_type")
    if model_type not in ("clip", "clip_vision_model"):
        raise FlexdiffError(path / "config.json", f"a CLIP model (model_type clip or clip_vision_model, found {model_type!r})", "pass a CLIP folder with --clip")
    transformers = require_transformers("the clip feature network")
    device = torch.device(device)
    try:
        if model_type == "clip":
            model = transformers.CLIPModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
            vision_config = model.config.vision_config
            vision = lambda pixels: model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)  # noqa: E731
            text = lambda ids: model.text_projection(model.text_model(input_ids=ids).pooler_output)  # noqa: E731
            dim = int(model.config.projection_dim)
        else:
            model = transformers.CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
            vision_config, text, dim = model.config, None, int(model.config.projection_dim)
            vision = lambda pixels: model(pixel_values=pixels).image_embeds  # noqa: E731
    except Exception as exc:  # transformers raises many types; one line for the user
        raise FlexdiffError(path, "a loadable CLIP folder", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    model.eval().requires_grad_(False).to(device)
    tokenizer = None
    tokenizer_files = [path / f for f in ("tokenizer.json", "vocab.json") if (path / f).is_file()]
    if text is not None and tokenizer_files:
        try:
            tokenizer = transformers.CLIPTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # a corrupt vocab.json, a missing merges.txt ...: transformers raises many types
            detail = (str(exc).splitlines() or [""])[0][:120]
            raise FlexdiffError(tokenizer_files[0], "a loadable CLIP tokenizer (vocab.json + merges.txt, or tokenizer.json)", f"restore the CLIP folder's tokenizer files ({exc.__class__.__name__}: {detail})") from None
    mean, std = _normalisation(path / "preprocessor_config.json")
    return Clip(vision, text, tokenizer, int(vision_config.image_size), torch.tensor(mean), torch.tensor(std), dim, weights_hash(model), device)


def _normalisation(file: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The image mean / std of a ``preprocessor_config.json`` (OpenAI's when the file or a key is absent); a corrupt
    file, or values that are not three numbers each, is a one-line error naming the file."""
    if not file.is_file():
        return OPENAI_MEAN, OPENAI_STD
    what = "a JSON object whose image_mean and image_std are three numbers each"
    pre = read_json_object(file, what, "restore the file or delete it to use OpenAI's values")
    try:
        mean, std = (tuple(float(v) for v in pre.get(key, default)) for key, default in (("image_mean", OPENAI_MEAN), ("image_std", OPENAI_STD)))
    except (TypeError, ValueError) as exc:
        raise FlexdiffError(file, what, f"restore the file or delete it to use OpenAI's values ({exc.__class__.__name__})") from None
    if len(mean) != 3 or len(std) != 3 or not all(v > 0 for v in std):
        raise FlexdiffError(file, f"image_mean and image_std of three numbers each, std > 0 (found {list(mean)}, {list(std)})", "restore the file or delete it to use OpenAI's values")
    return mean, std
