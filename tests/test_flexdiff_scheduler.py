"""flexdiff's samplers as a diffusers scheduler: step-wise equal to flexdiff's own loop for every registered sampler,
and what ``enable(pipe)`` runs for a schedule scored in flexdiff's loop (or null steps on DDIM)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_unet

import flexdiff
from flexdiff.integrations.flexdiff_scheduler import FlexdiffScheduler
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.samplers import sampler_names
from flexdiff.schedule import bind

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
