"""``torch.compile`` under an enabled schedule: no graph break, one graph per distinct step type, compiled output equal
to eager output, and a schedule with more step types than dynamo's recompile limit still compiled (not silently eager).
Dynamo's ``eager`` backend keeps these fast: graph capture, breaks and guards are dynamo's, whatever the backend."""

from __future__ import annotations

import warnings

import pytest
import torch

import flexdiff
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.running.executor import step_types
from flexdiff.schedule import FULL, PARTIAL, Schedule, Step
from flexdiff.testing.tiny import tiny_unet


@pytest.fixture()
def dynamo():
    """Fresh dynamo caches and counters; the recompile limit restored afterwards."""
    import torch._dynamo
    import torch._dynamo.config
    from torch._dynamo.utils import counters

    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.config.recompile_limit = limit
    torch._dynamo.reset()


def _graphs(counters) -> tuple[int, int]:
    """(unique graphs captured, graph breaks)."""
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def _every_branch(timesteps: list[int], num_branches: int) -> Schedule:
    """Full, then a partial step at each branch in turn (a full step between them): 1 + num_branches step types."""
    steps = []
    for b in range(num_branches):
        steps += [Step(FULL), Step(PARTIAL, b)]
    return Schedule(tuple(steps), tuple(timesteps[: 2 * num_branches]), "ddim", "every-branch")


def test_flexdiffs_loop_compiled_equals_eager_one_graph_per_step_type(dynamo) -> None:
    model = DiffusionModel(tiny_unet(), NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 8, 8), "tiny")
    plan = flexdiff.deepcache_uniform(flexdiff.uniform_timesteps(1000, 10), 3, 0)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with flexdiff.apply_schedule(model, plan) as run:
        eager = flexdiff.generate(model, noise, plan.active_timesteps, "ddim", denoise=run.start)
    model.denoiser = torch.compile(model.denoiser, backend="eager")
    with flexdiff.apply_schedule(model, plan) as run:
        compiled = flexdiff.generate(model, noise, plan.active_timesteps, "ddim", denoise=run.start)
    assert torch.equal(compiled, eager)
    assert _graphs(dynamo) == (len(step_types(plan)), 0) == (2, 0)  # full, partial at branch 0


@pytest.mark.parametrize("how", ["torch.compile(unet)", "unet.compile()"])
def test_a_users_compiled_pipeline_under_enable(how: str, dynamo, sd_dir) -> None:
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(sd_dir, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    ts = flexdiff.pipeline_timesteps(pipe, 8)
    plan = Schedule(
        (Step(FULL), Step(PARTIAL, 0), Step(PARTIAL, 1), Step(FULL), Step(PARTIAL, 1), Step(PARTIAL, 0), Step(FULL), Step(PARTIAL, 2)),
        tuple(ts),
        "ddim",
        "mixed",
    )

    def call() -> torch.Tensor:
        out = pipe(
            prompt=["a cat", "a dog"],
            guidance_scale=3.0,
            num_inference_steps=8,
            height=16,
            width=16,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        )
        return torch.from_numpy(out.images)

    with flexdiff.enabled(pipe, plan):
        eager = call()
    if how == "unet.compile()":
        pipe.unet.compile(backend="eager")
    else:
        pipe.unet = torch.compile(pipe.unet, backend="eager")
    with flexdiff.enabled(pipe, plan):
        compiled = call()
        assert _graphs(dynamo) == (len(step_types(plan)), 0) == (4, 0)  # full, partial at branches 0, 1, 2
        call()
        assert _graphs(dynamo) == (4, 0)  # the next pipe(...) call reuses them (a new enable makes new hooks: new graphs)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


def test_more_step_types_than_the_recompile_limit_are_still_compiled(dynamo) -> None:
    import torch._dynamo.config
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=2,
        norm_num_groups=2,
        down_block_types=("DownBlock2D",) * 4,
        up_block_types=("UpBlock2D",) * 4,
        add_attention=False,
    )
    model = DiffusionModel(unet, NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 16, 16), "twelve")
    assert model.layout.num_branches == 12
    plan = _every_branch(flexdiff.uniform_timesteps(1000, 24), 12)
    noise = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch._dynamo.config.recompile_limit = 8  # dynamo's default
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an eager model (every candidate of a search) is raised the limit silently
        with flexdiff.apply_schedule(model, plan) as run:
            eager = flexdiff.generate(model, noise, plan.active_timesteps, "ddim", denoise=run.start)
    assert torch._dynamo.config.recompile_limit == 13
    torch._dynamo.config.recompile_limit = 8
    model.denoiser = torch.compile(unet, backend="eager")
    with pytest.warns(UserWarning, match="recompile_limit from 8 to 13"):
        with flexdiff.apply_schedule(model, plan) as run:
            compiled = flexdiff.generate(model, noise, plan.active_timesteps, "ddim", denoise=run.start)
    assert torch.equal(compiled, eager)
    assert _graphs(dynamo) == (13, 0)  # every step type compiled: none fell back to eager at the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the limit is raised once, not on every run
        with flexdiff.apply_schedule(model, plan):
            pass
