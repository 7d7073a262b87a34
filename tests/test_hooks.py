"""Partial and null steps on unmodified diffusers UNets (UNet2DModel and UNet2DConditionModel with CFG)."""

from __future__ import annotations

import pytest
import torch

from flexdiff.backbones import unet_layout
from flexdiff.either_loop import sample
from flexdiff.errors import FlexdiffError
from flexdiff.hooks import HOOK_NAME, apply_partial_steps, remove_partial_steps
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule, initial_noise
from flexdiff.running.cost import count_macs, measure_macs
from flexdiff.running.executor import apply_schedule
from flexdiff.running.own_loop import generate, teacher_timesteps
from flexdiff.samplers import sampler_names
from flexdiff.schedule import (
    FULL,
    NULL,
    PARTIAL,
    Schedule,
    Step,
    ddim_k,
    deepcache_uniform,
    full,
)
from flexdiff.testing.tiny import tiny_conditional_model, tiny_plain_model, tiny_unet
from flexdiff.utils.diffusers_private import hook_registry

MODELS = {"unet2d": tiny_plain_model, "unet2d-condition-cfg": tiny_conditional_model}
SAMPLERS = sampler_names("alpha_bar")  # every registered sampler of the UNets' noise kind (flow samplers: tests/test_transformer.py)
T = 8


@pytest.fixture(scope="module", params=list(MODELS))
def model(request: pytest.FixtureRequest) -> DiffusionModel:
    return MODELS[request.param]()


def _step_type_schedules(ts: list[int], sampler: str, num_branches: int) -> dict[str, Schedule]:
    return {
        "null": ddim_k(ts, 3, sampler),
        "partial-shallow": deepcache_uniform(ts, 2, 0, sampler),
        "partial-deep": deepcache_uniform(ts, 3, num_branches - 1, sampler),
    }


def _run(model: DiffusionModel, ts: list[int], sampler: str, plan: Schedule | None = None) -> torch.Tensor:
    noise = initial_noise(3, model.sample_shape, seed=5)
    if plan is None:
        return generate(model, noise, ts, sampler)
    with apply_schedule(model, plan) as run:
        return generate(model, noise, plan.active_timesteps, plan.sampler, denoise=run.start)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_all_full_schedule_is_bit_identical_and_removal_restores(model: DiffusionModel, sampler: str) -> None:
    ts = teacher_timesteps(model, sampler, T)
    plain = _run(model, ts, sampler)
    assert torch.equal(_run(model, ts, sampler, full(ts, sampler)), plain)
    for plan in _step_type_schedules(ts, sampler, unet_layout(model.denoiser).num_branches).values():
        assert not torch.equal(_run(model, ts, sampler, plan), plain)  # the schedule really changed something
        assert torch.equal(_run(model, ts, sampler), plain)  # ... and leaving `with` restored the model exactly
    assert all(hook_registry(m) is None or hook_registry(m).get_hook(HOOK_NAME) is None for _, m in unet_layout(model.denoiser).units)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("kind", ["null", "partial-shallow", "partial-deep"])
def test_network_calls_and_deep_units(model: DiffusionModel, sampler: str, kind: str) -> None:
    """Null steps make no network call; partial steps never enter the deep units; results are deterministic."""
    ts = teacher_timesteps(model, sampler, T)
    layout = unet_layout(model.denoiser)
    plan = _step_type_schedules(ts, sampler, layout.num_branches)[kind]
    calls = {"unet": 0, "mid": 0}
    handles = [
        model.denoiser.register_forward_pre_hook(lambda *a: calls.__setitem__("unet", calls["unet"] + 1)),
        model.denoiser.mid_block.resnets[0].register_forward_pre_hook(lambda *a: calls.__setitem__("mid", calls["mid"] + 1)),
    ]
    try:
        first = _run(model, ts, sampler, plan)
    finally:
        for h in handles:
            h.remove()
    counts = plan.counts()
    assert calls["unet"] == counts[FULL] + counts[PARTIAL]  # one UNet call per active step, none for null steps
    assert calls["mid"] == counts[FULL]  # the mid block is deep for every branch: it runs in full steps only
    assert torch.equal(first, _run(model, ts, sampler, plan))


def test_partial_step_on_the_full_step_input_reproduces_it(model: DiffusionModel) -> None:
    """Same x_t and t as the full step that filled the cache: every branch gives the full step's output exactly."""
    x = initial_noise(2, model.sample_shape, seed=9)
    layout = unet_layout(model.denoiser)
    steps = (Step(FULL),) + tuple(Step(PARTIAL, b) for b in range(layout.num_branches))
    plan = Schedule(steps, tuple(range(900, 900 - 10 * len(steps), -10)), "ddim")
    with apply_schedule(model, plan) as run:
        run.start()
        reference = run.denoise(x, 500, 0)
        for i in range(1, len(steps)):
            assert torch.equal(run.denoise(x, 500, i), reference)
            other = run.denoise(x + 0.5, 400, i)
            assert not torch.equal(other, reference)


