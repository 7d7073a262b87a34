"""A user's own transformer pipeline folder (Flux, SD3 without its T5 encoder, PixArt-Sigma, Qwen-Image, Wan 2.1 video), saved with
``save_pretrained``: ``flexdiff inspect`` lists its branches, ``flexdiff search`` generates through the pipeline's own
call with its own scheduler (``--sampler auto``), the stored teacher reference is the user's plain ``pipe(...)``, and
``best.json`` under ``flexdiff.enable`` reproduces the scored rFID and paired distance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from folders import FOLDERS, SEARCH, invoke, ok, one_line_error
from safetensors.torch import load_file

import flexdiff
from flexdiff.either_loop import image_seed
from flexdiff.measuring.features import get_feature_network
from flexdiff.measuring.metrics import paired_distance, rfid

PROMPTS = ["a cat", "the dog"]
N, GUIDANCE = 4, 3.0


@pytest.fixture(scope="module", params=list(FOLDERS))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, Any]]:
    build, options = FOLDERS[request.param]
    return request.param, build(tmp_path_factory.mktemp(request.param) / "pipeline"), options


def option_args(options: dict[str, Any]) -> list[str]:
    named = {"height": "--height", "width": "--width", "num_frames": "--frames"}
    args = [x for k, v in options.items() if k in named for x in (named[k], str(v))]
    rest = {k: v for k, v in options.items() if k not in named}
    return args + (["--pipeline-kwargs", json.dumps(rest)] if rest else [])


def user_pipeline(folder: Path) -> Any:
    """What the user loads: diffusers' own ``from_pretrained`` (null components absent, as diffusers documents)."""
    import diffusers

    index = json.loads((folder / "model_index.json").read_text())
    absent = {k: None for k, v in index.items() if v == [None, None]}
    pipe = diffusers.DiffusionPipeline.from_pretrained(folder, **absent)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def user_call(pipe: Any, noise: torch.Tensor, steps: int, options: dict[str, Any]) -> torch.Tensor:
    out = pipe(
        prompt=[PROMPTS[i % len(PROMPTS)] for i in range(N)],
        guidance_scale=GUIDANCE,
        num_inference_steps=steps,
        latents=noise,
        generator=[torch.Generator().manual_seed(image_seed(0, i)) for i in range(N)],
        output_type="np",
        **options,
    )
    return torch.as_tensor(out.frames if hasattr(out, "frames") else out.images).movedim(-1, -3) * 2 - 1


@pytest.mark.slow
def test_inspect_lists_the_branches_of_a_users_folder(family: tuple[str, Path, dict[str, Any]]) -> None:
    name, folder, options = family
    info = json.loads(ok(invoke("inspect", "--model", folder, "--json", *option_args(options))))
    assert info["backbone"] == "transformer" and info["branches"]
    assert all(0 < b["partial_macs"] < info["full_step_macs"] for b in info["branches"])
    assert info["sample_shape"] == list(flexdiff.load_model(folder, call_options=options).sample_shape)


@pytest.mark.slow
def test_search_on_a_users_folder_scores_what_its_pipeline_makes(family: tuple[str, Path, dict[str, Any]], clip_dir: Path, tmp_path: Path) -> None:
    name, folder, options = family
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "search"
    ok(
        invoke(
            "search",
            "--model",
            folder,
            *SEARCH,
            "--speedup",
            "1.3",
            "--prompts",
            prompts,
            "--guidance",
            GUIDANCE,
            "--features",
            "clip",
            "--clip",
            clip_dir,
            "--no-report",
            "--out",
            out,
            *option_args(options),
        )
    )
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["sampler"] == "pipeline"  # auto: the folder's own call and scheduler are the teacher
    assert all(r["psnr"] > 0 and 0 < r["ssim"] <= 1 for r in results["validated"] if r["macs_speedup"] > 1)  # the paired metrics beside rFID

    pipe = user_pipeline(folder)
    model = flexdiff.load_model(folder, call_options=options)
    flexdiff.condition(model, prompts=prompts, guidance=GUIDANCE)
    noise = model.initial_noise(N, 0)
    reference = load_file(str(out / "teacher_cache.safetensors"))
    steps = int(SEARCH[SEARCH.index("--steps") + 1])
    torch.testing.assert_close(user_call(pipe, noise, steps, options), reference["images"], rtol=0, atol=1e-5)  # the teacher is the user's pipe(...)

    best = results["best"]
    plan = flexdiff.Schedule.load(out / "best.json")
    assert plan.sampler == "pipeline" and plan.meta["bound_to"]["scheduler"] == type(pipe.scheduler).__name__
    with flexdiff.enabled(pipe, out / "best.json"):  # the binding holds: made for this denoiser and this scheduler
        images = user_call(pipe, noise, steps, options)
    feats = get_feature_network("clip", path=clip_dir)(images)
    assert abs(rfid(feats, reference["features"]) - best["search_rfid"]) < 1e-4  # the images the search scored
    assert abs(paired_distance(feats, reference["features"]) - best["search_paired"]) < 1e-4


