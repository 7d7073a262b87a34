"""``flexdiff.enable(pipe, schedule)`` on the user's own diffusers pipeline objects, tiny random ones built with
diffusers' classes: bit-identity of the all-full schedule, removal, call counts, equality with flexdiff's own loop, and
the one-line refusals."""

from __future__ import annotations

import inspect

import pytest
import torch

import flexdiff
from flexdiff.errors import FlexdiffError
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.testing.tiny import tiny_unet

#: scheduler kind -> (diffusers class name, extra config); PNDM (PLMS warm-up) and Heun evaluate some timesteps twice
SCHEDULERS = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp-2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp-2m-karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "heun": ("HeunDiscreteScheduler", {}),
}
PIPELINES = ["ddpm-pixel", "ldm", "sd", "sd-img2img", "sdxl", "controlnet"]
TEXT = ("sd", "sd-img2img", "sdxl", "controlnet")  # called with prompts
T = 6


def _controlnet(unet, seed: int = 3, zero: bool = False):
    """A ControlNet from the UNet; diffusers zero-initialises its output convolutions, so unless ``zero`` they get random
    weights (residuals that change the result, as a trained ControlNet's do)."""
    import diffusers

    controlnet = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8))
    if not zero:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.3)
    return controlnet


def _pipeline(kind: str, scheduler: str, request: pytest.FixtureRequest, zero_controlnet: bool = False):
    import diffusers

    sd = dict(safety_checker=None, requires_safety_checker=False)
    if kind == "ddpm-pixel":
        base = diffusers.DDPMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG)
        pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=base)
    elif kind == "ldm":
        pipe = diffusers.LDMPipeline.from_pretrained(request.getfixturevalue("ldm_dir"))
    elif kind == "sdxl":
        pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(request.getfixturevalue("sdxl_dir"))
    elif kind == "sd-img2img":
        pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(request.getfixturevalue("sd_dir"), **sd)
    elif kind == "controlnet":
        base = diffusers.StableDiffusionPipeline.from_pretrained(request.getfixturevalue("sd_dir"), **sd)
        pipe = diffusers.StableDiffusionControlNetPipeline(**base.components, controlnet=_controlnet(base.unet, zero=zero_controlnet))
    else:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(request.getfixturevalue("sd_dir"), **sd)
    name, extra = SCHEDULERS[scheduler]
    pipe.scheduler = getattr(diffusers, name).from_config({**dict(pipe.scheduler.config), **extra})
    if kind == "ddpm-pixel" and "generator" not in inspect.signature(pipe.scheduler.step).parameters:
        pytest.skip(f"DDPMPipeline passes generator= to scheduler.step, which {name} does not take (diffusers runs it neither)")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call(pipe, kind: str, **kwargs):
    torch.manual_seed(0)  # LDMPipeline passes no generator to scheduler.step: stochastic schedulers draw from torch's global one
    args = dict(num_inference_steps=T, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs)
    if kind in TEXT:
        args.update(prompt=["a cat", "a dog"], negative_prompt=["", "cat"], guidance_scale=3.0)
        image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
        if kind == "sd-img2img":
            args.update(image=image, strength=1.0)  # every step runs (the part-way start has its own test)
        else:
            args.update(height=16, width=16, **({"image": image} if kind == "controlnet" else {}))
    else:
        args.update(batch_size=2)
    return torch.from_numpy(pipe(**args).images)


