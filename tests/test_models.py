from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from flexdiff.errors import FlexdiffError
from flexdiff.models import WEIGHTS_NAME, load_model

from conftest import tiny_unet


def test_pipeline_folder_loads_bit_identical(tiny_model_dir: Path) -> None:
    model = load_model(tiny_model_dir, device="cpu")
    reference = tiny_unet()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.unet(x, 10).sample, reference(x, 10).sample)
    assert model.sample_shape == (1, 8, 8)
    assert model.noise.num_train_timesteps == 1000


def test_bare_model_folder_uses_default_schedule(tiny_model_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir / "unet", bare)
    model = load_model(bare, device="cpu")
    assert model.scheduler_config["beta_schedule"] == "linear"


def test_builtin_teacher_loads() -> None:
    model = load_model("builtin:digits", device="cpu")
    assert model.sample_shape == (1, 16, 16)
    config = model.unet.config
    assert len(config.block_out_channels) >= 2 and config.layers_per_block >= 2
    assert any("Attn" in b for b in config.down_block_types)


def _conditional_folder(root: Path) -> Path:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=2, cross_attention_dim=8, sample_size=8, layers_per_block=1, attention_head_dim=2,
    )
    unet.save_pretrained(root, safe_serialization=True)
    return root


def test_bad_folders_get_one_line_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    cases: dict[str, Path] = {"missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    cases["empty"].mkdir()
    cases["conditional"] = _conditional_folder(tmp_path / "cond")
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir / "unet", pickled)
    (pickled / WEIGHTS_NAME).rename(pickled / "diffusion_pytorch_model.bin")
    cases["pickled"] = pickled
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir / "unet", broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "block_out_channels": [8, 16]}))
    cases["mismatched"] = broken
    expected = {"missing": "existing", "empty": "diffusers folder", "conditional": "UNet2DModel", "pickled": "safetensors", "mismatched": "matching"}
    for name, path in cases.items():
        with pytest.raises(FlexdiffError, match=expected[name]) as info:
            load_model(path, device="cpu")
        assert "\n" not in str(info.value), name


def test_unknown_builtin_and_device() -> None:
    with pytest.raises(FlexdiffError, match="built-in model"):
        load_model("builtin:cifar")
    with pytest.raises(FlexdiffError, match="device"):
        load_model("builtin:digits", device="tpu")
