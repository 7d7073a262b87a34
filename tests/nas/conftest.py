"""Fixtures of the DiffNAS tests: a tiny teacher folder (tests/conftest.py's UNet) and tiny training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexdiff.data import digits


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 digits downsampled to the tiny UNet's 8x8, as an .npz in [-1, 1]."""
    images = F.interpolate(digits("train")[0][:64], size=(8, 8), mode="bilinear", align_corners=False)
    path = tmp_path_factory.mktemp("data") / "digits8.npz"
    np.savez(path, images=images.numpy().astype(np.float32))
    return path


@pytest.fixture()
def tiny_teacher(tiny_model):
    return tiny_model


def tiny_images() -> torch.Tensor:
    return F.interpolate(digits("train")[0][:64], size=(8, 8), mode="bilinear", align_corners=False)
