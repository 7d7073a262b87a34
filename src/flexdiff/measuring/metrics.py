"""FID, rFID and the paired distance as pure functions over feature tensors; the FID arithmetic is torchmetrics'."""

from __future__ import annotations

import torch
from torch import nn

from flexdiff.errors import FlexdiffError
from flexdiff.measuring.features import get_feature_network
from flexdiff.utils.optional import require


class _Precomputed(nn.Module):
    """Feeds torchmetrics' FID with features we already extracted (its ``feature`` is then the identity)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, D) and ``b`` (M, D) (Heusel et al. 2017).

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``, computed by torchmetrics in float64.
    """
    require("torchmetrics", "search", "FID")
    from torchmetrics.image.fid import FrechetInceptionDistance

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise FlexdiffError(f"{tuple(a.shape)} vs {tuple(b.shape)}", "two (N, D) feature sets with the same D", "extract both with one feature network")
    if len(a) < 2 or len(b) < 2:
        raise FlexdiffError(f"{len(a)} and {len(b)} images", "at least 2 images on each side of FID", "generate more samples")
    metric = FrechetInceptionDistance(feature=_Precomputed(a.shape[1]), reset_real_features=True)
    metric.update(a.double(), real=True)
    metric.update(b.double(), real=False)
    return max(float(metric.compute()), 0.0)  # tiny negative values are round-off of an exact match


def fid(samples: torch.Tensor, reference: torch.Tensor, features: str = "digits", device: str | torch.device = "cpu") -> float:
    """FID between two image sets ``(N, C, H, W)`` in ``[-1, 1]`` with a registered feature network."""
    net = get_feature_network(features, device)
    return frechet_distance(net(reference), net(samples))


def rfid(candidate: torch.Tensor, teacher: torch.Tensor) -> float:
    """rFID (Flexiffusion): Fréchet distance between candidate and teacher features from the same noise."""
    return frechet_distance(teacher, candidate)


def paired_distance(candidate: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean per-image feature distance to its teacher twin (same noise): lower variance than rFID at small n."""
    return float((candidate - teacher).norm(dim=1).mean())


def _pairs(candidate: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, C, H, W) or videos (N, F, C, H, W) in [-1, 1] from the same noise, as float64 frames."""
    if candidate.shape != teacher.shape:
        raise FlexdiffError(
            f"{tuple(candidate.shape)} vs {tuple(teacher.shape)}",
            "candidate and teacher images of one shape (the same noise)",
            "generate both from the same noise",
        )
    return candidate.double().flatten(0, -4), teacher.double().flatten(0, -4)


def psnr(candidate: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean PSNR (dB) of each image (each video frame) against its teacher twin, images in [-1, 1]: torchmetrics'
    ``peak_signal_noise_ratio`` per image, averaged (an image equal to its twin is infinite: the mean then is too)."""
    require("torchmetrics", "search", "PSNR")
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = _pairs(candidate, teacher)
    return float(peak_signal_noise_ratio(a, b, data_range=(-1.0, 1.0), reduction="none", dim=(1, 2, 3)).mean())


def ssim(candidate: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004) of each image (each video frame) against its teacher twin: torchmetrics'
    ``structural_similarity_index_measure`` (11-tap Gaussian window, sigma 1.5) over images in [-1, 1]."""
    require("torchmetrics", "search", "SSIM")
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _pairs(candidate, teacher)
    size = min(11, *a.shape[-2:]) // 2 * 2 - 1 if min(a.shape[-2:]) < 11 else 11  # an odd window inside the image
    return float(structural_similarity_index_measure(a, b, data_range=(-1.0, 1.0), kernel_size=size))
