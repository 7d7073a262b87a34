"""flexdiff's samplers as a diffusers scheduler: step-wise equal to flexdiff's own loop for every registered sampler,
and what ``enable(pipe)`` runs for a schedule scored in flexdiff's loop (or null steps on DDIM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flexdiff
from flexdiff.integrations.flexdiff_scheduler import FlexdiffScheduler
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.samplers import sampler_names
from flexdiff.schedule import bind
from flexdiff.testing.tiny import tiny_unet

T = 8


def _model(config: dict | None = None) -> DiffusionModel:
    config = config or DEFAULT_SCHEDULER_CONFIG
    return DiffusionModel(tiny_unet(), NoiseSchedule.from_scheduler_config(config), (1, 8, 8), "tiny", scheduler_config=config)


def _pipe(model: DiffusionModel, scheduler: str = "DDPMScheduler", **extra):
    import diffusers

    pipe = diffusers.DDPMPipeline(unet=model.denoiser, scheduler=getattr(diffusers, scheduler).from_config({**model.scheduler_config, **extra}))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("solver", sampler_names("alpha_bar"))
def test_step_wise_is_flexdiffs_loop_bit_for_bit(solver: str) -> None:
    model = _model()
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    grid = flexdiff.teacher_timesteps(model, solver, 10)
    active = grid[::2] + grid[-1:]  # null steps: a subset of the grid (the multistep solvers see the gaps)
    scheduler = FlexdiffScheduler.from_scheduler(_pipe(model).scheduler, solver)
    scheduler.grid = grid
    scheduler.set_timesteps(timesteps=active)
    x = noise.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(model.eps(x, int(t)), t, x).prev_sample
    assert torch.equal(x, flexdiff.generate(model, noise, active, solver, grid=grid))


@pytest.mark.parametrize("solver", ["dpmpp-2m", "ddim-2m"])
def test_a_schedule_scored_in_flexdiffs_loop_runs_that_loop_inside_the_pipeline(solver: str) -> None:
    """A schedule file bound to flexdiff:<solver> (as `flexdiff search --solver` writes it): pipe(...) under enable makes
    the images flexdiff.sample scores; the pipeline gets its own scheduler back on disable."""
    model = _model()
    plan = bind(flexdiff.ddim_k(flexdiff.teacher_timesteps(model, solver, T), 4, solver), model.binding(solver))  # null steps too
    pipe = _pipe(model)
    own = pipe.scheduler
    noise = model.initial_noise(2, 0)
    with flexdiff.enabled(pipe, plan):
        assert isinstance(pipe.scheduler, FlexdiffScheduler) and pipe.scheduler.config.solver == solver
        images = pipe(batch_size=2, num_inference_steps=T, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert pipe.scheduler is own
    ours = flexdiff.sample(model, 2, schedule=plan)  # the same noise: DDPMPipeline draws randn(shape, generator) for x_T
    assert torch.equal(noise, torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(0)))
    theirs = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


def test_null_steps_on_a_ddim_pipeline_run_through_flexdiffs_ddim() -> None:
    config = {**DEFAULT_SCHEDULER_CONFIG, "_class_name": "DDIMScheduler", "set_alpha_to_one": True}
    model = _model(config)
    pipe = _pipe(model, "DDIMScheduler")
    plan = flexdiff.ddim_k(flexdiff.pipeline_timesteps(pipe, T), 4)
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with flexdiff.enabled(pipe, plan):
            images = pipe(batch_size=2, num_inference_steps=T, generator=torch.Generator().manual_seed(0), output_type="np").images
    finally:
        handle.remove()
    assert len(calls) == 4
    theirs = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
    torch.testing.assert_close(theirs, flexdiff.sample(model, 2, schedule=plan), rtol=0, atol=1e-5)
    pipe.scheduler.register_to_config(set_alpha_to_one=False)  # ends at alpha-bar_0, not 1: not flexdiff's DDIM
    with pytest.raises(flexdiff.FlexdiffError, match="set_alpha_to_one"):
        flexdiff.enable(pipe, plan)


# --- no thread, the caller's context, both noise kinds, eta, dtype (issue 28, item 1) --------------------------------


def _threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if "flexdiff" in t.name]


@pytest.mark.parametrize("ending", ["complete", "error", "interrupt", "disable-mid-run"])
def test_no_thread_exists_during_or_after_any_run(ending: str) -> None:
    """The sampler runs in the caller's thread: nothing named like the scheduler exists during a run, and the thread
    count is unchanged after a run that completes, raises, is interrupted, or is disabled part-way."""
    import threading

    model = _model()
    plan = bind(flexdiff.ddim_k(flexdiff.teacher_timesteps(model, "ddim-2m", T), 4, "ddim-2m"), model.binding("ddim-2m"))
    pipe = _pipe(model)
    before, seen, calls = threading.active_count(), [], []

    def spy(module, args):
        seen.append(_threads())
        calls.append(1)
        if ending == "error" and len(calls) == 3:
            raise RuntimeError("boom")
        if ending == "interrupt" and len(calls) == 3:
            raise KeyboardInterrupt

    handle = pipe.unet.register_forward_pre_hook(spy)
    try:
        flexdiff.enable(pipe, plan)
        try:
            if ending == "disable-mid-run":
                pipe.scheduler.set_timesteps(T)
                x = torch.randn(1, 1, 8, 8)
                pipe.scheduler.step(pipe.unet(x, pipe.scheduler.timesteps[0]).sample, pipe.scheduler.timesteps[0], x)
            else:
                pipe(batch_size=1, num_inference_steps=T, generator=torch.Generator().manual_seed(0), output_type="np")
        except (RuntimeError, KeyboardInterrupt):
            assert ending in ("error", "interrupt")
        flexdiff.disable(pipe)
    finally:
        handle.remove()
    assert seen and all(names == [] for names in seen)
    assert threading.active_count() == before and _threads() == []


def _flow_case(name: str):
    from test_enable_transformers import PIPELINES

    pipe, call, grid_kwargs = PIPELINES[name]()
    pipe.set_progress_bar_config(disable=True)
    return pipe, call, grid_kwargs


@pytest.mark.parametrize("name", ["sd3", "flux"])
@pytest.mark.parametrize("solver", ["flow-euler", "flow-dpmpp-2m"])
def test_a_flow_schedule_scored_in_flexdiffs_loop_enables_on_its_own_pipeline(name: str, solver: str) -> None:
    """A schedule bound to flexdiff:flow-euler / flow-dpmpp-2m (null steps included) runs on an SD3 / Flux pipeline
    through a flow FlexdiffScheduler: its latents are flexdiff's whole-loop sampler over the same model outputs (to
    1e-5), and for flow-euler the plain pipeline given exactly the kept sigmas (diffusers' FlowMatch Euler)."""
    from dataclasses import replace

    from flexdiff.integrations.base import integration_for
    from flexdiff.noise import FlowSchedule
    from flexdiff.samplers import sampler_info

    pipe, call, grid_kwargs = _flow_case(name)
    grid = flexdiff.pipeline_timesteps(pipe, 6, **grid_kwargs)
    binding = replace(integration_for(pipe).binding(pipe), scheduler=f"flexdiff:{solver}")
    plan = bind(flexdiff.ddim_k(grid, 3, solver), binding)
    own = pipe.scheduler
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    returned: list[torch.Tensor] = []
    with flexdiff.enabled(pipe, plan):
        scheduler = pipe.scheduler
        assert isinstance(scheduler, FlexdiffScheduler) and scheduler.noise_kind == "flow"
        step = scheduler.step

        def recording(model_output, timestep, sample, *args, **kwargs):
            seen.append((model_output.clone(), sample.clone()))
            out = step(model_output, timestep, sample, *args, **kwargs)
            returned.append(out[0])
            return out

        scheduler.step = recording
        images = call()
    assert pipe.scheduler is own and len(seen) == 3
    latents = returned[-1]
    outputs = iter(seen)

    def replay(x: torch.Tensor, s: float, i: int) -> torch.Tensor:
        output, sample = next(outputs)
        torch.testing.assert_close(x, sample.float(), rtol=0, atol=1e-5)  # the same inputs, step for step
        return output.float()

    noise = FlowSchedule.from_scheduler_config(dict(own.config), mu=grid_kwargs.get("mu"))
    ours = sampler_info(solver).fn(replay, seen[0][1].float(), plan.active_timesteps, noise, grid=plan.timesteps)
    torch.testing.assert_close(latents.float(), ours, rtol=0, atol=1e-5)
    if solver == "flow-euler":
        np.testing.assert_allclose(images, call(sigmas=noise.unshifted(plan.active_timesteps)), atol=1e-5)


def test_the_caller_grad_mode_applies() -> None:
    """The step runs in the caller's thread: under no_grad nothing is tracked, under enable_grad the graph is kept
    (a worker thread ran with its own default grad mode whatever the caller's)."""
    scheduler = FlexdiffScheduler.from_scheduler(_pipe(_model()).scheduler, "ddim-2m")
    scheduler.set_timesteps(4)
    x = torch.randn(1, 1, 8, 8)
    out = torch.zeros(1, 1, 8, 8, requires_grad=True)
    with torch.no_grad():
        assert not scheduler.step(out, scheduler.timesteps[0], x).prev_sample.requires_grad
    scheduler.set_timesteps(4)
    with torch.enable_grad():
        assert scheduler.step(out, scheduler.timesteps[0], x).prev_sample.requires_grad


def test_eta_is_ddims_and_deterministic_solvers_refuse_it() -> None:
    """``eta`` and ``generator`` reach the solver as a DDIM pipeline passes them: flexdiff's ddim equals diffusers'
    DDIMScheduler step for step with eta = 1 (the same noise draws); ddim-2m refuses eta > 0 in one line."""
    import diffusers

    model = _model({**DEFAULT_SCHEDULER_CONFIG, "set_alpha_to_one": True})
    theirs = diffusers.DDIMScheduler.from_config({**model.scheduler_config, "set_alpha_to_one": True})
    ours = FlexdiffScheduler.from_scheduler(theirs, "ddim")
    theirs.set_timesteps(5)
    ours.set_timesteps(timesteps=theirs.timesteps.tolist())
    a = b = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for t in theirs.timesteps:
        a = theirs.step(model.eps(a, int(t)), t, a, eta=1.0, generator=ga).prev_sample
        b = ours.step(model.eps(b, int(t)), t, b, eta=1.0, generator=gb).prev_sample
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    deterministic = FlexdiffScheduler.from_scheduler(theirs, "ddim-2m")
    deterministic.set_timesteps(5)
    with pytest.raises(flexdiff.FlexdiffError, match="eta = 0") as err:
        deterministic.step(torch.zeros(1, 1, 8, 8), deterministic.timesteps[0], torch.zeros(1, 1, 8, 8), eta=0.5)
    assert "\n" not in str(err.value)


def test_zero_snr_rescaling_is_read() -> None:
    """``rescale_betas_zero_snr`` changes the alpha-bars; the FlexdiffScheduler standing in keeps it."""
    import diffusers

    theirs = diffusers.DDIMScheduler(rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing")
    ours = FlexdiffScheduler.from_scheduler(theirs, "ddim")
    assert ours.config.rescale_betas_zero_snr
    assert torch.equal(ours.noise.alphas_cumprod, theirs.alphas_cumprod)


def test_an_fp16_pipeline_runs_within_1e_2_of_fp32() -> None:
    """A half-precision pipeline runs a flexdiff:ddim-2m schedule (the run's state stays float32; each step hands the
    pipeline its dtype) within 1e-2 of the float32 pipeline."""
    model = _model()
    plan = bind(flexdiff.ddim_k(flexdiff.teacher_timesteps(model, "ddim-2m", T), 4, "ddim-2m"), model.binding("ddim-2m"))
    images = {}
    for dtype in (torch.float32, torch.float16):
        pipe = _pipe(model)
        pipe.unet.to(dtype)
        with flexdiff.enabled(pipe, plan, strict=False):  # the fp16 weights hash differently
            images[dtype] = pipe(batch_size=2, num_inference_steps=T, generator=torch.Generator().manual_seed(0), output_type="np").images
        pipe.unet.to(torch.float32)
    np.testing.assert_allclose(images[torch.float16], images[torch.float32], atol=1e-2)


def test_a_flow_solver_adds_noise_as_flow_match_euler_does() -> None:
    """Image-to-image on a flow pipeline noises the image at its start sigma: the same x_s as diffusers' own scheduler."""
    import diffusers

    theirs = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    ours = FlexdiffScheduler.from_scheduler(theirs, "flow-euler")
    theirs.set_timesteps(6)
    ours.set_timesteps(6)
    theirs.set_begin_index(2)
    x0, noise = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0)), torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    t = theirs.timesteps[2:3].repeat(2)
    assert torch.allclose(ours.scale_noise(x0, t, noise), theirs.scale_noise(x0, t, noise), atol=1e-6)


@pytest.mark.parametrize("given", ["sigmas", "timesteps", "both"])
def test_a_flow_solver_reads_custom_sigmas_and_timesteps_as_flow_match_euler_does(given: str) -> None:
    """A pipeline may pass its own sigmas (Flux), timesteps (sigma x T) or both (CogView4): the grid is diffusers'."""
    import diffusers

    theirs = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    ours = FlexdiffScheduler.from_scheduler(theirs, "flow-euler")
    sigmas = [1.0, 0.8, 0.55, 0.3, 0.1]
    kwargs = (
        {"sigmas": sigmas}
        if given == "sigmas"
        else {"timesteps": [s * 1000 for s in sigmas]}
        if given == "timesteps"
        else {"sigmas": sigmas, "timesteps": [s * 1000 for s in sigmas]}
    )
    theirs.set_timesteps(**kwargs)
    ours.set_timesteps(**kwargs)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas.float(), rtol=0, atol=1e-6)