def _count_calls(pipe):
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    return calls, handle


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("kind", PIPELINES)
def test_enable_all_full_is_the_pipeline_and_disable_restores(kind: str, scheduler: str, request: pytest.FixtureRequest) -> None:
    pipe = _pipeline(kind, scheduler, request)
    plain = _call(pipe, kind)
    if not torch.equal(_call(pipe, kind), plain):  # e.g. LDMPipeline with Euler: two plain calls differ already
        pytest.skip(f"{type(pipe).__name__} with {SCHEDULERS[scheduler][0]} is not deterministic without flexdiff either")
    ts = flexdiff.pipeline_timesteps(pipe, T)
    calls, handle = _count_calls(pipe)
    try:
        with flexdiff.enabled(pipe, flexdiff.full(ts)):
            assert torch.equal(_call(pipe, kind), plain)
        grid = len(pipe.scheduler.timesteps)  # T, or more where a timestep is evaluated twice (Heun: 2T - 1, PLMS: T + 1)
        assert len(calls) == grid >= T  # one denoiser call per loop position (CFG in one batched call)
        calls.clear()
        with flexdiff.enabled(pipe, flexdiff.deepcache_uniform(ts, 3, 0)):
            cached = _call(pipe, kind)
        assert len(calls) == grid and not torch.equal(cached, plain)
    finally:
        handle.remove()
    assert torch.equal(_call(pipe, kind), plain)  # disable restored the pipeline bit for bit
    assert "step" not in pipe.scheduler.__dict__ and "set_timesteps" not in pipe.scheduler.__dict__


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["ddpm", "euler", "dpmpp-2m", "heun", "ddim", "unipc", "euler-ancestral", "pndm"])
def test_null_steps_run_through_the_schedulers_custom_timesteps(scheduler: str, request: pytest.FixtureRequest) -> None:
    """A null step makes no call: the scheduler is given the active timesteps, exactly as `pipe(timesteps=...)` would."""
    pipe = _pipeline("sd", scheduler, request)
    ts = flexdiff.pipeline_timesteps(pipe, T)
    plan = flexdiff.ddim_k(ts, 3)
    if scheduler in ("ddim", "unipc", "euler-ancestral", "pndm"):  # their set_timesteps takes no custom timesteps
        with pytest.raises(FlexdiffError, match="accepts custom timesteps"):
            flexdiff.enable(pipe, plan)
        assert not hasattr(pipe, "_flexdiff_enabled")
        return
    reference = _call(pipe, "sd", timesteps=plan.active_timesteps)
    calls, handle = _count_calls(pipe)
    try:
        with flexdiff.enabled(pipe, plan):
            got = _call(pipe, "sd")
    finally:
        handle.remove()
    assert len(calls) == len(pipe.scheduler.timesteps) == (5 if scheduler == "heun" else 3)  # Heun: 2 x 3 - 1
    assert torch.equal(got, reference)


def test_cfg_as_two_calls_keeps_a_cache_per_call() -> None:
    """A loop that calls the denoiser twice per step (CFG as two calls) replays each call's own cache: the first call's
    result is what a one-call loop gives, although the second call (on other inputs) ran after it in every full step."""
    import diffusers

    unet = tiny_unet()
    scheduler = diffusers.DDIMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG)
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)
    plan = flexdiff.deepcache_uniform(flexdiff.pipeline_timesteps(pipe, T), 3, 0)
    x0 = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    other = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def loop(second_call: bool) -> torch.Tensor:
        scheduler.set_timesteps(T)
        x = x0
        for t in scheduler.timesteps:
            eps = unet(x, t).sample
            if second_call:
                unet(other, t)  # a second denoiser call in the same step, on other inputs
            x = scheduler.step(eps, t, x).prev_sample
        return x

    with flexdiff.enabled(pipe, plan):
        two, one = loop(True), loop(False)
    torch.testing.assert_close(two, one, rtol=0, atol=0)


