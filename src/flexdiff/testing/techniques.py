"""The hook-technique contract: every registered technique, on the tiny models of the backbones it is for (those
whose ``reuse`` names it, or what it declares with ``@fixture_for("technique", name)``: backbone names), computes the
model itself in full steps, replays a full step's own input exactly in partial steps at every branch, and comes off
by its hook name leaving the model bit-identical."""

from __future__ import annotations

import torch

from flexdiff.backbones import BACKBONES
from flexdiff.hooks import TECHNIQUES, apply_partial_steps, remove_partial_steps
from flexdiff.running.cost import probe_input
from flexdiff.testing._suites import fixture, register_suite
from flexdiff.testing.backbones import replays_its_own_input
from flexdiff.utils.diffusers_private import hook_registry


def _backbones(name: str) -> list[str]:
    names = fixture("technique", name, default=lambda: [b for b, backbone in BACKBONES.items() if backbone.reuse == name])
    assert names, f"no backbone reuses with technique {name!r}: declare the ones it is for with @fixture_for('technique', {name!r})"
    return names


def replays_the_full_step_and_comes_off_by_name(name: str) -> None:
    technique = TECHNIQUES.get(name)
    for backbone in _backbones(name):
        for factory in fixture("backbone", backbone):
            model = factory()
            x, t = probe_input(model, 2)
            reference = model.eps(x, t)
            layout, state = apply_partial_steps(model.denoiser, technique=name)
            try:
                units = [m for _, m in layout.units]
                assert all(hook_registry(m).get_hook(technique.hook_name) is not None for m in units), f"{model.name}: {name} hooks are not on every unit"
                replays_its_own_input(model, layout, state, (x, t), reference, name)
            finally:
                state.reset()
                remove_partial_steps(model.denoiser)
            assert all(hook_registry(m) is None or hook_registry(m).get_hook(technique.hook_name) is None for m in units), (
                f"{model.name}: {name} hooks stayed on"
            )
            assert torch.equal(model.eps(x, t), reference), f"{model.name}: the model changed after {name} came off"


register_suite("hook technique", TECHNIQUES, [replays_the_full_step_and_comes_off_by_name])
