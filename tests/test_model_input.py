"""Loading as diffusers users load: a pipeline object passed in directly, ``torch_dtype``, weight ``variant``s."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from folders import invoke, ok, one_line_error

import flexdiff
from flexdiff.errors import FlexdiffError


def _sd_pipe(sd_dir: Path):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(sd_dir, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_pipeline_object_is_wrapped_not_copied(sd_dir: Path) -> None:
    pipe = _sd_pipe(sd_dir)
    model = flexdiff.load_model(pipe)
    assert model.denoiser is pipe.unet and model.decoder.vae is pipe.vae and model.pipeline is pipe
    plan = flexdiff.deepcache_uniform(flexdiff.teacher_timesteps(model, "ddim", 6), 3, 0)
    from_folder = flexdiff.load_model(sd_dir, "cpu")
    # the same model either way (the VAE diffusers loaded decodes within float rounding of the one flexdiff loaded: 4e-7)
    torch.testing.assert_close(flexdiff.sample(model, 2, schedule=plan), flexdiff.sample(from_folder, 2, schedule=plan), rtol=0, atol=1e-5)
    assert "_flexdiff_enabled" not in vars(pipe)  # flexdiff's own loop used the UNet, not the pipeline's call
    ours = flexdiff.sample(model, 2, sampler="pipeline", steps=6)  # the user's own pipeline object, its own PNDM
    torch.testing.assert_close(ours, flexdiff.sample(from_folder, 2, sampler="pipeline", steps=6), rtol=0, atol=1e-5)


def test_a_pipeline_flexdiffs_loop_cannot_drive_runs_only_through_its_own_call(sdxl_dir: Path) -> None:
    import diffusers

    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(sdxl_dir)
    pipe.set_progress_bar_config(disable=True)
    model = flexdiff.load_model(pipe)
    assert model.pipeline_only and model.pipeline is pipe
    with pytest.raises(FlexdiffError, match="--sampler pipeline"):
        flexdiff.sample(model, 1, sampler="ddim", steps=4)
    assert flexdiff.sample(model, 2, sampler="pipeline", steps=4).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_torch_dtype_casts_every_module_and_images_stay_float32(dtype: torch.dtype, sd_dir: Path) -> None:
    model = flexdiff.load_model(sd_dir, "cpu", torch_dtype=dtype)
    assert {p.dtype for m in (model.denoiser, model.decoder.vae, model.prompt_encoder.text_encoder) for p in m.parameters()} == {dtype}
    half = flexdiff.sample(model, 2, steps=6)
    full = flexdiff.sample(flexdiff.load_model(sd_dir, "cpu"), 2, steps=6)
    assert half.dtype == torch.float32 and not torch.equal(half, full)
    assert (half - full).abs().max() < 0.1  # the same images, at half precision


def test_dtype_and_variant_options_of_the_cli(sd_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sd"
    shutil.copytree(sd_dir, folder)
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    unet.rename(unet.with_name("diffusion_pytorch_model.fp16.safetensors"))  # only the fp16 variant is there
    one_line_error(invoke("sample", "--model", folder, "--n", "1", "--steps", "3", "--out", tmp_path / "a"), "diffusion_pytorch_model.fp16.safetensors")
    ok(invoke("sample", "--model", folder, "--variant", "fp16", "--dtype", "bf16", "--n", "1", "--steps", "3", "--out", tmp_path / "b"))
    assert (tmp_path / "b" / "samples.npz").is_file()
    one_line_error(invoke("sample", "--model", sd_dir, "--dtype", "fp8", "--n", "1", "--out", tmp_path / "c"), "one of fp32")
    one_line_error(invoke("search", "--model", sd_dir, "--dtype", "int4", "--out", tmp_path / "d"), "one of fp32")


def test_an_sdxl_folder_samples_through_its_own_call_only(sdxl_dir: Path, tmp_path: Path) -> None:
    """``--sampler auto`` (the default) on a pipeline folder is its own call; flexdiff's own solvers are refused."""
    one_line_error(invoke("sample", "--model", sdxl_dir, "--sampler", "ddim", "--n", "1", "--steps", "3", "--out", tmp_path / "a"), "--sampler pipeline")
    assert not (tmp_path / "a").exists()
    ok(invoke("sample", "--model", sdxl_dir, "--n", "2", "--steps", "3", "--out", tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "run.json").read_text())["sampler"] == "pipeline"
