"""The sampler contract: every registered sampler calls the network once per active step in order, gives each image
what it would get alone, keeps its declared determinism, refuses bad timesteps and equals its declared twin where it
says so. The network is a well-scaled one of the sampler's noise kind (:class:`Network`, :func:`contract_denoise`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.noise import FlowSchedule, NoiseSchedule, initial_noise
from flexdiff.samplers import SAMPLERS, same_trajectory, sampler_info, uniform_timesteps
from flexdiff.testing._suites import register_suite
from flexdiff.testing.tiny import tiny_unet

#: DDPM's linear betas: the alpha-bar schedule the contract's eps-samplers run on
BASE = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}
Denoise = Callable[[torch.Tensor, Any, int], torch.Tensor]


class Network:
    """A well-scaled test network: the exact eps-predictor for data ~ N(0, 0.25 I), perturbed by a tiny UNet.

    (A bare random UNet makes x0-hat explode to |x| ~ 100, where float32 round-off alone exceeds 1e-5.) It answers in
    the model's ``prediction_type`` so diffusers' schedulers and our conversion to eps are both exercised.
    """

    def __init__(self, unet: torch.nn.Module, noise: NoiseSchedule) -> None:
        self.unet, self.noise = unet, noise

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        a = float(self.noise.alphas_cumprod[int(t)])
        with torch.no_grad():
            eps = (1 - a) ** 0.5 * x / (0.25 * a + 1 - a) + 0.1 * torch.tanh(self.unet(x, t).sample)
        if self.noise.prediction_type == "v_prediction":
            x0 = (x - (1 - a) ** 0.5 * eps) / a**0.5
            return a**0.5 * eps - (1 - a) ** 0.5 * x0
        return eps


def denoise_of(unet: torch.nn.Module, noise: NoiseSchedule) -> Denoise:
    """The samplers' ``denoise(x, t, i) -> eps`` of :class:`Network`."""
    net = Network(unet, noise)
    return lambda x, t, i: noise.to_eps(net(x, t), x, t)


def contract_denoise(unet: torch.nn.Module, noise: NoiseSchedule | FlowSchedule) -> Denoise:
    """eps-hat of :class:`Network`, or for flow the exact velocity of data ~ N(0, 0.25 I) perturbed by the UNet."""
    if noise.kind != "flow":
        return denoise_of(unet, noise)

    def velocity(x: torch.Tensor, s: float, i: int) -> torch.Tensor:
        # x = (1 - s) x0 + s eps with x0 ~ N(0, 0.25): E[eps - x0 | x] = x (s - 0.25 (1 - s)) / ((1 - s)^2 0.25 + s^2)
        with torch.no_grad():
            bump = 0.01 * unet(x, torch.full((len(x),), s * 1000)).sample
        return x * (s - 0.25 * (1 - s)) / (0.25 * (1 - s) ** 2 + s**2) + bump

    return velocity


@cache
def _unet() -> torch.nn.Module:
    return tiny_unet(seed=1)


def _noise(info: Any) -> NoiseSchedule | FlowSchedule:
    """The noise schedule of the sampler's kind: DDPM's alpha-bars, or SD3-style rectified flow (shift 3)."""
    return FlowSchedule(shift=3.0) if info.noise_kind == "flow" else NoiseSchedule.from_scheduler_config(BASE)


def _grid(info: Any, noise: NoiseSchedule | FlowSchedule, steps: int) -> list[Any]:
    return noise.sigmas(steps) if info.noise_kind == "flow" else uniform_timesteps(1000, steps, info.spacing)


def calls_denoise_once_per_active_step_in_order(name: str) -> None:
    info = sampler_info(name)
    noise = _noise(info)
    grid = _grid(info, noise, 10)
    active = [t for i, t in enumerate(grid) if i not in (3, 4, 7)]  # null steps dropped: the sampler jumps over them
    seen: list[tuple[Any, int, tuple[int, ...]]] = []
    inner = contract_denoise(_unet(), noise)

    def spy(x: torch.Tensor, t: Any, i: int) -> torch.Tensor:
        seen.append((t, i, tuple(x.shape)))
        return inner(x, t, i)

    x = initial_noise(3, (1, 8, 8), 0)
    out = info.fn(spy, x, active, noise, grid=grid)
    assert seen == [(t, i, (3, 1, 8, 8)) for i, t in enumerate(active)], f"{name}: network calls {seen}"
    assert out.shape == x.shape and torch.isfinite(out).all(), f"{name}: output {tuple(out.shape)}, finite {bool(torch.isfinite(out).all())}"


def images_do_not_depend_on_the_batch(name: str) -> None:
    info = sampler_info(name)
    noise = _noise(info)
    ts = _grid(info, noise, 6)
    x = initial_noise(4, (1, 8, 8), 1)
    whole = info.fn(contract_denoise(_unet(), noise), x, ts, noise, grid=ts)
    halves = torch.cat([info.fn(contract_denoise(_unet(), noise), x[i : i + 2], ts, noise, grid=ts) for i in (0, 2)])
    torch.testing.assert_close(whole, halves, rtol=0, atol=1e-5, msg=lambda m: f"{name}: images depend on the batch: {m}")


def deterministic_samplers_refuse_eta_and_the_others_use_it(name: str) -> None:
    info = sampler_info(name)
    noise = _noise(info)
    ts = _grid(info, noise, 4)
    x = initial_noise(2, (1, 8, 8), 2)
    if info.deterministic:
        try:
            info.fn(contract_denoise(_unet(), noise), x, ts, noise, eta=0.5)
        except FlexdiffError:
            return
        raise AssertionError(f"{name} is registered deterministic but took eta=0.5 without a one-line error")
    plain = info.fn(contract_denoise(_unet(), noise), x, ts, noise)
    noisy = info.fn(
        contract_denoise(_unet(), noise), x, ts, noise, eta=1.0, noise_sampler=lambda i: torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
    )
    assert not torch.equal(plain, noisy), f"{name} is registered stochastic but eta=1 changed nothing"


def refuses_bad_timesteps_and_follows_its_declared_twin(name: str) -> None:
    info = sampler_info(name)
    noise = _noise(info)
    try:
        info.fn(contract_denoise(_unet(), noise), initial_noise(1, (1, 8, 8), 0), [10, 10], noise)
    except FlexdiffError:
        pass
    else:
        raise AssertionError(f"{name} ran on the timesteps [10, 10] without a one-line error")
    if info.same_on_grid_as is not None:  # wherever every corrected step is one of the grid's own, it is its twin exactly
        twin = sampler_info(info.same_on_grid_as)
        grid = _grid(info, noise, 8)
        x = initial_noise(2, (1, 8, 8), 3)
        assert same_trajectory(name, twin.name, grid, grid)
        ours = info.fn(contract_denoise(_unet(), noise), x, grid, noise, grid=grid)
        assert torch.equal(ours, twin.fn(contract_denoise(_unet(), noise), x, grid, noise, grid=grid)), f"{name} differs from its twin {twin.name} on the grid"


register_suite(
    "sampler",
    SAMPLERS,
    [
        calls_denoise_once_per_active_step_in_order,
        images_do_not_depend_on_the_batch,
        deterministic_samplers_refuse_eta_and_the_others_use_it,
        refuses_bad_timesteps_and_follows_its_declared_twin,
    ],
)
