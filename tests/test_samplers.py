"""Our samplers against diffusers' own schedulers on uniform grids, and their behaviour on arbitrary grids."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from flexdiff.errors import FlexdiffError
from flexdiff.noise import NoiseSchedule, initial_noise
from flexdiff.samplers import (
    check_timesteps,
    ddim,
    ddim_2m,
    dpmpp_2m,
    same_trajectory,
    teacher_error_share,
    uniform_timesteps,
)
from flexdiff.testing.samplers import BASE, Network, denoise_of
from flexdiff.testing.tiny import tiny_unet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(seed=1)


def _reference(scheduler, unet, x: torch.Tensor, **step_kwargs) -> torch.Tensor:
    net = Network(unet, NoiseSchedule.from_scheduler_config(dict(scheduler.config)))
    for t in scheduler.timesteps:
        x = scheduler.step(net(x, int(t)), t, x, **step_kwargs).prev_sample
    return x


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("clip_sample", [False, True])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_matches_diffusers(unet, steps: int, spacing: str, clip_sample: bool, prediction_type: str) -> None:
    config = {**BASE, "clip_sample": clip_sample, "timestep_spacing": spacing, "prediction_type": prediction_type}
    scheduler = DDIMScheduler(**config)
    scheduler.set_timesteps(steps)
    noise = NoiseSchedule.from_scheduler_config(config)
    ts = uniform_timesteps(1000, steps, spacing)
    assert ts == scheduler.timesteps.tolist()
    x = initial_noise(3, (1, 8, 8), seed=0)
    ours = ddim(denoise_of(unet, noise), x, ts, noise)
    theirs = _reference(scheduler, unet, x, eta=0.0)
    assert (ours - theirs).abs().max() < 1e-5


def test_ddim_eta_matches_diffusers(unet) -> None:
    config = {**BASE, "clip_sample": True}
    scheduler = DDIMScheduler(**config)
    scheduler.set_timesteps(20)
    noise = NoiseSchedule.from_scheduler_config(config)
    x = initial_noise(3, (1, 8, 8), seed=0)
    ours = ddim(denoise_of(unet, noise), x, scheduler.timesteps.tolist(), noise, eta=1.0, generator=torch.Generator().manual_seed(7))
    theirs = _reference(scheduler, unet, x, eta=1.0, generator=torch.Generator().manual_seed(7))
    assert (ours - theirs).abs().max() < 1e-5
    deterministic = ddim(denoise_of(unet, noise), x, scheduler.timesteps.tolist(), noise)
    assert (ours - deterministic).abs().max() > 1e-2  # eta really adds noise


@pytest.mark.parametrize("steps", [5, 10, 20, 25])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_dpmpp_2m_matches_diffusers(unet, steps: int, prediction_type: str) -> None:
    config = {**BASE, "prediction_type": prediction_type}
    scheduler = DPMSolverMultistepScheduler(**config, algorithm_type="dpmsolver++", solver_order=2)
    scheduler.set_timesteps(steps)
    noise = NoiseSchedule.from_scheduler_config(config)
    ts = uniform_timesteps(1000, steps, "linspace")
    assert ts == scheduler.timesteps.tolist()
    x = initial_noise(3, (1, 8, 8), seed=0)
    ours = dpmpp_2m(denoise_of(unet, noise), x, ts, noise)
    theirs = _reference(scheduler, unet, x)
    assert (ours - theirs).abs().max() < 1e-5


def test_ddim_dropping_a_timestep_equals_reusing_the_noise_prediction(unet) -> None:
    """A null step (timestep dropped) is exactly DDIM with eta 0 reusing the previous eps (methods.md §1)."""
    noise = NoiseSchedule.from_scheduler_config({**BASE, "clip_sample": True})
    ts = uniform_timesteps(1000, 10, "leading")
    dropped = {3, 4, 7}
    x = initial_noise(2, (1, 8, 8), seed=3)
    active = [t for i, t in enumerate(ts) if i not in dropped]
    jumped = ddim(denoise_of(unet, noise), x, active, noise)

    cache: dict[str, torch.Tensor] = {}
    plain = denoise_of(unet, noise)

    def reuse(xt: torch.Tensor, t: int, i: int) -> torch.Tensor:
        if i not in dropped:
            cache["eps"] = plain(xt, t, i)
        return cache["eps"]

    reused = ddim(reuse, x, ts, noise)
    assert (jumped - reused).abs().max() < 1e-5
    # ... while DPM-Solver++(2M), a multistep solver, tells the two apart (why we drop: methods.md §1)
    assert (dpmpp_2m(plain, x, active, noise) - dpmpp_2m(reuse, x, ts, noise)).abs().max() > 1e-4


def test_denoise_receives_timestep_and_active_index(unet) -> None:
    noise = NoiseSchedule.from_scheduler_config(BASE)
    calls: list[tuple[int, int]] = []

    def spy(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        calls.append((t, i))
        return torch.zeros_like(x)

    for sampler in (ddim, dpmpp_2m, ddim_2m):
        calls.clear()
        sampler(spy, torch.randn(1, 1, 4, 4), [900, 500, 20], noise)
        assert calls == [(900, 0), (500, 1), (20, 2)]


@pytest.mark.parametrize("clip_sample", [False, True])
def test_ddim_2m_on_the_teacher_grid_is_ddim(unet, clip_sample: bool) -> None:
    """Where a schedule keeps every step of the grid, the correction share is 0 and ddim-2m *is* the teacher."""
    noise = NoiseSchedule.from_scheduler_config({**BASE, "clip_sample": clip_sample})
    ts = uniform_timesteps(1000, 20, "leading")
    x = initial_noise(3, (1, 8, 8), seed=0)
    teacher = ddim(denoise_of(unet, noise), x, ts, noise)
    assert torch.equal(ddim_2m(denoise_of(unet, noise), x, ts, noise, grid=ts), teacher)
    assert torch.equal(ddim_2m(denoise_of(unet, noise), x, ts, noise), teacher)  # no grid: the active steps are the grid


def test_teacher_error_share() -> None:
    noise = NoiseSchedule.from_scheduler_config(BASE)
    grid = uniform_timesteps(1000, 50, "leading")
    assert teacher_error_share(grid, grid[3], grid[4], noise) == 0.0  # the grid's own step
    two, five = teacher_error_share(grid, grid[10], grid[12], noise), teacher_error_share(grid, grid[10], grid[15], noise)
    assert 0.45 < two <= 0.5 and 0.75 < five <= 0.8  # 1 - 1/m for m near-equal sub-steps, below it when they differ
    with pytest.raises(FlexdiffError, match="teacher grid"):
        teacher_error_share(grid, grid[3], 555, noise)


@pytest.mark.slow
@pytest.mark.parametrize("clip_sample", [False, True])
@pytest.mark.parametrize("every", [2, 3, 4])
def test_ddim_2m_lands_nearer_the_teacher_than_ddim_or_dpmpp_on_the_same_steps(unet, clip_sample: bool, every: int) -> None:
    """Skipping grid points, ddim-2m keeps the teacher's discretisation error; DDIM multiplies it, DPM-Solver++ removes it.

    Unclipped, the gap to the DDIM-50 teacher is less than half of either's; clipped x0-hat (the built-in model's
    setting) makes all three nonlinear and the test network's tanh perturbation is rough, so there only the order holds.
    """
    noise = NoiseSchedule.from_scheduler_config({**BASE, "clip_sample": clip_sample})
    grid = uniform_timesteps(1000, 50, "leading")
    active = grid[::every]
    x = initial_noise(4, (1, 8, 8), seed=2)
    fn = denoise_of(unet, noise)
    teacher = ddim(fn, x, grid, noise)
    gap = {
        name: float((sampler(fn, x, active, noise, grid=grid) - teacher).norm())
        for name, sampler in {"ddim": ddim, "dpmpp-2m": dpmpp_2m, "ddim-2m": ddim_2m}.items()
    }
    factor = 1.0 if clip_sample else 0.5
    assert gap["ddim-2m"] < factor * gap["ddim"] and gap["ddim-2m"] < factor * gap["dpmpp-2m"], gap


@pytest.mark.parametrize("dropped", [(), (9,), (1,), (1, 9), (3,), (2, 3, 6)])
def test_same_trajectory_says_when_ddim_2m_is_ddim(unet, dropped: tuple[int, ...]) -> None:
    """same_trajectory's answer for ddim / ddim-2m matches what the two samplers actually do on the plan."""
    noise = NoiseSchedule.from_scheduler_config({**BASE, "clip_sample": True})
    grid = uniform_timesteps(1000, 10, "leading")
    active = [t for i, t in enumerate(grid) if i not in dropped]
    x = initial_noise(2, (1, 8, 8), seed=4)
    equal = torch.equal(ddim(denoise_of(unet, noise), x, active, noise), ddim_2m(denoise_of(unet, noise), x, active, noise, grid=grid))
    assert same_trajectory("ddim", "ddim-2m", active, grid) == equal == (dropped in {(), (9,), (1,), (1, 9)})
    assert same_trajectory("ddim", "ddim", active, grid) and not same_trajectory("ddim", "dpmpp-2m", active, grid)


def test_ddim_2m_rejects_eta() -> None:
    noise = NoiseSchedule.from_scheduler_config(BASE)
    with pytest.raises(FlexdiffError, match="eta = 0"):
        ddim_2m(lambda x, t, i: x, torch.zeros(1, 1, 4, 4), [900, 500], noise, eta=0.5)


@pytest.mark.parametrize("bad", [[], [10, 10], [5, 10], [1000, 5], [5, -1]])
def test_bad_timesteps_are_rejected(bad: list[int]) -> None:
    with pytest.raises(FlexdiffError):
        check_timesteps(bad, 1000)


@pytest.mark.parametrize("steps", [0, -3, 1001])
def test_bad_step_counts_are_rejected(steps: int) -> None:
    with pytest.raises(FlexdiffError, match="number of steps"):
        uniform_timesteps(1000, steps)


def test_initial_noise_is_the_documented_draw() -> None:
    expected = torch.randn((5, 1, 16, 16), generator=torch.Generator().manual_seed(11))
    assert torch.equal(initial_noise(5, (1, 16, 16), 11), expected)
