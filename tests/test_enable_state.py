"""The state ``flexdiff.enable`` attaches is owned and checked (issue 28, item 2): copies, saving, swapped components,
two threads, bad schedule arguments and img2img's strength with null steps."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
import torch

import flexdiff
from flexdiff.errors import FlexdiffError
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG
from flexdiff.testing.tiny import tiny_unet

T = 6


def _pipe(scheduler: str = "DDPMScheduler"):
    import diffusers

    pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=getattr(diffusers, scheduler).from_config(DEFAULT_SCHEDULER_CONFIG))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call(pipe, n: int = 1) -> torch.Tensor:
    return torch.from_numpy(pipe(batch_size=n, num_inference_steps=T, generator=torch.Generator().manual_seed(0), output_type="np").images)


def _plan(pipe):
    return flexdiff.deepcache_uniform(flexdiff.pipeline_timesteps(pipe, T), 2, 0)


@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
def test_a_deep_copy_of_an_enabled_pipeline_runs_its_own_weights(scheduler: str) -> None:
    pipe = _pipe(scheduler)
    plan = flexdiff.ddim_k(flexdiff.pipeline_timesteps(pipe, T), 3) if scheduler == "DDIMScheduler" else _plan(pipe)  # null steps: a FlexdiffScheduler
    flexdiff.enable(pipe, plan)
    before = _call(pipe)
    twin = copy.deepcopy(pipe)
    with torch.no_grad():
        for p in twin.unet.parameters():
            p.mul_(1.5)
    assert not torch.equal(_call(twin), before)  # the copy computes with its own (scaled) weights
    assert torch.equal(_call(pipe), before)  # the original is untouched and still enabled
    flexdiff.disable(twin)
    flexdiff.disable(pipe)


@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
def test_save_pretrained_while_enabled_saves_the_plain_pipeline(scheduler: str, tmp_path: Path) -> None:
    pipe = _pipe(scheduler)
    pipe.save_pretrained(tmp_path / "plain")
    plan = flexdiff.ddim_k(flexdiff.pipeline_timesteps(pipe, T), 3) if scheduler == "DDIMScheduler" else _plan(pipe)
    with flexdiff.enabled(pipe, plan):
        pipe.save_pretrained(tmp_path / "enabled")
        _call(pipe)  # still enabled and working after the save
    files = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "enabled") for p in (tmp_path / "enabled").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "plain" / f).read_bytes() == (tmp_path / "enabled" / f).read_bytes(), f


@pytest.mark.parametrize("part", ["unet", "scheduler"])
def test_a_component_swapped_after_enable_is_named_at_the_next_call(part: str) -> None:
    import diffusers

    pipe = _pipe()
    hooked = pipe.unet
    flexdiff.enable(pipe, _plan(pipe))
    if part == "unet":
        pipe.unet = tiny_unet(seed=1)
    else:
        pipe.scheduler = diffusers.DDPMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG)
    with pytest.raises(FlexdiffError, match=f"pipe.{part} replaced after flexdiff.enable") as err:
        _call(pipe)
    assert "\n" not in str(err.value)
    flexdiff.disable(pipe)
    assert getattr(hooked, "_diffusers_hook", None) is None or not hooked._diffusers_hook.hooks  # every hook of the hooked unet is gone
    assert all(not getattr(m, "_diffusers_hook", None) or not m._diffusers_hook.hooks for m in hooked.modules())


def test_two_threads_on_one_enabled_pipeline_get_a_refusal_never_corrupted_latents() -> None:
    pipe = _pipe()
    plan = _plan(pipe)
    with flexdiff.enabled(pipe, plan):
        alone = _call(pipe)
    flexdiff.enable(pipe, plan)
    inside, release, results, errors = threading.Event(), threading.Event(), {}, {}

    def hold(module, args):  # thread A pauses inside its run until thread B has tried
        if threading.current_thread().name == "A":
            inside.set()
            release.wait(10)

    handle = pipe.unet.register_forward_pre_hook(hold)

    def run(name: str) -> None:
        try:
            results[name] = _call(pipe)
        except FlexdiffError as exc:
            errors[name] = str(exc)
        finally:
            if name == "B":
                release.set()

    a = threading.Thread(target=run, args=("A",), name="A")
    a.start()
    inside.wait(10)
    b = threading.Thread(target=run, args=("B",), name="B")
    b.start()
    b.join(20)
    a.join(20)
    handle.remove()
    flexdiff.disable(pipe)
    assert "one call at a time" in errors["B"] and "\n" not in errors["B"]
    assert torch.equal(results["A"], alone)


@pytest.mark.parametrize("bad", [None, {"steps": []}, 3])
def test_enable_with_something_that_is_not_a_schedule_is_one_line(bad: object) -> None:
    pipe = _pipe()
    with pytest.raises(FlexdiffError, match="a flexdiff.Schedule or the path of a schedule file") as err:
        flexdiff.enable(pipe, bad)
    assert "\n" not in str(err.value)
    assert torch.equal(_call(pipe), _call(_pipe()))  # nothing was attached


@pytest.mark.slow
def test_img2img_with_null_steps_keeps_the_strength_or_refuses(request: pytest.FixtureRequest) -> None:
    """strength 0.5 of 6 steps starts the plain pipeline at step 3. Null steps after it: the run starts there (the
    first call's timestep is the plain run's). A null step before it: one-line refusal (today the loop silently
    started later, or sliced an empty grid)."""
    import diffusers

    pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(request.getfixturevalue("sd_dir"), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    seen: list[int] = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: seen.append(int(args[1])))

    def call() -> None:
        seen.clear()
        pipe(prompt="a cat", image=image, strength=0.5, num_inference_steps=T, guidance_scale=3.0, generator=torch.Generator().manual_seed(0), output_type="np")

    from flexdiff.schedule import Schedule, Step

    for scheduler in ("DDPMScheduler", "DDIMScheduler"):  # custom timesteps; DDIM: FlexdiffScheduler
        pipe.scheduler = getattr(diffusers, scheduler).from_config({**pipe.scheduler.config, "set_alpha_to_one": True})
        call()
        plain_start = seen[0]
        grid = tuple(flexdiff.pipeline_timesteps(pipe, T))
        after = Schedule(tuple(Step.parse(k) for k in ["full", "full", "full", "full", "null", "full"]), grid, "ddim")
        before = Schedule(tuple(Step.parse(k) for k in ["full", "null", "full", "full", "full", "full"]), grid, "ddim")
        with flexdiff.enabled(pipe, after):
            call()
            assert seen[0] == plain_start and len(seen) == 2
        for plan in (before, flexdiff.ddim_k(list(grid), 2)):  # the run would start later; or past the active grid
            with flexdiff.enabled(pipe, plan), pytest.raises(FlexdiffError, match="null step\\(s\\) before it") as err:
                call()
            assert "\n" not in str(err.value)
    handle.remove()
