"""The step-kind contract: every registered kind parses and prints, costs what its properties say, runs on every
backbone's tiny models with the network calls its properties say (and computes the model itself where it reuses
nothing), leaves the model as it was, and is counted and drawn by the report."""

from __future__ import annotations

import torch

from flexdiff.backbones import BACKBONES
from flexdiff.errors import FlexdiffError
from flexdiff.models import DiffusionModel
from flexdiff.report.plots import strip_colours
from flexdiff.running.cost import measure_macs
from flexdiff.running.own_loop import generate, generate_scheduled, teacher_timesteps
from flexdiff.samplers import sampler_names
from flexdiff.schedule import FULL, STEP_KINDS, Schedule, Step, count_steps
from flexdiff.testing._suites import fixture, register_suite


def _step(name: str) -> Step:
    return Step(name, 0 if STEP_KINDS.get(name).takes_branch else None)


def parses_and_prints(name: str) -> None:
    step = _step(name)
    assert Step.parse(str(step)) == step and step.valid(), f"{step} does not round-trip"
    wrong = name if step.branch is not None else f"{name}:0"  # a branch where the kind takes none, or none where it does
    try:
        Step.parse(wrong)
    except FlexdiffError:
        return
    raise AssertionError(f"{wrong!r} parsed without a one-line error")


def costs_what_its_properties_say(name: str) -> None:
    from flexdiff.testing.tiny import tiny_plain_model

    model = tiny_plain_model()
    costs = measure_macs(model)
    kind, step = STEP_KINDS.get(name), _step(name)
    expected = 0 if not kind.calls_network else costs.partial[0] if kind.replays else costs.full
    ts = teacher_timesteps(model, "ddim", 2)
    got = costs.schedule(Schedule((Step(FULL), step), tuple(ts), "ddim")) - costs.full
    assert got == expected, f"{step} costs {got} MACs, its properties say {expected}"


def runs_on_every_backbone_as_its_properties_say(name: str) -> None:
    kind, step = STEP_KINDS.get(name), _step(name)
    for backbone in BACKBONES.names():
        for factory in fixture("backbone", backbone):
            model = factory()
            sampler = sampler_names(model.noise.kind)[0]
            ts = teacher_timesteps(model, sampler, 6)
            plan = Schedule((Step(FULL), step, step, Step(FULL), step, step), tuple(ts), sampler)
            noise = model.initial_noise(2, 0)
            plain = generate(model, noise, ts, sampler)
            teacher = Schedule((Step(FULL),) * 6, tuple(ts), sampler)
            (reference, full_calls), (out, calls) = (_counted(model, p, noise) for p in (teacher, plan))
            per_step = full_calls // 6  # 2 where guidance calls the network once per half
            assert calls == per_step * len(plan.active_indices) == per_step * (2 + 4 * kind.calls_network), (
                f"{model.name}: {calls} network calls for {plan.counts()}"
            )
            assert torch.isfinite(out).all() and torch.equal(out, generate_scheduled(model, plan, noise)), f"{model.name}: {step} is not finite and repeatable"
            if kind.calls_network and not kind.takes_branch:  # it computes every unit: the model's own trajectory
                assert torch.equal(out, reference), f"{model.name}: {step} computes everything but is not the model"
            assert torch.equal(generate(model, noise, ts, sampler), plain), f"{model.name}: the model changed after a schedule with {step}"


def _counted(model: DiffusionModel, plan: Schedule, noise: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``plan``'s images from ``noise`` and the number of network calls they took."""
    calls: list[int] = []
    handle = model.denoiser.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        return generate_scheduled(model, plan, noise), len(calls)
    finally:
        handle.remove()


def counted_and_drawn(name: str) -> None:
    step = str(_step(name))
    assert count_steps([step, step]).get(name) == 2, f"{name} is not counted"
    indices, legend = strip_colours([["full", step]], 2)
    assert len({indices[0][0], indices[0][1]}) == (1 if _step(name) == Step(FULL) else 2), f"{name} is drawn as another kind: {legend}"


register_suite("step kind", STEP_KINDS, [parses_and_prints, costs_what_its_properties_say, runs_on_every_backbone_as_its_properties_say, counted_and_drawn])
