"""Shared fixtures: tiny seeded diffusers UNets (diffusers-style test sizes) and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is ever downloaded in tests

import pytest
import torch

from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, load_model, save_model

torch.set_num_threads(2)


def tiny_unet(seed: int = 0, sample_size: int = 8, channels: int = 1):
    """A 2-level UNet2DModel with attention at the low resolution and 2 layers per block."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(4, 8),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=2,
        attention_head_dim=4,
    ).eval().requires_grad_(False)  # frozen like a loaded model: oneDNN picks other kernels for trainable weights


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pixel-space pipeline folder (unet/ + scheduler/) saved as safetensors."""
    out = tmp_path_factory.mktemp("tiny") / "pipeline"
    save_model(tiny_unet(), out, DEFAULT_SCHEDULER_CONFIG)
    return out


@pytest.fixture()
def tiny_model(tiny_model_dir: Path):
    return load_model(tiny_model_dir, device="cpu")