def test_deepcache_through_enable_equals_flexdiffs_own_loop() -> None:
    import diffusers

    unet = tiny_unet()
    scheduler = diffusers.DDIMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG)
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    ts = flexdiff.pipeline_timesteps(pipe, 10)
    plan = flexdiff.deepcache_uniform(ts, 3, 0)
    with flexdiff.enabled(pipe, plan):
        theirs = torch.from_numpy(pipe(batch_size=2, num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="np", eta=0.0).images)
    model = DiffusionModel(unet, NoiseSchedule.from_scheduler_config(dict(scheduler.config)), (1, 8, 8), "tiny")
    noise = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with flexdiff.apply_schedule(model, plan) as run:
        ours = flexdiff.generate(model, noise, plan.active_timesteps, "ddim", denoise=run.start)
    ours = (ours.clamp(-1, 1) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


def test_one_line_refusals(tmp_path) -> None:
    import diffusers

    pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.DDIMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG))
    pipe.set_progress_bar_config(disable=True)
    ts = flexdiff.pipeline_timesteps(pipe, T)
    flexdiff.enable(pipe, flexdiff.full(ts))
    with pytest.raises(FlexdiffError, match="without an enabled schedule"):
        flexdiff.enable(pipe, flexdiff.full(ts))  # twice
    with pytest.raises(FlexdiffError, match="a schedule made for this step count"):
        pipe(batch_size=1, num_inference_steps=T + 2)  # another num_inference_steps than the schedule's
    flexdiff.disable(pipe)
    with pytest.raises(FlexdiffError, match="nothing to disable"):
        flexdiff.disable(pipe)
    with pytest.raises(FlexdiffError, match="flexdiff.enable"):
        with flexdiff.apply_schedule(pipe, flexdiff.full(ts)):  # apply_schedule is flexdiff's own loop: a pipeline is refused
            pass
    path = tmp_path / "plan.json"
    flexdiff.deepcache_uniform(ts, 2, 0).save(path)
    with flexdiff.enabled(pipe, path):  # a schedule file works as well as a Schedule
        pipe(batch_size=1, num_inference_steps=T)


@pytest.mark.slow
def test_img2img_starts_part_way_through_the_schedule(request: pytest.FixtureRequest) -> None:
    """img2img's strength skips the first steps: the clock starts at the scheduler's begin index."""
    import diffusers

    pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(request.getfixturevalue("sd_dir"), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 16, 16)

    def call() -> torch.Tensor:
        out = pipe(
            prompt="a cat", image=image, strength=0.5, num_inference_steps=T, guidance_scale=3.0, generator=torch.Generator().manual_seed(0), output_type="np"
        )
        return torch.from_numpy(out.images)

    plain = call()
    ts = flexdiff.pipeline_timesteps(pipe, T)
    with flexdiff.enabled(pipe, flexdiff.full(ts)):
        assert torch.equal(call(), plain)
    with flexdiff.enabled(pipe, flexdiff.deepcache_uniform(ts, 3, 0)):  # steps 3, 4, 5 run: full, partial, partial
        assert not torch.equal(call(), plain)
    with flexdiff.enabled(pipe, flexdiff.deepcache_uniform(ts, 2, 0)), pytest.raises(FlexdiffError, match="a full step where the pipeline's loop starts"):
        call()  # step 3 is partial there: no cache to replay


@pytest.mark.slow
def test_controlnet_residuals_reach_the_recomputed_units(request: pytest.FixtureRequest) -> None:
    """A ControlNet whose residuals are zero (diffusers' initialisation) leaves a DeepCache run exactly the plain SD
    pipeline's under the same schedule; a ControlNet with residuals changes it, in partial steps too."""
    sd, zero, live = (_pipeline(kind, "ddim", request, zero_controlnet=z) for kind, z in (("sd", False), ("controlnet", True), ("controlnet", False)))
    plan = flexdiff.deepcache_uniform(flexdiff.pipeline_timesteps(sd, T), 3, 0)
    outs = []
    for pipe, kind in ((sd, "sd"), (zero, "controlnet"), (live, "controlnet")):
        with flexdiff.enabled(pipe, plan):
            outs.append(_call(pipe, kind))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-6)
    assert (outs[2] - outs[0]).abs().max() > 1e-3


def test_a_runge_kutta_warm_up_is_refused_in_one_line() -> None:
    import diffusers

    pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.PNDMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG))  # skip_prk_steps=False
    pipe.set_progress_bar_config(disable=True)
    with flexdiff.enabled(pipe, flexdiff.full(flexdiff.uniform_timesteps(1000, T))), pytest.raises(FlexdiffError, match="skip_prk_steps=True"):
        pipe(batch_size=1, num_inference_steps=T)
