"""Feature networks for FID: a registry, the built-in ``digits`` classifier, and ``clip`` / ``inception`` from local files.

A feature network maps images ``(N, C, H, W)`` in ``[-1, 1]`` to features ``(N, D)``. ``digits`` is a small CNN
trained on the built-in 16x16 digits (``flexdiff train-features``); FID uses its penultimate layer. ``clip`` needs a
local CLIP folder (``--clip PATH``: a transformers ``CLIPModel`` or ``CLIPVisionModelWithProjection`` folder with
safetensors weights; the ``sd`` extra) and also gives the CLIP score of images against prompts. ``inception`` needs
the optional package torch-fidelity and a local FID Inception weights file (``--inception PATH``). Without them
each fails with one line naming the missing folder, file or package; nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from flexdiff.errors import FlexdiffError
from flexdiff.utils.hashing import weights_hash
from flexdiff.utils.registry import Registry

ASSETS = Path(__file__).parent.parent / "assets"
DIGITS_CLASSIFIER = ASSETS / "digits-classifier.safetensors"


class DigitsClassifier(nn.Module):
    """16x16x1 -> 10 classes. ``features`` is the 64-d penultimate layer that feeds FID."""

    feature_dim = 64

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (32, 8, 8)
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (64, 4, 4)
            nn.Flatten(),
            nn.Linear(64 * 16, self.feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, 10))

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """Any (N, C, H, W) in [-1, 1] -> (N, 1, 16, 16): channel mean (grey), then bilinear resize."""
        x = images.float()
        if x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (16, 16):
            x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class FeatureNetwork:
    """A named, frozen image -> feature map, evaluated in batches without gradients.

    ``key`` identifies the weights too (e.g. ``clip@<weights hash>``): the teacher-reference cache is keyed on it.
    """

    def __init__(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], dim: int, device: torch.device, key: str | None = None) -> None:
        self.name, self._fn, self.dim, self.device = name, fn, dim, device
        self.key = key or name

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """(N, dim) features of images (N, C, H, W); of videos (N, F, C, H, W) each frame's, averaged over time (the
        per-frame + temporal-mean features video caching papers score FVD-free fidelity with)."""
        if images.ndim == 5:
            n, frames = images.shape[:2]
            return self(images.flatten(0, 1), batch_size).view(n, frames, -1).mean(1)
        chunks = [self._fn(images[i : i + batch_size].to(self.device)).double().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim, dtype=torch.float64)


FeatureFactory = Callable[..., FeatureNetwork]  # factory(device) or factory(device, path)
FEATURE_NETWORKS: Registry[FeatureFactory] = Registry("a feature network", "pick one with --features")


def register_feature_network(name: str) -> Callable[[FeatureFactory], FeatureFactory]:
    """Decorator: make ``factory(device[, path]) -> FeatureNetwork`` available as ``--features name``.

    ``path`` (local weights: ``--clip`` / ``--inception``) is passed only when the user gave one.
    """
    return FEATURE_NETWORKS.decorator(name)


def feature_network_names() -> list[str]:
    return FEATURE_NETWORKS.names()


def get_feature_network(name: str, device: torch.device | str = "cpu", path: str | Path | None = None) -> FeatureNetwork:
    """The feature network ``name``; ``path`` is its local weights (a CLIP folder, an Inception weights file)."""
    factory = FEATURE_NETWORKS.get(name)
    return factory(torch.device(device)) if path is None else factory(torch.device(device), Path(path).expanduser())  # a repo id reads as a relative path


def load_digits_classifier(path: Path = DIGITS_CLASSIFIER) -> DigitsClassifier:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FlexdiffError(path, "the digits classifier weights", "run `flexdiff train-features` or reinstall flexdiff")
    net = DigitsClassifier()
    net.load_state_dict(load_file(str(path)))
    return net.eval().requires_grad_(False)


@register_feature_network("digits")
def _digits(device: torch.device, path: Path | None = None) -> FeatureNetwork:
    net = load_digits_classifier(path or DIGITS_CLASSIFIER).to(device)
    # keyed by its weights: a retrained classifier (flexdiff train-features) must not reuse cached teacher features
    return FeatureNetwork("digits", net.features, DigitsClassifier.feature_dim, device, key=f"digits@{weights_hash(net)[:16]}")


@register_feature_network("clip")
def _clip(device: torch.device, path: Path | None = None) -> FeatureNetwork:
    from flexdiff.measuring.clip import load_clip

    clip = load_clip(path, device)
    return FeatureNetwork("clip", clip.image_features, clip.dim, device, key=f"clip@{clip.weights_hash[:16]}")


def _tower(kind: str) -> FeatureFactory:
    def factory(device: torch.device, path: Path | None = None) -> FeatureNetwork:
        from flexdiff.measuring.clip import load_tower

        tower = load_tower(kind, path, device)
        return FeatureNetwork(kind, tower.image_features, tower.dim, device, key=f"{kind}@{tower.weights_hash[:16]}")

    factory.__doc__ = f"The {kind} image tower from a local folder or a repo id in the Hugging Face cache (``--feature-weights``)."
    return factory


for _kind in ("siglip", "dinov2"):
    register_feature_network(_kind)(_tower(_kind))


@register_feature_network("inception")
def _inception(device: torch.device, path: Path | None = None) -> FeatureNetwork:
    """torch-fidelity's FID Inception-v3 (pool3, 2048-d) from a local weights file (it never downloads here)."""
    if path is None:
        raise FlexdiffError(
            "--features inception",
            "a local FID Inception weights file given with --inception PATH",
            "pass the file (pt_inception-2015-12-05), or use --features clip --clip DIR",
        )
    if not path.is_file():
        raise FlexdiffError(path, "an existing FID Inception weights file", "check --inception; flexdiff never downloads weights")
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )
    except Exception:  # not installed, or installed without a working torchvision
        raise FlexdiffError(
            "torch-fidelity",
            "the optional package torch-fidelity, importable (the inception feature network)",
            "install torch-fidelity where it imports, or use --features clip --clip DIR",
        ) from None
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)).eval().to(device)

    def features(images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return net(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))[0]

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]  # the file's contents, not its name
    return FeatureNetwork("inception", features, 2048, device, key=f"inception@{digest}")
