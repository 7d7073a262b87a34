"""Flow matching: the rectified-flow noise schedule and its samplers equal diffusers' (SD3-style static shift,
Flux-style dynamic shifting), on the uniform grid and on grids with dropped sigmas (null steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

from flexdiff.errors import FlexdiffError
from flexdiff.noise import FlowSchedule, noise_schedule
from flexdiff.samplers import (
    check_sampler_for,
    flow_dpmpp_2m,
    flow_euler,
    sampler_names,
)

SD3 = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}
FLUX = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
CONFIGS = {"sd3": (SD3, None), "flux": (FLUX, 1024)}


def _velocity() -> "callable":
    """A smooth nonlinear velocity field of x and sigma (a stand-in network; the solvers must agree on any)."""
    w = torch.randn((4, 4), generator=torch.Generator().manual_seed(0)) * 0.5
    return lambda x, s: torch.tanh(torch.einsum("ij,bjhw->bihw", w, x)) * (1 + s) - x * s


X0 = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(1))


def _diffusers(scheduler, v) -> torch.Tensor:
    x = X0.clone()
    for t in scheduler.timesteps:
        sigma = float(scheduler.sigmas[scheduler.step_index or 0])
        x = scheduler.step(v(x, sigma), t, x).prev_sample
    return x


def _config(name: str) -> tuple[dict, FlowSchedule]:
    config, seq = CONFIGS[name]
    return config, noise_schedule(config, image_seq_len=seq)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("steps", [1, 7, 20])
def test_grid_equals_diffusers(name: str, steps: int) -> None:
    config, noise = _config(name)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    scheduler.set_timesteps(steps, mu=noise.mu)
    assert noise.sigmas(steps) == scheduler.sigmas[:-1].tolist()


@pytest.mark.parametrize("name", CONFIGS)
def test_flow_euler_equals_diffusers_uniform(name: str) -> None:
    config, noise = _config(name)
    v = _velocity()
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    scheduler.set_timesteps(20, mu=noise.mu)
    want = _diffusers(scheduler, v)
    got = flow_euler(lambda x, s, i: v(x, s), X0.clone(), noise.sigmas(20), noise)
    assert (got - want).abs().max() < 1e-5


@pytest.mark.parametrize("name", CONFIGS)
def test_flow_euler_equals_diffusers_dropped_sigmas(name: str) -> None:
    """Null steps drop sigmas: diffusers given the same custom sigmas (through ``unshifted``: it shifts what it is
    given) runs the same trajectory, with one network call per kept sigma."""
    config, noise = _config(name)
    v = _velocity()
    kept = [s for k, s in enumerate(noise.sigmas(20)) if k % 3 != 1]
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    scheduler.set_timesteps(sigmas=noise.unshifted(kept), mu=noise.mu)
    assert np.allclose(scheduler.sigmas[:-1].numpy(), kept, atol=1e-6)
    calls = []
    got = flow_euler(lambda x, s, i: calls.append(s) or v(x, s), X0.clone(), kept, noise)
    assert len(calls) == len(kept) < 20
    assert (got - _diffusers(scheduler, v)).abs().max() < 1e-5


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_dpmpp_2m_equals_diffusers(shift: float) -> None:
    """DPM-Solver++(2M) with flow sigmas: diffusers' multistep solver (Sana's, Wan's) on its own grid."""
    v = _velocity()
    scheduler = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift, final_sigmas_type="zero", solver_order=2)
    scheduler.set_timesteps(20)
    sigmas = scheduler.sigmas[:-1].tolist()
    want = _diffusers(scheduler, v)
    got = flow_dpmpp_2m(lambda x, s, i: v(x, s), X0.clone(), sigmas, None)
    assert (got - want).abs().max() < 1e-5
    # a dropped sigma is a longer step: one call per kept sigma, and the result changes
    calls = []
    dropped = flow_dpmpp_2m(lambda x, s, i: calls.append(s) or v(x, s), X0.clone(), sigmas[::2], None)
    assert len(calls) == 10 and not torch.allclose(dropped, got)


def test_samplers_refuse_the_other_noise_kind() -> None:
    assert set(sampler_names("flow")) >= {"flow-euler", "flow-dpmpp-2m"}
    assert "flow-euler" not in sampler_names("alpha_bar")
    with pytest.raises(FlexdiffError, match="flow noise schedule"):
        check_sampler_for("ddim", "flow")
    with pytest.raises(FlexdiffError, match="alpha-bar"):
        check_sampler_for("flow-euler", "alpha_bar")


@pytest.mark.parametrize("bad", [{"shift": 0}, {"shift": "3"}, {"use_karras_sigmas": True}, {"num_train_timesteps": 0}, {"time_shift_type": "cubic"}])
def test_bad_flow_config_is_one_line(bad: dict) -> None:
    with pytest.raises(FlexdiffError) as err:
        noise_schedule({**SD3, **bad})
    assert "\n" not in str(err.value)


def test_unshifted_inverts_the_shift() -> None:
    for name in CONFIGS:
        _, noise = _config(name)
        sigmas = noise.sigmas(13)
        assert np.allclose(noise.shifted(np.array(noise.unshifted(sigmas))), sigmas, atol=1e-7)
