"""``flexdiff.enable(pipe, schedule)`` on the user's own diffusers pipeline objects, tiny random ones built with
diffusers' classes: bit-identity of the all-full schedule, removal, call counts, equality with flexdiff's own loop, and
the one-line refusals."""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import tiny_unet
from test_pipelines import ldm_dir, sd_dir  # noqa: F401 - session fixtures

import flexdiff
from flexdiff.errors import FlexdiffError
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule

#: scheduler kind -> (diffusers class name, extra config); PNDM and Heun call the denoiser more than once per timestep
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
REFUSED = {"pndm", "heun"}  # more than one denoiser call per timestep: a one-line refusal for now
PIPELINES = ["ddpm-pixel", "ldm", "sd"]
T = 6


def _pipeline(kind: str, scheduler: str, request: pytest.FixtureRequest):
    import diffusers

    if kind == "ddpm-pixel":
        base = diffusers.DDPMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG)
        pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=base)
    elif kind == "ldm":
        pipe = diffusers.LDMPipeline.from_pretrained(request.getfixturevalue("ldm_dir"))
    else:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(request.getfixturevalue("sd_dir"), safety_checker=None, requires_safety_checker=False)
    name, extra = SCHEDULERS[scheduler]
    pipe.scheduler = getattr(diffusers, name).from_config({**dict(pipe.scheduler.config), **extra})
    if kind == "ddpm-pixel" and "generator" not in inspect.signature(pipe.scheduler.step).parameters:
        pytest.skip(f"DDPMPipeline passes generator= to scheduler.step, which {name} does not take (diffusers runs it neither)")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call(pipe, kind: str, **kwargs):
    torch.manual_seed(0)  # LDMPipeline passes no generator to scheduler.step: stochastic schedulers draw from torch's global one
    args = dict(num_inference_steps=T, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs)
    if kind == "sd":
        args.update(prompt=["a cat", "a dog"], negative_prompt=["", "cat"], guidance_scale=3.0, height=16, width=16)
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
    if scheduler in REFUSED:
        grid = flexdiff.uniform_timesteps(1000, T)  # the schedule is refused whatever its timesteps
        with flexdiff.enabled(pipe, flexdiff.full(grid)), pytest.raises(FlexdiffError, match="one denoiser call per timestep"):
            _call(pipe, kind)
        assert torch.equal(_call(pipe, kind), plain)
        return
    calls, handle = _count_calls(pipe)
    try:
        with flexdiff.enabled(pipe, flexdiff.full(ts)):
            assert torch.equal(_call(pipe, kind), plain)
        assert len(calls) == T  # one denoiser call per step (CFG in one batched call)
        calls.clear()
        with flexdiff.enabled(pipe, flexdiff.deepcache_uniform(ts, 3, 0)):
            cached = _call(pipe, kind)
        assert len(calls) == T and not torch.equal(cached, plain)
    finally:
        handle.remove()
    assert torch.equal(_call(pipe, kind), plain)  # disable restored the pipeline bit for bit
    assert "step" not in pipe.scheduler.__dict__ and "set_timesteps" not in pipe.scheduler.__dict__


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["ddpm", "euler", "dpmpp-2m", "ddim", "unipc", "euler-ancestral"])
def test_null_steps_run_through_the_schedulers_custom_timesteps(scheduler: str, request: pytest.FixtureRequest) -> None:
    """A null step makes no call: the scheduler is given the active timesteps, exactly as `pipe(timesteps=...)` would."""
    pipe = _pipeline("sd", scheduler, request)
    ts = flexdiff.pipeline_timesteps(pipe, T)
    plan = flexdiff.ddim_k(ts, 3)
    if scheduler in ("ddim", "unipc", "euler-ancestral"):  # their set_timesteps takes no custom timesteps
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
    assert len(calls) == 3
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
    with pytest.raises(FlexdiffError, match="the schedule's timesteps"):
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
        out = pipe(prompt="a cat", image=image, strength=0.5, num_inference_steps=T, guidance_scale=3.0, generator=torch.Generator().manual_seed(0), output_type="np")
        return torch.from_numpy(out.images)

    plain = call()
    ts = flexdiff.pipeline_timesteps(pipe, T)
    with flexdiff.enabled(pipe, flexdiff.full(ts)):
        assert torch.equal(call(), plain)
    with flexdiff.enabled(pipe, flexdiff.deepcache_uniform(ts, 3, 0)):  # steps 3, 4, 5 run: full, partial, partial
        assert not torch.equal(call(), plain)
    with flexdiff.enabled(pipe, flexdiff.deepcache_uniform(ts, 2, 0)), pytest.raises(FlexdiffError, match="a full step where the pipeline's loop starts"):
        call()  # step 3 is partial there: no cache to replay


def test_a_controlnet_pipeline_is_refused_not_ignored(request: pytest.FixtureRequest) -> None:
    import diffusers

    base = diffusers.StableDiffusionPipeline.from_pretrained(request.getfixturevalue("sd_dir"), safety_checker=None, requires_safety_checker=False)
    controlnet = diffusers.ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(4, 8))
    pipe = diffusers.StableDiffusionControlNetPipeline(**base.components, controlnet=controlnet)
    with pytest.raises(FlexdiffError, match="without a ControlNet"):
        flexdiff.enable(pipe, flexdiff.full(flexdiff.uniform_timesteps(1000, T)))
    assert getattr(pipe, "_flexdiff_enabled", None) is None
