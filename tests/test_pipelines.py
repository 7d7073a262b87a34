"""Real pipelines end to end: tiny random LDM and Stable Diffusion folders (and a tiny CLIP), built in-process and
saved like diffusers / transformers save them, driven through the CLI with guidance on and off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from folders import SEARCH, invoke, ok, one_line_error, write_index
from typer.testing import CliRunner

from flexdiff.errors import FlexdiffError
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, load_model, save_model

pytest.importorskip("transformers")  # the `sd` extra; the `test` extra installs it

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine OpenMP barriers stall them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images_of(folder: Path) -> np.ndarray:
    with np.load(folder / "samples.npz") as f:
        return f["images"]


# --- loading and decoding ----------------------------------------------------------------------------------------


def test_sd_loads_with_decoder_and_empty_prompt(sd_dir: Path) -> None:
    from diffusers import AutoencoderKL

    from flexdiff.running.own_loop import generate

    model = load_model(sd_dir, "cpu")
    assert model.sample_shape == (4, 8, 8) and model.decoder is not None and model.prompt_encoder is not None
    assert abs(float(model.noise.alphas_cumprod[0]) - (1 - 0.00085)) < 1e-6  # the folder's scaled_linear schedule, not DDPM's default
    assert model.conditioning.description["prompts"] == [""] and not model.conditioning.guided
    noise = model.initial_noise(2, 0)
    latents = generate(model, noise, [900, 500, 100], decode=False)
    images = generate(model, noise, [900, 500, 100])
    vae = AutoencoderKL.from_pretrained(sd_dir / "vae")
    with torch.no_grad():
        expected = vae.decode(latents / vae.config.scaling_factor).sample
    assert latents.shape == (2, 4, 8, 8) and images.shape == (2, 3, 16, 16)
    assert torch.allclose(images, expected, atol=1e-5)


def test_cfg_is_one_unet_call_holding_both_halves(sd_dir: Path, prompt_file: Path) -> None:
    from flexdiff.either_loop import sample
    from flexdiff.models.conditioning import condition
    from flexdiff.running.own_loop import teacher_timesteps
    from flexdiff.schedule import deepcache_uniform

    model = load_model(sd_dir, "cpu")
    assert condition(model, prompts=prompt_file).guidance_scale == 7.5  # diffusers' default with prompts
    condition(model, prompts=prompt_file, guidance=3.0, negative_prompt="dog")
    batches: list[int] = []
    handle = model.denoiser.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        plan = deepcache_uniform(teacher_timesteps(model, "ddim", 6), 3, 1)
        a = sample(model, 5, schedule=plan, batch_size=5)
    finally:
        handle.remove()
    assert batches == [10] * 6  # one call per step on uncond + cond halves, partial steps too
    b = sample(model, 5, schedule=plan, batch_size=2)  # prompts follow the image index, not the batch
    assert torch.allclose(a, b, atol=1e-5)


def test_prompt_seeds_give_each_prompt_its_own_noise(sd_dir: Path, tmp_path: Path) -> None:
    from flexdiff.either_loop import sample
    from flexdiff.models.conditioning import condition, read_prompt_file

    (tmp_path / "a.txt").write_text("5\tcat\n")
    (tmp_path / "b.txt").write_text("dog\n5\tcat\n")
    assert [(e.prompt, e.seed, e.line) for e in read_prompt_file(tmp_path / "b.txt")] == [("dog", None, 1), ("cat", 5, 2)]
    model = load_model(sd_dir, "cpu")
    condition(model, prompts=tmp_path / "a.txt", guidance=2.0)
    alone = sample(model, 1, steps=4, seed=0)
    condition(model, prompts=tmp_path / "b.txt", guidance=2.0)
    both = sample(model, 2, steps=4, seed=0)
    assert torch.allclose(both[1], alone[0], atol=1e-5) and not torch.allclose(both[0], alone[0])


# --- the CLI end to end ------------------------------------------------------------------------------------------


def test_sd_inspect_schedule_sample_guidance_off_and_on(sd_dir: Path, prompt_file: Path, clip_dir: Path, tmp_path: Path) -> None:
    info = json.loads(ok(invoke("inspect", "--model", sd_dir, "--json")))
    assert info["class"] == "UNet2DConditionModel" and info["decoder"] == "AutoencoderKL" and info["text_encoder"]
    assert len(info["branches"]) == 4 and info["branches"][-1]["partial_macs"] < info["full_step_macs"]
    plan = tmp_path / "deepcache.json"
    ok(invoke("schedule", "deepcache", "--model", sd_dir, "--steps", "6", "--interval", "2", "--branch", "1", "--out", plan))

    ok(invoke("sample", "--model", sd_dir, "--steps", "4", "--n", "3", "--out", tmp_path / "off"))
    assert images_of(tmp_path / "off").shape == (3, 3, 16, 16)
    assert json.loads((tmp_path / "off" / "run.json").read_text())["conditioning"]["guidance"] == 1.0

    out = ok(
        invoke(
            "sample",
            "--model",
            sd_dir,
            "--steps",
            "4",
            "--n",
            "3",
            "--batch-size",
            "2",
            "--prompts",
            prompt_file,
            "--guidance",
            "3",
            "--negative-prompt",
            "dog",
            "--clip",
            clip_dir,
            "--out",
            tmp_path / "on",
        )
    )
    run = json.loads((tmp_path / "on" / "run.json").read_text())
    assert "CLIP score" in out and 0 <= run["clip_score"] <= 100
    assert run["conditioning"]["prompts"] == ["a cat", "a dog", "the cat and the dog"] and run["conditioning"]["seeds"] == [None, 7, None]
    assert not np.allclose(images_of(tmp_path / "on"), images_of(tmp_path / "off"))

    out = ok(invoke("sample", "--model", sd_dir, "--schedule", plan, "--n", "2", "--prompts", prompt_file, "--guidance", "3", "--out", tmp_path / "plan"))
    assert "MACs speed-up" in out and images_of(tmp_path / "plan").shape == (2, 3, 16, 16)
    fid = json.loads(
        ok(
            invoke(
                "eval",
                "--samples",
                tmp_path / "on" / "samples.npz",
                "--reference",
                tmp_path / "off" / "samples.npz",
                "--features",
                "clip",
                "--clip",
                clip_dir,
                "--json",
            )
        )
    )
    assert fid["features"] == "clip" and fid["fid"] >= 0


@pytest.mark.slow
def test_sd_search_with_guidance_then_without_rebuilds_the_reference(sd_dir: Path, prompt_file: Path, clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "search"
    first = ok(
        invoke("search", "--model", sd_dir, *SEARCH, "--prompts", prompt_file, "--guidance", "3", "--features", "clip", "--clip", clip_dir, "--out", out)
    )
    assert "teacher reference built" in first
    results = json.loads((out / "results.json").read_text())
    assert results["validated"] and (out / "schedules").is_dir()
    again = ok(
        invoke("search", "--model", sd_dir, *SEARCH, "--prompts", prompt_file, "--guidance", "1", "--features", "clip", "--clip", clip_dir, "--out", out)
    )
    assert "rebuilt: conditioning differs" in again  # guidance is part of the teacher reference key
    assert json.loads((out / "results.json").read_text())["study"] != results["study"]


@pytest.mark.slow
def test_ldm_inspect_schedule_sample_search(ldm_dir: Path, tmp_path: Path) -> None:
    info = json.loads(ok(invoke("inspect", "--model", ldm_dir, "--json")))
    assert info["class"] == "UNet2DModel" and info["decoder"] == "VQModel" and info["sample_shape"] == [3, 8, 8]
    plan = tmp_path / "ddim.json"
    ok(invoke("schedule", "genome", "--model", ldm_dir, "--steps", "6", "--segments", "0:2,1:1", "--out", plan))
    ok(invoke("sample", "--model", ldm_dir, "--schedule", plan, "--n", "3", "--out", tmp_path / "s"))
    images = images_of(tmp_path / "s")
    assert images.shape == (3, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    ok(invoke("search", "--model", ldm_dir, *SEARCH, "--features", "digits", "--out", tmp_path / "search"))  # chosen: auto refuses RGB images
    assert (tmp_path / "search" / "results.json").is_file()


def test_class_labels_cycle_and_enter_the_key(class_dir: Path, tmp_path: Path) -> None:
    from flexdiff.models.conditioning import condition

    ok(invoke("sample", "--model", class_dir, "--steps", "3", "--n", "4", "--out", tmp_path / "rr"))
    ok(invoke("sample", "--model", class_dir, "--steps", "3", "--n", "4", "--labels", "2", "--out", tmp_path / "two"))
    rr, two = images_of(tmp_path / "rr"), images_of(tmp_path / "two")
    assert np.allclose(rr[2], two[2], atol=1e-5) and not np.allclose(rr[0], two[0])  # round-robin: image 2 has label 2
    one_line_error(invoke("sample", "--model", class_dir, "--labels", "0,3", "--out", tmp_path / "bad"), "[0, 3)")
    model = load_model(class_dir, "cpu")
    keys = {model.conditioning.key(), condition(model, labels="1").key(), condition(model, labels="0,1").key()}
    assert len(keys) == 3


# --- one-line errors ---------------------------------------------------------------------------------------------


def _without(src: Path, dst: Path, *drop: str) -> Path:
    shutil.copytree(src, dst)
    for name in drop:
        shutil.rmtree(dst / name)
    return dst


@pytest.mark.parametrize(
    "case",
    [
        "bad-seed",
        "tab-no-prompt",
        "empty-file",
        "missing-clip",
        "clip-without-path",
        "no-vae",
        "no-vqvae",
        "pickled-text-encoder",
        "sdxl",
        "transformer",
        "prompts-on-pixel",
        "labels-on-sd",
        "clip-without-prompts",
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    case: str, sd_dir: Path, ldm_dir: Path, clip_dir: Path, tiny_model_dir: Path, prompt_file: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bad_prompts = tmp_path / "prompts.txt"
    out = tmp_path / "o"
    sample = lambda model, *extra: invoke("sample", "--model", model, "--steps", "2", "--n", "1", *extra, "--out", out)  # noqa: E731
    if case == "bad-seed":
        bad_prompts.write_text("a cat\nseven\ta dog\n")
        one_line_error(sample(sd_dir, "--prompts", bad_prompts), "prompts.txt:2")
    elif case == "tab-no-prompt":
        bad_prompts.write_text("3\t \n")
        one_line_error(sample(sd_dir, "--prompts", bad_prompts), "prompts.txt:1")
    elif case == "empty-file":
        bad_prompts.write_text("\n\n")
        one_line_error(invoke("search", "--model", sd_dir, "--prompts", bad_prompts, "--out", out), "at least one prompt")
    elif case == "missing-clip":
        one_line_error(invoke("search", "--model", sd_dir, "--features", "clip", "--clip", tmp_path / "no-clip", "--out", out), "no-clip")
    elif case == "clip-without-path":
        one_line_error(invoke("eval", "--samples", "builtin:digits-train", "--features", "clip"), "--clip PATH")
    elif case == "no-vae":
        one_line_error(sample(_without(sd_dir, tmp_path / "sd", "vae")), "vae")
    elif case == "no-vqvae":
        one_line_error(sample(_without(ldm_dir, tmp_path / "ldm", "vqvae")), "vqvae")
    elif case == "pickled-text-encoder":
        broken = _without(sd_dir, tmp_path / "sd")
        (broken / "text_encoder" / "model.safetensors").rename(broken / "text_encoder" / "pytorch_model.bin")
        one_line_error(sample(broken), "pytorch_model.bin to safetensors")
    elif case == "sdxl":
        broken = _without(request.getfixturevalue("sdxl_dir"), tmp_path / "sdxl", "text_encoder_2")  # SDXL without its second encoder
        one_line_error(sample(broken, "--sampler", "pipeline"), "a loadable diffusers pipeline folder")
    elif case == "transformer":
        broken = tmp_path / "dit"
        broken.mkdir()
        write_index(broken, "DiTPipeline", transformer=["diffusers", "DiTTransformer2DModel"], vae=["diffusers", "AutoencoderKL"])
        one_line_error(sample(broken), "a loadable diffusers pipeline folder")  # its components' folders are missing
    elif case == "prompts-on-pixel":
        one_line_error(sample(tiny_model_dir, "--prompts", prompt_file), "--prompts")
    elif case == "labels-on-sd":
        one_line_error(sample(sd_dir, "--labels", "1"), "--labels")
    elif case == "clip-without-prompts":
        one_line_error(sample(sd_dir, "--clip", clip_dir), "--prompts")
    assert not out.exists()  # nothing half-written


def test_clip_features_and_score(clip_dir: Path, tmp_path: Path) -> None:
    from flexdiff.measuring.clip import load_clip
    from flexdiff.measuring.features import get_feature_network

    net = get_feature_network("clip", path=clip_dir)
    images = torch.rand(3, 3, 24, 20) * 2 - 1
    feats = net(images)
    assert feats.shape == (3, 8) and torch.allclose(feats.norm(dim=1), torch.ones(3, dtype=torch.float64), atol=1e-5)
    assert net(torch.zeros(2, 1, 16, 16)).shape == (2, 8)  # grey images become RGB
    assert net.key.startswith("clip@")
    clip = load_clip(clip_dir)
    score = clip.score(images, ["a cat", "a dog", "cat"])
    assert 0 <= score <= 100 and score == clip.score(images, ["a cat", "a dog", "cat"])
    with pytest.raises(FlexdiffError, match="one prompt per image"):
        clip.score(images, ["a cat"])


# --- guidance, prompt files, labels, corrupt CLIP folders ------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_guidance_must_be_finite_and_non_negative(value: str, sd_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from flexdiff.models.conditioning import condition

    with pytest.raises(FlexdiffError, match="finite guidance scale"):
        condition(load_model(sd_dir, "cpu"), guidance=float(value))
    # `--guidance inf` gave all-NaN images with exit 0; search refuses it in its up-front checks too (the same check)
    one_line_error(invoke("sample", "--model", sd_dir, "--steps", "2", "--n", "1", "--guidance", value, "--out", tmp_path / "s"), f"--guidance {float(value)}")
    one_line_error(invoke("search", "--model", tiny_model_dir, "--guidance", value, "--out", tmp_path / "r"), "finite guidance scale")
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()


def test_prompt_file_bom_crlf_and_unicode_line_separators(tmp_path: Path) -> None:
    from flexdiff.models.conditioning import read_prompt_file

    path = tmp_path / "prompts.txt"
    # a BOM (Windows Notepad) before SEED<TAB>; CRLF endings; U+2028, NEL and form feed inside prompts are no line breaks
    path.write_bytes("\ufeff5\ta cat\r\na dog\u2028in a hat\r\n\r\nred\x85blue\x0cgreen\nlast".encode())
    entries = read_prompt_file(path)
    assert [(e.prompt, e.seed, e.line) for e in entries] == [
        ("a cat", 5, 1),
        ("a dog\u2028in a hat", None, 2),
        ("red\x85blue\x0cgreen", None, 4),
        ("last", None, 5),
    ]
    path.write_bytes("a\u2028b\nseven\tc\n".encode())
    with pytest.raises(FlexdiffError, match=r"prompts\.txt:2"):  # line numbers as an editor counts them
        read_prompt_file(path)


def test_huge_labels_on_a_timestep_class_unet_are_one_line(tmp_path: Path) -> None:
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        class_embed_type="timestep",
    )
    save_model(unet, tmp_path / "ts", DEFAULT_SCHEDULER_CONFIG)
    # no class count to bound them: 10**20 gave "Overflow when unpacking long long" from torch
    one_line_error(
        invoke("sample", "--model", tmp_path / "ts", "--steps", "2", "--n", "1", "--labels=100000000000000000000", "--out", tmp_path / "o"),
        "--labels 100000000000000000000",
    )
    assert not (tmp_path / "o").exists()
    ok(invoke("sample", "--model", tmp_path / "ts", "--steps", "2", "--n", "1", "--labels", str(2**63 - 1), "--out", tmp_path / "o"))


@pytest.mark.parametrize("broken", ["preprocessor_config.json", "vocab.json"])
def test_corrupt_clip_files_are_named_in_one_line(broken: str, clip_dir: Path, tmp_path: Path) -> None:
    from flexdiff.measuring.clip import load_clip

    folder = tmp_path / "clip"
    shutil.copytree(clip_dir, folder)
    (folder / "tokenizer.json").unlink(missing_ok=True)  # so the tokenizer is read from vocab.json
    (folder / broken).write_text("{not json")
    with pytest.raises(FlexdiffError, match=broken.replace(".", r"\.")) as info:
        load_clip(folder)
    assert "\n" not in str(info.value)
    one_line_error(invoke("eval", "--samples", "builtin:digits-train", "--features", "clip", "--clip", folder), broken)
