from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.errors import FlexdiffError
from flexdiff.models import BUILTIN_MODELS, WEIGHTS_NAME, load_model
from flexdiff.models.files import sample_shape
from flexdiff.testing.tiny import tiny_unet


def test_pipeline_folder_loads_bit_identical(tiny_model_dir: Path) -> None:
    model = load_model(tiny_model_dir, device="cpu")
    reference = tiny_unet()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.denoiser(x, 10).sample, reference(x, 10).sample)
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
    config = model.denoiser.config
    assert len(config.block_out_channels) >= 2 and config.layers_per_block >= 2
    assert any("Attn" in b for b in config.down_block_types)


def _conditional_folder(root: Path) -> Path:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=2,
        cross_attention_dim=8,
        sample_size=8,
        layers_per_block=1,
        attention_head_dim=2,
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


# --- bad configs in a copy of the built-in teacher: one stderr line naming the file and field, exit code 2 -------

runner = CliRunner()


def _teacher_copy(tmp_path: Path) -> Path:
    root = tmp_path / "teacher"
    shutil.copytree(BUILTIN_MODELS["builtin:digits"], root)
    return root


def _one_line_error(root: Path, *needles: str) -> None:
    result = runner.invoke(app, ["inspect", "--model", str(root)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("name", ["unet/config.json", "model_index.json", "scheduler/scheduler_config.json"])
def test_non_utf8_config_is_one_line(tmp_path: Path, name: str) -> None:
    root = _teacher_copy(tmp_path)
    (root / name).write_bytes(b"\xff\xfe")
    _one_line_error(root, str(root / name), "UTF-8")


@pytest.mark.parametrize(
    "field, value",
    [("beta_schedule", "bogus"), ("num_train_timesteps", -5), ("num_train_timesteps", 0), ("beta_end", "x"), ("beta_end", 3.0), ("prediction_type", "bogus")],
)
def test_bad_scheduler_field_fails_at_load(tmp_path: Path, field: str, value: object) -> None:
    root = _teacher_copy(tmp_path)
    path = root / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))
    _one_line_error(root, str(path), field)


def test_bad_sample_size_is_one_line(tmp_path: Path) -> None:
    root = _teacher_copy(tmp_path)
    path = root / "unet" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "sample_size": "big"}))
    _one_line_error(root, str(path), "sample_size 'big'")


@pytest.mark.parametrize(
    "size, shape", [(8, (1, 8, 8)), ([8, 12], (1, 8, 12)), ("big", None), ([8], None), (None, None), (True, None), ([8, 0], None), (10**6, None)]
)
def test_sample_shape_of_pixel_and_latent_unets(size: object, shape: tuple[int, int, int] | None) -> None:
    """One helper serves bare/pixel folders (models.py) and LDM/SD pipelines (pipelines.py)."""
    unet = SimpleNamespace(config=SimpleNamespace(sample_size=size, in_channels=1))
    if shape is not None:
        assert sample_shape(unet, Path("unet/config.json")) == shape
        return
    with pytest.raises(FlexdiffError, match="unet/config.json: sample_size") as info:
        sample_shape(unet, Path("unet/config.json"))
    assert "\n" not in str(info.value)


def test_a_pipeline_loop_refuses_class_labels_in_one_line() -> None:
    """The pipeline's own loop takes prompts, not the class labels flexdiff holds (this path raised NameError once)."""
    from flexdiff.models.pipelines import pipeline_call_args
    from flexdiff.testing.tiny import tiny_dit_model

    model = tiny_dit_model()
    with pytest.raises(FlexdiffError, match="class labels with sampler pipeline"):
        pipeline_call_args(lambda prompt=None, num_inference_steps=1: None, model, model.initial_noise(1, 0), 2, [0], 0)
