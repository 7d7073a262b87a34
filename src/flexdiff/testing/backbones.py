"""The backbone contract: every registered denoiser family, on the tiny models it declares
(``@fixture_for("backbone", name)``: a list of zero-argument factories of :class:`~flexdiff.models.DiffusionModel`),
finds units and nested branches with partial steps cheaper than full ones, comes off bit-identically, runs the
all-full schedule as the model itself, and replays a full step's own input exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from flexdiff.backbones import BACKBONES, Layout, backbone_of
from flexdiff.hooks import TECHNIQUES, StepState, apply_partial_steps, remove_partial_steps
from flexdiff.models import DiffusionModel
from flexdiff.running.cost import measure_macs, probe_input
from flexdiff.running.executor import ScheduleExecutor, apply_schedule
from flexdiff.running.own_loop import generate, teacher_timesteps
from flexdiff.samplers import sampler_names
from flexdiff.schedule import FULL, PARTIAL, Schedule, Step, deepcache_uniform, full
from flexdiff.testing._suites import fixture, register_suite
from flexdiff.utils.diffusers_private import hook_registry


def tiny_models(name: str) -> Iterator[DiffusionModel]:
    """The backbone's declared tiny models, each checked to be of that family."""
    factories = fixture("backbone", name)
    assert factories, f"backbone {name!r} declares no tiny model"
    for factory in factories:
        model = factory()
        assert backbone_of(model.denoiser).name == name, f"{factory.__name__} is a {backbone_of(model.denoiser).name}, not a {name}"
        yield model


def layout_units_and_branches(name: str) -> None:
    for model in tiny_models(name):
        layout = model.backbone.layout(model.denoiser)
        assert layout.units and layout.branches, f"{model.name}: no units or no branches"
        assert [b.index for b in layout.branches] == list(range(layout.num_branches))
        for branch in layout.branches:
            assert branch.deep and set(branch.deep) <= set(range(len(layout.units))), f"{model.name} branch {branch.index}: deep {branch.deep}"
            assert branch.hollow <= set(branch.deep) and max(branch.deep) not in branch.hollow  # the last deep unit feeds a shallow one
        costs = measure_macs(model)
        assert all(p < costs.full for p in costs.partial), f"{model.name}: a partial step costs a full one"
        assert list(costs.partial) == sorted(costs.partial), f"{model.name}: branch 0 is not the cheapest partial step"


def hooks_come_off_bit_identically_and_all_full_is_the_model(name: str) -> None:
    for model in tiny_models(name):
        sampler = sampler_names(model.noise.kind)[0]
        ts = teacher_timesteps(model, sampler, 6)
        noise = model.initial_noise(2, 0)
        plain = generate(model, noise, ts, sampler)
        with apply_schedule(model, full(ts, sampler)) as run:
            assert torch.equal(generate(model, noise, ts, sampler, denoise=run.start), plain), f"{model.name}: the all-full schedule is not the model"
        with apply_schedule(model, deepcache_uniform(ts, 3, 0, sampler)) as run:
            assert not torch.equal(generate(model, noise, ts, sampler, denoise=run.start), plain), f"{model.name}: partial steps changed nothing"
        assert torch.equal(generate(model, noise, ts, sampler), plain), f"{model.name}: leaving the schedule did not restore the model"
        units = model.backbone.layout(model.denoiser).units
        hooked = [u for u, m in units for _, t in TECHNIQUES.items() if hook_registry(m) is not None and hook_registry(m).get_hook(t.hook_name)]
        assert not hooked, f"{model.name}: hooks left on {hooked}"
        apply_partial_steps(model.denoiser)
        remove_partial_steps(model.denoiser)
        assert torch.equal(generate(model, noise, ts, sampler), plain)


def replays_its_own_input(
    model: DiffusionModel, layout: Layout, state: StepState, probe: tuple[torch.Tensor, float], reference: torch.Tensor, what: str
) -> None:
    """With step hooks on ``model`` (``layout``, ``state``): at every branch, a full step on ``probe`` (x, t) computes
    ``reference`` (the plain model's output, taken before the hooks went on) and a partial step on that full step's own
    input reproduces it. The backbone and hook-technique suites share this."""
    x, t = probe
    sampler = sampler_names(model.noise.kind)[0]
    for branch in range(layout.num_branches):
        plan = Schedule((Step(FULL), Step(PARTIAL, branch)), (t, t * 0.9 if model.noise.kind == "flow" else t - 1), sampler)
        run = ScheduleExecutor(model, plan, layout, state)
        run.new_run()
        run.set_step(0)
        first = model.eps(x, t)
        run.set_step(1)
        again = model.eps(x, t)
        assert torch.equal(first, reference), f"{model.name}: a full step under {what} is not the model"
        torch.testing.assert_close(again, reference, rtol=1e-5, atol=1e-5, msg=lambda m: f"{model.name} {what} branch {branch}: {m}")


def a_partial_step_on_the_full_steps_input_reproduces_it(name: str) -> None:
    for model in tiny_models(name):
        probe = probe_input(model, 2)
        reference = model.eps(*probe)
        layout, state = apply_partial_steps(model.denoiser)
        try:
            replays_its_own_input(model, layout, state, probe, reference, f"the {name} backbone's hooks")
        finally:
            state.reset()
            remove_partial_steps(model.denoiser)


register_suite(
    "backbone",
    BACKBONES,
    [layout_units_and_branches, hooks_come_off_bit_identically_and_all_full_is_the_model, a_partial_step_on_the_full_steps_input_reproduces_it],
)
