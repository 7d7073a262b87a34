from __future__ import annotations

import pytest
import torch

from flexdiff.data import digits
from flexdiff.errors import FlexdiffError
from flexdiff.measuring.metrics import fid, frechet_distance


def test_identical_feature_sets_have_zero_distance() -> None:
    a = torch.randn(200, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_mean_shift_adds_its_squared_norm() -> None:
    """Same covariance, means apart by d: FID = ||d||^2 exactly (the trace term vanishes)."""
    a = torch.randn(300, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    assert frechet_distance(a, a + d) == pytest.approx(float(d.square().sum()), rel=1e-6)
    assert frechet_distance(a + d, a) == pytest.approx(frechet_distance(a, a + d), rel=1e-9)


def test_scaled_gaussians_match_closed_form() -> None:
    """N(0, I) vs N(0, s^2 I) in D dims: FID = D (1 - s)^2 (up to sampling error)."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(20000, 4, generator=g, dtype=torch.float64)
    b = 3.0 * torch.randn(20000, 4, generator=g, dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(4 * (1 - 3.0) ** 2, rel=0.05)


def test_digits_fid_orders_real_above_noise() -> None:
    train, held = digits("train")[0][:500], digits("heldout")[0]
    noise = torch.rand(500, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real = fid(train, held)
    assert 0 < real < fid(noise, held) / 10


def test_too_few_samples_is_an_error() -> None:
    with pytest.raises(FlexdiffError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))


def test_psnr_and_ssim_of_images_against_their_teacher_twins() -> None:
    """The paired metrics the caching papers report beside FID: torchmetrics' PSNR and SSIM per image, averaged;
    videos frame by frame."""
    from flexdiff.measuring.metrics import psnr, ssim

    teacher = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    shifted = teacher + 0.2  # MSE 0.04 on a peak-to-peak range of 2: 10 log10(4 / 0.04) = 20 dB
    assert psnr(shifted, teacher) == pytest.approx(20.0, abs=1e-6)
    assert psnr(teacher, teacher) == float("inf") and ssim(teacher, teacher) == pytest.approx(1.0)
    noisy = teacher + 0.3 * torch.randn(teacher.shape, generator=torch.Generator().manual_seed(1))
    assert 0 < ssim(noisy, teacher) < ssim(teacher + 0.05 * (noisy - teacher), teacher) < 1
    video = torch.stack([teacher, teacher * 0.5], 1)  # (3, 2 frames, C, H, W), 0.2 below the clamp at 1
    assert psnr(video + 0.2, video) == pytest.approx(20.0, abs=1e-6)
    with pytest.raises(FlexdiffError, match="one shape"):
        psnr(teacher[:2], teacher)
