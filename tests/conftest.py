"""Shared fixtures: a tiny saved pipeline folder (the tiny models themselves: flexdiff.testing.tiny) and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is ever downloaded in tests

import pytest
import torch

from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, load_model, save_model
from flexdiff.testing.tiny import tiny_unet

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pixel-space pipeline folder (unet/ + scheduler/) saved as safetensors."""
    out = tmp_path_factory.mktemp("tiny") / "pipeline"
    save_model(tiny_unet(), out, DEFAULT_SCHEDULER_CONFIG)
    return out


@pytest.fixture()
def tiny_model(tiny_model_dir: Path):
    return load_model(tiny_model_dir, device="cpu")