def test_inspect_an_sdxl_folder(sdxl_dir: Path) -> None:
    """SDXL (a UNet its own call drives: added text-time conditions) is inspected through its first UNet call."""
    info = json.loads(ok(invoke("inspect", "--model", sdxl_dir, "--json")))
    assert info["backbone"] == "unet" and info["branches"] and all(0 < b["partial_macs"] < info["full_step_macs"] for b in info["branches"])


def test_a_null_component_loads_absent(tmp_path: Path) -> None:
    """SD3 saved without its T5 encoder (``text_encoder_3: [null, null]``, as diffusers documents) loads without it."""
    build, options = FOLDERS["sd3"]
    folder = build(tmp_path / "sd3")
    assert json.loads((folder / "model_index.json").read_text())["text_encoder_3"] == [None, None]
    model = flexdiff.load_model(folder, call_options=options)
    assert model.pipeline.text_encoder_3 is None and model.pipeline_only and model.sample_shape == (4, 8, 8)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pipeline-kwargs", "[1, 2]"], "a JSON object"),
        (["--pipeline-kwargs", '{"latents": 1}'], "'latents'"),
        (["--pipeline-kwargs", '{"no_such_keyword": 1}'], "a call the pipeline accepts"),
    ],
)
def test_bad_pipeline_options_are_one_line_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    build, options = FOLDERS["sd3"]
    folder = build(tmp_path / "sd3")
    one_line_error(invoke("inspect", "--model", folder, *args), needle)


def test_pipeline_options_on_a_model_its_own_loop_drives_are_refused() -> None:
    one_line_error(invoke("inspect", "--model", "builtin:digits", "--height", "32"), "a pipeline its own call drives")


def test_a_search_on_a_photo_model_without_features_is_refused_not_scored_with_digits(sd_dir: Path, tmp_path: Path) -> None:
    """``--features`` defaults to ``auto``: digits only for grey images; an RGB model gets a one-line refusal naming the
    real-image options before any work (no run folder is made)."""
    one_line_error(invoke("search", "--model", sd_dir, *SEARCH, "--out", tmp_path / "run"), "--features clip --clip")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_flux_schedule_made_at_one_resolution_applies_at_others(clip_dir: Path, tmp_path: Path) -> None:
    """Flux shifts its sigmas by each call's resolution (``mu``): a schedule binds to the T positions, not to the sigmas
    of the resolution it was made at. Searched (or written) at 64x64, it applies at 32x32 and 128x128; null steps run
    the kept positions, exactly ``pipe(..., sigmas=kept)`` at each resolution."""
    from flexdiff.either_loop import teacher_grid
    from flexdiff.schedule import Schedule, Step, bind

    build, _ = FOLDERS["flux"]
    folder = build(tmp_path / "flux")
    steps, dropped = 6, (2, 4)
    model = flexdiff.load_model(folder, call_options={"height": 64, "width": 64})
    grid = teacher_grid(model, "pipeline", steps)
    plan = Schedule(tuple(Step.parse("null" if i in dropped else "full") for i in range(steps)), tuple(grid), "pipeline", "nulls")
    bind(plan, model.binding("pipeline")).save(tmp_path / "nulls.json")
    cached = Schedule(tuple(Step.parse("partial:1" if i % 2 else "full") for i in range(steps)), tuple(grid), "pipeline", "cached")
    bind(cached, model.binding("pipeline")).save(tmp_path / "cached.json")
    pipe = user_pipeline(folder)
    kept = [float(s) for i, s in enumerate(torch.linspace(1.0, 1 / steps, steps).tolist()) if i not in dropped]  # Flux's own unshifted grid

    def call(size: int, **extra: Any) -> torch.Tensor:
        return pipe(
            prompt="a cat", height=size, width=size, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="latent", **extra
        ).images

    ok(
        invoke(
            "search",
            "--model",
            folder,
            *SEARCH,
            "--steps",
            str(steps),
            "--speedup",
            "1.3",
            "--features",
            "clip",
            "--clip",
            clip_dir,
            "--no-report",
            "--height",
            "64",
            "--width",
            "64",
            "--out",
            tmp_path / "search",
        )
    )
    for size in (32, 128):
        plain = call(size)
        with flexdiff.enabled(pipe, tmp_path / "search" / "best.json"):  # the searched plan runs at this size too
            assert call(size).shape == plain.shape
        with flexdiff.enabled(pipe, tmp_path / "nulls.json"):
            nulls = call(size)
        torch.testing.assert_close(nulls, call(size, sigmas=kept), rtol=0, atol=1e-5)
        assert not torch.equal(nulls, plain)
        with flexdiff.enabled(pipe, tmp_path / "cached.json"):
            assert not torch.equal(call(size), plain)
        assert torch.equal(call(size), plain)


