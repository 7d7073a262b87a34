"""Feature networks for FID: a registry, and the built-in ``digits`` classifier.

A feature network maps images ``(N, C, H, W)`` in ``[-1, 1]`` to features ``(N, D)``. ``digits`` is a small CNN
trained on the built-in 16x16 digits (``flexdiff train-features``); FID uses its penultimate layer. ``inception`` and
``clip`` are registered names that need local weight files, so asking for them without those fails clearly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from flexdiff.errors import FlexdiffError

ASSETS = Path(__file__).parent / "assets"
DIGITS_CLASSIFIER = ASSETS / "digits-classifier.safetensors"


class DigitsClassifier(nn.Module):
    """16x16x1 -> 10 classes. ``features`` is the 64-d penultimate layer that feeds FID."""

    feature_dim = 64

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (32, 8, 8)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (64, 4, 4)
            nn.Flatten(), nn.Linear(64 * 16, self.feature_dim), nn.ReLU(),
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
    """A named, frozen image -> feature map, evaluated in batches without gradients."""

    def __init__(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], dim: int, device: torch.device) -> None:
        self.name, self._fn, self.dim, self.device = name, fn, dim, device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        chunks = [self._fn(images[i : i + batch_size].to(self.device)).double().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim, dtype=torch.float64)


FeatureFactory = Callable[[torch.device], FeatureNetwork]
_REGISTRY: dict[str, FeatureFactory] = {}


def register_feature_network(name: str) -> Callable[[FeatureFactory], FeatureFactory]:
    """Decorator: make ``factory(device) -> FeatureNetwork`` available as ``--features name``."""

    def decorate(factory: FeatureFactory) -> FeatureFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def feature_network_names() -> list[str]:
    return sorted(_REGISTRY)


def get_feature_network(name: str, device: torch.device | str = "cpu") -> FeatureNetwork:
    if name not in _REGISTRY:
        raise FlexdiffError(name, f"a feature network in {{{', '.join(feature_network_names())}}}", "pick one with --features")
    return _REGISTRY[name](torch.device(device))


def load_digits_classifier(path: Path = DIGITS_CLASSIFIER) -> DigitsClassifier:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FlexdiffError(path, "the digits classifier weights", "run `flexdiff train-features` or reinstall flexdiff")
    net = DigitsClassifier()
    net.load_state_dict(load_file(str(path)))
    return net.eval().requires_grad_(False)


@register_feature_network("digits")
def _digits(device: torch.device) -> FeatureNetwork:
    net = load_digits_classifier().to(device)
    return FeatureNetwork("digits", net.features, DigitsClassifier.feature_dim, device)


def _needs_local_weights(name: str, issue: str) -> FeatureFactory:
    def factory(device: torch.device) -> FeatureNetwork:
        raise FlexdiffError(name, f"local weight files for the {name} feature network", f"not available in this version ({issue}); use --features digits")

    return factory


register_feature_network("inception")(_needs_local_weights("inception", "planned: a local Inception weights file"))
register_feature_network("clip")(_needs_local_weights("clip", "planned: a local CLIP folder via --clip"))
