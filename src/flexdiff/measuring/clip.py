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
    normalise: bool = True  # L2-normalise the image features (CLIP's and SigLIP's space; DINOv2's are used as they are)

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
        out = self.vision(self.preprocess(images).to(self.device))
        return F.normalize(out, dim=-1) if self.normalise else out

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        if self.text is None or self.tokenizer is None:
            raise FlexdiffError(
                "--clip", "a CLIPModel folder with its text tower and tokenizer (for the CLIP score)", "pass a full CLIP folder, not a vision-only one"
            )
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


def model_folder(spec: str | Path, what: str) -> Path:
    """A local folder, or the repo id of a model in the user's Hugging Face cache (read with ``local_files_only``:
    never a download); ``what`` names the expected model in the one-line error."""
    path = Path(spec).expanduser()
    if path.is_dir() or path.exists():
        return path
    text = str(spec)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):  # owner/name
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except Exception:  # not in the cache (huggingface_hub raises several types)
            raise FlexdiffError(
                text,
                f"{what}: a local folder, or the repo id of one in your Hugging Face cache",
                f"download it once (`hf download {text}`) or pass its folder; flexdiff never downloads",
            ) from None
    raise FlexdiffError(path, f"{what}: an existing local folder or a Hugging Face repo id", "check the path; flexdiff never downloads weights")


def _transformers_folder(path: Path, what: str, model_types: tuple[str, ...]) -> str:
    """The ``model_type`` of a transformers folder with safetensors weights, one of ``model_types``."""
    if not (path / "config.json").is_file():
        raise FlexdiffError(path, what, "check the path; flexdiff never downloads weights")
    if not (path / "model.safetensors").is_file() and not (path / "model.safetensors.index.json").is_file():
        raise FlexdiffError(
            path / "model.safetensors",
            f"{what.split(' (')[0]} weights in safetensors format",
            "convert the weights to safetensors (flexdiff never unpickles weights)",
        )
    config = read_json_object(path / "config.json", "a readable JSON config", "restore the folder")
    model_type = config.get("model_type")
    if model_type not in model_types:
        raise FlexdiffError(path / "config.json", f"{what} (model_type {' or '.join(model_types)}, found {model_type!r})", "pass such a folder")
    return str(model_type)


#: the image towers besides CLIP's, by their ``--features`` name: (accepted model types, default mean, default std)
TOWERS = {
    "siglip": (("siglip", "siglip_vision_model"), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "dinov2": (("dinov2",), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's
}


def load_tower(kind: str, spec: str | Path | None, device: torch.device | str = "cpu") -> Clip:
    """A SigLIP or DINOv2 image tower (transformers ``SiglipModel`` / ``SiglipVisionModel`` / ``Dinov2Model``) from a
    local folder or a repo id in the Hugging Face cache, as a :class:`Clip` without a text tower. Features: SigLIP's
    pooled embedding (L2-normalised, the space it compares images in); DINOv2's CLS token after its final layer norm
    (unnormalised: the FD-DINOv2 features of Stein et al. 2023). Preprocessing as CLIP's (:meth:`Clip.preprocess`),
    with the folder's ``preprocessor_config.json`` mean / std and crop size where given."""
    types, mean_default, std_default = TOWERS[kind]
    what = f"a {kind} folder (config.json + model.safetensors of a transformers model)"
    if spec is None:
        raise FlexdiffError(f"--features {kind}", f"{what}, given with --feature-weights PATH_OR_REPO", "pass --feature-weights")
    path = model_folder(spec, what)
    _transformers_folder(path, what, types)
    transformers = require_transformers(f"the {kind} feature network")
    device = torch.device(device)
    try:
        model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
    except Exception as exc:  # transformers raises many types; one line for the user
        raise FlexdiffError(
            path, f"a loadable {kind} folder", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})"
        ) from None
    model.eval().requires_grad_(False).to(device)
    tower = getattr(model, "vision_model", model)
    config = getattr(model.config, "vision_config", model.config)
    vision = lambda pixels: tower(pixel_values=pixels).pooler_output  # noqa: E731 - SigLIP's pooled head; DINOv2's normed CLS
    mean, std = _normalisation(path / "preprocessor_config.json", (mean_default, std_default))
    size = _crop_size(path / "preprocessor_config.json", int(config.image_size))
    return Clip(
        vision, None, None, size, torch.tensor(mean), torch.tensor(std), int(config.hidden_size), weights_hash(model), device, normalise=kind == "siglip"
    )


def _crop_size(file: Path, default: int) -> int:
    """The square a ``preprocessor_config.json`` crops to (``crop_size``, else ``size``), or ``default``."""
    if not file.is_file():
        return default
    pre = read_json_object(file, "a JSON object", "restore the file or delete it")
    for key in ("crop_size", "size"):
        value = pre.get(key)
        value = value.get("height", value.get("shortest_edge")) if isinstance(value, dict) else value
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def load_clip(path: Path | None, device: torch.device | str = "cpu") -> Clip:
    """Load a CLIP folder (or a repo id in the Hugging Face cache); one-line errors for a missing folder, weights or
    package (never a download)."""
    if path is None:
        raise FlexdiffError("--features clip", f"{CLIP_FOLDER}, given with --clip PATH", "pass --clip DIR")
    path = model_folder(path, CLIP_FOLDER)
    model_type = _transformers_folder(path, CLIP_FOLDER, ("clip", "clip_vision_model"))
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
        raise FlexdiffError(
            path, "a loadable CLIP folder", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})"
        ) from None
    model.eval().requires_grad_(False).to(device)
    tokenizer = None
    tokenizer_files = [path / f for f in ("tokenizer.json", "vocab.json") if (path / f).is_file()]
    if text is not None and tokenizer_files:
        try:
            tokenizer = transformers.CLIPTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # a corrupt vocab.json, a missing merges.txt ...: transformers raises many types
            detail = (str(exc).splitlines() or [""])[0][:120]
            raise FlexdiffError(
                tokenizer_files[0],
                "a loadable CLIP tokenizer (vocab.json + merges.txt, or tokenizer.json)",
                f"restore the CLIP folder's tokenizer files ({exc.__class__.__name__}: {detail})",
            ) from None
    mean, std = _normalisation(path / "preprocessor_config.json")
    return Clip(vision, text, tokenizer, int(vision_config.image_size), torch.tensor(mean), torch.tensor(std), dim, weights_hash(model), device)


def _normalisation(
    file: Path, defaults: tuple[tuple[float, ...], tuple[float, ...]] = (OPENAI_MEAN, OPENAI_STD)
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The image mean / std of a ``preprocessor_config.json`` (``defaults``, OpenAI's, when the file or a key is
    absent); a corrupt file, or values that are not three numbers each, is a one-line error naming the file."""
    if not file.is_file():
        return defaults
    what = "a JSON object whose image_mean and image_std are three numbers each"
    pre = read_json_object(file, what, "restore the file or delete it to use the model's defaults")
    try:
        mean, std = (tuple(float(v) for v in pre.get(key, default)) for key, default in zip(("image_mean", "image_std"), defaults))
    except (TypeError, ValueError) as exc:
        raise FlexdiffError(file, what, f"restore the file or delete it to use the model's defaults ({exc.__class__.__name__})") from None
    if len(mean) != 3 or len(std) != 3 or not all(v > 0 for v in std):
        raise FlexdiffError(
            file,
            f"image_mean and image_std of three numbers each, std > 0 (found {list(mean)}, {list(std)})",
            "restore the file or delete it to use the model's defaults",
        )
    return mean, std