def test_text_encoders_run_once_per_prompt_batch(tmp_path: Path) -> None:
    """The second generation over the same prompts answers ``encode_prompt`` from the model's cache: no text encoder
    runs, and the images are bit for bit the first's (the user's plain pipeline keeps its own ``encode_prompt``)."""
    build, options = FOLDERS["sd3"]
    model = flexdiff.load_model(build(tmp_path / "sd3"), call_options=options)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\nthe dog\n")
    flexdiff.condition(model, prompts=prompts, guidance=GUIDANCE)
    calls: list[int] = []
    handle = model.pipeline.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    first = flexdiff.sample(model, 4, sampler="pipeline", steps=3)
    encoded = len(calls)
    second = flexdiff.sample(model, 4, sampler="pipeline", steps=3)
    handle.remove()
    assert encoded > 0 and len(calls) == encoded and torch.equal(first, second)
    assert "encode_prompt" not in vars(model.pipeline)


def test_an_sd_folders_schedule_files_are_its_own_pipeline_and_deepcaches_plug_in(sd_dir: Path, tmp_path: Path) -> None:
    """On an SD folder with its DDIM config, ``--sampler auto`` is the pipeline's own call: ``schedule full`` through
    ``enable`` is the plain ``pipe(...)`` bit for bit, and ``schedule deepcache --interval 3 --branch 0`` equals
    DeepCache's own ``DeepCacheSDHelper`` (Ma et al. 2024's plug-in) on the same pipeline and latents."""
    import diffusers
    from DeepCache import DeepCacheSDHelper

    folder = tmp_path / "sd"
    shutil.copytree(sd_dir, folder)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    diffusers.DDIMScheduler.from_config(config).save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", "DDIMScheduler"]}))
    steps = "10"
    ok(invoke("schedule", "full", "--model", folder, "--steps", steps, "--out", tmp_path / "full.json"))
    ok(invoke("schedule", "deepcache", "--model", folder, "--steps", steps, "--interval", "3", "--branch", "0", "--out", tmp_path / "dc.json"))
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def call() -> torch.Tensor:
        return pipe(prompt=["a cat", "the dog"], num_inference_steps=int(steps), latents=latents, guidance_scale=GUIDANCE, output_type="latent").images

    plain = call()
    with flexdiff.enabled(pipe, tmp_path / "full.json"):
        assert torch.equal(call(), plain)
    with flexdiff.enabled(pipe, tmp_path / "dc.json"):
        ours = call()
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=3, cache_branch_id=0)
    helper.enable()
    try:
        theirs = call()
    finally:
        helper.disable()
    assert not torch.equal(theirs, plain)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