def test_partial_macs_below_full_and_growing_with_branch(model: DiffusionModel) -> None:
    costs = measure_macs(model)
    assert len(costs.partial) == unet_layout(model.denoiser).num_branches >= 4
    assert all(a < b for a, b in zip(costs.partial, costs.partial[1:]))
    assert costs.partial[-1] < costs.full


def test_attention_is_counted(model: DiffusionModel) -> None:
    """FlopCounterMode alone misses the CPU fused attention op; our formula adds it."""
    from torch.utils.flop_counter import FlopCounterMode

    x = initial_noise(1, model.sample_shape, seed=0)
    with FlopCounterMode(display=False) as plain:
        model.eps(x, 10)
    assert count_macs(lambda: model.eps(x, 10)) > plain.get_total_flops() // 2


def test_branch_out_of_range_and_double_apply_are_errors(model: DiffusionModel) -> None:
    ts = teacher_timesteps(model, "ddim", T)
    n = unet_layout(model.denoiser).num_branches
    with pytest.raises(FlexdiffError, match=f"branch in \\[0, {n - 1}\\]"):
        with apply_schedule(model, deepcache_uniform(ts, 2, n)):
            pass
    apply_partial_steps(model.denoiser)
    try:
        with pytest.raises(FlexdiffError, match="without flexdiff hooks"):
            apply_partial_steps(model.denoiser)
    finally:
        remove_partial_steps(model.denoiser)


def test_sample_api_with_schedule_on_a_saved_model(tiny_model) -> None:
    ts = teacher_timesteps(tiny_model, "ddim", 10)
    plain = sample(tiny_model, 4, steps=10)
    assert torch.equal(sample(tiny_model, 4, schedule=full(ts)), plain)
    assert torch.equal(sample(tiny_model, 4, schedule=ddim_k(ts, 10)), plain)  # k = T: nothing dropped
    five = sample(tiny_model, 4, schedule=ddim_k(ts, 5))
    assert torch.allclose(five, generate(tiny_model, initial_noise(4, (1, 8, 8), 0), ts[::2], "ddim"), atol=1e-6)
    assert Step(NULL) in ddim_k(ts, 5).steps


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_hollow_replay_is_bit_identical_to_replaying_real_tensors(model: DiffusionModel, sampler: str) -> None:
    """Zero-channel views only ever reach deep units, so the outputs equal replaying the cached tensors everywhere."""
    ts = teacher_timesteps(model, sampler, T)
    layout = unet_layout(model.denoiser)
    assert layout.branches[0].hollow and max(layout.branches[0].hollow) == layout.branches[0].consumer - 2
    for branch in layout.branches:
        assert branch.hollow <= set(branch.deep)
        plan = deepcache_uniform(ts, 3, branch.index, sampler)
        outputs = []
        for hollow in (True, False):
            noise = initial_noise(3, model.sample_shape, seed=5)
            with apply_schedule(model, plan) as run:
                run.hollow = hollow
                outputs.append(generate(model, noise, plan.active_timesteps, plan.sampler, denoise=run.start))
        assert torch.equal(outputs[0], outputs[1]), branch.label


def test_stochastic_images_do_not_depend_on_the_batch_size() -> None:
    """eta > 0: image i's extra noise is drawn for all images and sliced, so batching cannot change it (it was drawn
    per batch, and images moved by up to 2 in [-1, 1] between batch sizes)."""
    from flexdiff.running.own_loop import generate_scheduled

    model = tiny_plain_model()
    plan = deepcache_uniform(teacher_timesteps(model, "ddim", T), 3, 1)
    noise = initial_noise(4, model.sample_shape, seed=2)
    runs = [generate_scheduled(model, plan, noise, eta=0.5, seed=9, batch_size=b) for b in (4, 3, 1)]
    assert all(torch.allclose(runs[0], r, atol=1e-4) for r in runs[1:])
    assert not torch.allclose(runs[0], generate_scheduled(model, plan, noise, eta=0.5, seed=10), atol=1e-2)  # the seed still matters


def test_freeu_is_refused_for_partial_steps() -> None:
    """FreeU rescales up-block features in place between hooked units: it would rewrite cached features."""
    model = tiny_conditional_model()
    model.denoiser.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)
    with pytest.raises(FlexdiffError, match="disable_freeu"):
        apply_partial_steps(model.denoiser)
    model.denoiser.disable_freeu()
    layout, _ = apply_partial_steps(model.denoiser)
    remove_partial_steps(model.denoiser)
    assert layout.num_branches > 0


def test_costs_are_measured_on_a_model_with_few_training_timesteps() -> None:
    """The cost probe's timestep lies inside the model's range (a v-prediction model on 400 steps had no t = 500)."""
    config = {**DEFAULT_SCHEDULER_CONFIG, "num_train_timesteps": 400, "prediction_type": "v_prediction"}
    model = DiffusionModel(tiny_unet(), NoiseSchedule.from_scheduler_config(config), (1, 8, 8), "tiny-400")
    assert measure_macs(model).full == measure_macs(tiny_plain_model()).full
