"""The backbone contract, for every registered denoiser family (a new backbone adds its tiny models here)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from test_hooks import tiny_conditional_model, tiny_plain_model
from test_transformer import tiny_dit_model, tiny_pixart_model

from flexdiff.backbones import BACKBONES, backbone_of
from flexdiff.cost import measure_macs, probe_input
from flexdiff.executor import apply_schedule
from flexdiff.hooks import TECHNIQUES, apply_partial_steps, remove_partial_steps
from flexdiff.models import DiffusionModel
from flexdiff.samplers import sampler_names
from flexdiff.sampling import generate, teacher_timesteps
from flexdiff.schedule import Schedule, Step, deepcache_uniform, full

#: backbone name -> tiny random models of that family (diffusers' own classes, seeded)
TINY_MODELS: dict[str, list[Callable[[], DiffusionModel]]] = {
    "unet": [tiny_plain_model, tiny_conditional_model],
    "transformer": [tiny_dit_model, tiny_pixart_model],
}
CASES = [(name, factory) for name in BACKBONES.names() for factory in TINY_MODELS.get(name, [None])]


def test_every_registered_backbone_has_tiny_models() -> None:
    assert set(BACKBONES.names()) <= set(TINY_MODELS), f"add tiny models for {sorted(set(BACKBONES.names()) - set(TINY_MODELS))} to TINY_MODELS"


def _model(name: str, factory: Callable[[], DiffusionModel] | None) -> DiffusionModel:
    if factory is None:
        pytest.fail(f"backbone {name!r} has no tiny model in TINY_MODELS")
    model = factory()
    assert backbone_of(model.denoiser).name == name
    return model


@pytest.mark.parametrize("name, factory", CASES)
def test_layout_units_and_branches(name: str, factory) -> None:
    model = _model(name, factory)
    layout = model.backbone.layout(model.denoiser)
    assert layout.units and layout.branches
    assert [b.index for b in layout.branches] == list(range(layout.num_branches))
    for branch in layout.branches:
        assert branch.deep and set(branch.deep) <= set(range(len(layout.units)))
        assert branch.hollow <= set(branch.deep) and max(branch.deep) not in branch.hollow  # the last deep unit feeds a shallow one
    costs = measure_macs(model)
    assert all(p < costs.full for p in costs.partial)
    assert list(costs.partial) == sorted(costs.partial)  # branch 0 is the cheapest partial step


@pytest.mark.parametrize("name, factory", CASES)
def test_hooks_come_off_bit_identically_and_the_all_full_schedule_is_the_model(name: str, factory) -> None:
    model = _model(name, factory)
    sampler = sampler_names(model.noise.kind)[0]
    ts = teacher_timesteps(model, sampler, 6)
    noise = model.initial_noise(2, 0)
    plain = generate(model, noise, ts, sampler)
    with apply_schedule(model, full(ts, sampler)) as run:
        assert torch.equal(generate(model, noise, ts, sampler, denoise=run.start), plain)
    with apply_schedule(model, deepcache_uniform(ts, 3, 0, sampler)) as run:
        assert not torch.equal(generate(model, noise, ts, sampler, denoise=run.start), plain)
    assert torch.equal(generate(model, noise, ts, sampler), plain)
    units = model.backbone.layout(model.denoiser).units
    assert all(getattr(m, "_diffusers_hook", None) is None or m._diffusers_hook.get_hook(t.hook_name) is None for _, m in units for _, t in TECHNIQUES.items())
    apply_partial_steps(model.denoiser)
    remove_partial_steps(model.denoiser)
    assert torch.equal(generate(model, noise, ts, sampler), plain)


@pytest.mark.parametrize("name, factory", CASES)
def test_a_partial_step_on_the_full_steps_input_reproduces_it(name: str, factory) -> None:
    model = _model(name, factory)
    layout = model.backbone.layout(model.denoiser)
    x, t = probe_input(model, 2)
    reference = model.eps(x, t)
    sampler = sampler_names(model.noise.kind)[0]
    for branch in range(layout.num_branches):
        plan = Schedule((Step("full"), Step("partial", branch)), (t, t * 0.9 if model.noise.kind == "flow" else t - 1), sampler)
        with apply_schedule(model, plan) as run:
            run.start()
            run.set_step(0)
            first = model.eps(x, t)
            run.set_step(1)
            again = model.eps(x, t)
        assert torch.equal(first, reference)
        torch.testing.assert_close(again, reference, rtol=1e-5, atol=1e-5)
