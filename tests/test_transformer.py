"""Step types on unmodified diffusers transformers (DiT, PixArt, SD3, Flux), tiny and random: residual-reuse partial
steps (DBCache's (F, B) split), null steps, forecast steps, CFG halves, MACs, and flexdiff's own loop on a DiT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from diffusers import (
    DiTTransformer2DModel,
    FluxTransformer2DModel,
    PixArtTransformer2DModel,
    SD3Transformer2DModel,
)

from flexdiff.backbones import layout_of
from flexdiff.hooks import RESIDUAL_HOOK_NAME, apply_partial_steps, remove_partial_steps
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import FlowSchedule, NoiseSchedule
from flexdiff.running.cost import count_macs, measure_macs
from flexdiff.running.executor import ScheduleExecutor, apply_schedule
from flexdiff.running.own_loop import generate, generate_scheduled, teacher_timesteps
from flexdiff.samplers import flow_euler
from flexdiff.schedule import (
    FORECAST,
    FULL,
    NULL,
    PARTIAL,
    Schedule,
    Step,
    deepcache_uniform,
    full,
)
from flexdiff.testing.tiny import tiny_dit_model, tiny_unet
from flexdiff.utils.diffusers_private import hook_registry


def _g(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dit() -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]:
    torch.manual_seed(0)
    m = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        num_layers=4,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
        norm_num_groups=1,
    )
    return m, torch.randn((2, 4, 8, 8), generator=_g()), {"class_labels": torch.tensor([1, 2])}


def _pixart() -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]:
    torch.manual_seed(0)
    m = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=4,
        sample_size=8,
        patch_size=2,
        cross_attention_dim=16,
        caption_channels=12,
        norm_num_groups=1,
    )
    return (
        m,
        torch.randn((2, 4, 8, 8), generator=_g()),
        {"encoder_hidden_states": torch.randn((2, 5, 12), generator=_g(2)), "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}},
    )


def _sd3() -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]:
    torch.manual_seed(0)
    m = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=4,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=12,
        caption_projection_dim=16,
        pooled_projection_dim=10,
        out_channels=4,
        pos_embed_max_size=16,
    )
    return (
        m,
        torch.randn((2, 4, 8, 8), generator=_g()),
        {"encoder_hidden_states": torch.randn((2, 5, 12), generator=_g(2)), "pooled_projections": torch.randn((2, 10), generator=_g(3))},
    )


def _flux() -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]:
    """Double-stream blocks, then single-stream ones: 2 + 3 blocks, packed latents (N, 16 tokens, 16)."""
    torch.manual_seed(0)
    m = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=3,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=12,
        pooled_projection_dim=10,
        axes_dims_rope=(2, 2, 4),
    )
    return (
        m,
        torch.randn((2, 16, 16), generator=_g()),
        {
            "encoder_hidden_states": torch.randn((2, 5, 12), generator=_g(2)),
            "pooled_projections": torch.randn((2, 10), generator=_g(3)),
            "img_ids": torch.zeros(16, 3),
            "txt_ids": torch.zeros(5, 3),
        },
    )


TRANSFORMERS: dict[str, Callable[[], tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]]] = {"dit": _dit, "pixart": _pixart, "sd3": _sd3, "flux": _flux}
NOISE = FlowSchedule(shift=3.0)


def _net(module: torch.nn.Module, kwargs: dict[str, Any]) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """The velocity at sigma ``s`` (as the pipelines call each class: Flux takes sigma, the others sigma * 1000)."""
    scale = 1.0 if isinstance(module, FluxTransformer2DModel) else 1000.0

    def call(x: torch.Tensor, s: float) -> torch.Tensor:
        out = module(x, timestep=torch.full((len(x),), s * scale), **kwargs).sample
        return out[:, : x.shape[1]] if out.dim() == 4 and out.shape[1] == 2 * x.shape[1] else out

    return call


def _run(module: torch.nn.Module, x: torch.Tensor, kwargs: dict[str, Any], plan: Schedule | None, calls: list[int] | None = None) -> torch.Tensor:
    """flow-euler over ``plan``'s active sigmas with the hooks of ``plan`` on (None: the plain model)."""
    net = _net(module, kwargs)
    sigmas = plan.active_timesteps if plan is not None else NOISE.sigmas(6)
    if plan is None:
        with torch.no_grad():
            return flow_euler(lambda xt, s, i: net(xt, s), x, sigmas, NOISE)
    layout, state = apply_partial_steps(module)
    try:
        run = ScheduleExecutor(None, plan, layout, state)
        run.new_run()

        def denoise(xt: torch.Tensor, s: float, i: int) -> torch.Tensor:
            run.set_step(plan.active_indices[i])
            if calls is not None:
                calls.append(i)
            return net(xt, s)

        with torch.no_grad():
            return flow_euler(denoise, x, sigmas, NOISE)
    finally:
        state.reset()
        remove_partial_steps(module)


@pytest.fixture(params=list(TRANSFORMERS))
def transformer(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]:
    module, x, kwargs = TRANSFORMERS[request.param]()
    return module.eval().requires_grad_(False), x, kwargs


def test_all_full_is_bit_identical_partial_changes_and_removal_restores(transformer) -> None:
    module, x, kwargs = transformer
    grid = NOISE.sigmas(6)
    plain = _run(module, x, kwargs, None)
    assert torch.equal(_run(module, x, kwargs, full(grid, "flow-euler")), plain)
    for branch in range(layout_of(module).num_branches):
        assert not torch.equal(_run(module, x, kwargs, deepcache_uniform(grid, 3, branch, "flow-euler")), plain)
    assert torch.equal(_run(module, x, kwargs, None), plain)
    assert all(hook_registry(u) is None or hook_registry(u).get_hook(RESIDUAL_HOOK_NAME) is None for _, u in layout_of(module).units)


def test_null_steps_make_no_call_and_partial_steps_skip_the_middle_blocks(transformer) -> None:
    module, x, kwargs = transformer
    grid = NOISE.sigmas(6)
    layout = layout_of(module)
    branch = layout.branches[-1]  # the most blocks computed
    plan = Schedule((Step(FULL), Step(NULL), Step(PARTIAL, branch.index), Step(NULL), Step(FULL), Step(PARTIAL, 0)), tuple(grid), "flow-euler")
    computed = {k: 0 for k in range(len(layout.units))}  # a block's first submodule runs only when the block computes
    handles = [
        next(unit.children()).register_forward_pre_hook(lambda *a, k=k: computed.__setitem__(k, computed[k] + 1)) for k, (_, unit) in enumerate(layout.units)
    ]
    calls: list[int] = []
    try:
        _run(module, x, kwargs, plan, calls)
    finally:
        for h in handles:
            h.remove()
    assert calls == [0, 1, 2, 3]  # 4 active steps of 6: the null steps made no call
    # 2 full steps compute every block; each partial step only the blocks outside its branch's middle
    assert computed == {k: 2 + (k not in branch.deep) + (k not in layout.branches[0].deep) for k in computed}


def test_partial_macs_are_below_a_full_step_and_grow_with_f_plus_b(transformer) -> None:
    module, x, kwargs = transformer
    net = _net(module, kwargs)
    layout, state = apply_partial_steps(module)
    try:
        with torch.no_grad():
            state.enter_full(range(0))
            full_macs = count_macs(lambda: net(x, 0.5))
            partial = {}
            for branch in layout.branches:
                state.enter_full(branch.deep)
                net(x, 0.5)
                state.enter_partial(branch)
                partial[(branch.front, branch.back)] = count_macs(lambda: net(x, 0.5))
    finally:
        remove_partial_steps(module)
    assert all(m < full_macs for m in partial.values())
    by_depth: dict[int, set[int]] = {}
    for (f, b), m in partial.items():
        by_depth.setdefault(f + b, set()).add(m)
    costs = [max(ms) for _, ms in sorted(by_depth.items())]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)  # strictly growing with F + B


def test_a_forecast_from_two_equal_full_steps_is_a_replay(transformer) -> None:
    """TaylorSeer's first order from two full steps that recorded the same features adds nothing: a replay. Before
    the second full step a forecast step replays; with different full steps it extrapolates (and differs)."""
    module, x, kwargs = transformer
    net = _net(module, kwargs)
    layout, state = apply_partial_steps(module)
    branch = layout.branches[0]
    try:
        with torch.no_grad():
            state.enter_full(branch.deep)
            net(x, 0.5)
            state.enter_partial(branch)
            one_full = net(x + 0.1, 0.4)
            state.enter_partial(branch, forecast=torch.tensor(1.0))  # no previous full step yet: a replay
            assert torch.equal(net(x + 0.1, 0.4), one_full)
            state.enter_full(branch.deep)
            net(x, 0.5)  # the same features again
            state.enter_partial(branch)
            replay = net(x + 0.1, 0.4)
            state.enter_partial(branch, forecast=torch.tensor(0.5))
            torch.testing.assert_close(net(x + 0.1, 0.4), replay, rtol=0, atol=1e-6)
            state.enter_full(branch.deep)
            net(x + 0.2, 0.3)  # now the two full steps differ
            state.enter_partial(branch)
            replay = net(x + 0.1, 0.25)
            state.enter_partial(branch, forecast=torch.tensor(0.5))
            assert not torch.allclose(net(x + 0.1, 0.25), replay)
    finally:
        remove_partial_steps(module)


@pytest.mark.parametrize("name", ["pixart", "sd3", "flux"])
def test_cfg_as_one_batched_call_keeps_both_halves_in_the_cache(name: str) -> None:
    """Unconditional and conditional halves in one call of batch 2N: a partial step on the full step's input gives
    both halves back (the cache holds 2N rows), and each half differs from what the other half's cache would give."""
    module, x, kwargs = TRANSFORMERS[name]()
    module.eval().requires_grad_(False)
    net = _net(module, kwargs)  # row 0 = "uncond", row 1 = "cond": different encoder states per row
    layout, state = apply_partial_steps(module)
    try:
        with torch.no_grad():
            for branch in layout.branches:
                state.enter_full(branch.deep)
                reference = net(x, 0.5)
                cached = state.cache[("out", branch.deep[-1])]
                rows = (cached[0] if isinstance(cached, tuple) and cached[0] is not None else cached if not isinstance(cached, tuple) else cached[1]).shape[0]
                assert rows == 2
                state.enter_partial(branch)
                torch.testing.assert_close(net(x, 0.5), reference, rtol=1e-5, atol=1e-5)
    finally:
        remove_partial_steps(module)
    assert not torch.allclose(reference[0], reference[1])


# --- flexdiff's own loop on transformer models (also the backbone contract's tiny models: tests/test_backbones.py) ---


def test_dit_in_flexdiffs_loop_null_steps_and_partial_steps() -> None:
    model = tiny_dit_model()
    grid = teacher_timesteps(model, "flow-euler", 8)
    noise = model.initial_noise(4, 0)
    plain = generate(model, noise, grid, "flow-euler").clamp(-1, 1)
    assert torch.equal(generate_scheduled(model, full(grid, "flow-euler"), noise), plain)
    calls = []
    handle = model.denoiser.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        plan = Schedule(
            (Step(FULL), Step(NULL), Step(PARTIAL, 0), Step(FORECAST, 0), Step(FULL), Step(NULL), Step(FORECAST, 2), Step(PARTIAL, 1)),
            tuple(grid),
            "flow-euler",
        )
        out = generate_scheduled(model, plan, noise)
    finally:
        handle.remove()
    assert len(calls) == 6 and out.shape == plain.shape and torch.isfinite(out).all()
    costs = measure_macs(model)
    assert costs.schedule(plan) < costs.full * 6


def test_forecast_on_a_unet_from_equal_full_steps_is_a_replay() -> None:
    """The forecast kind on DeepCache's output replay: full steps on the same input make it a replay exactly."""
    unet = tiny_unet().eval().requires_grad_(False)
    model = DiffusionModel(unet, NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 8, 8), "tiny")
    x = model.initial_noise(2, 0)
    plan = Schedule((Step(FULL), Step(FULL), Step(PARTIAL, 0), Step(FORECAST, 0)), (900, 800, 700, 600), "ddim")
    with apply_schedule(model, plan) as run:
        run.start()
        for i in (0, 1):
            run.set_step(i)
            model.eps(x, 900)
        run.set_step(2)
        replay = model.eps(x + 0.1, 700)
        run.set_step(3)
        torch.testing.assert_close(model.eps(x + 0.1, 700), replay, rtol=0, atol=1e-6)


def test_builtin_dit_teacher_loads_as_a_flow_model() -> None:
    from flexdiff.models import load_model

    model = load_model("builtin:digits-dit", device="cpu")
    assert model.noise.kind == "flow" and model.backbone.name == "transformer" and model.layout.num_branches == 21
    assert model.conditioning is not None and model.conditioning.labels.tolist() == list(range(10))
    x = model.initial_noise(2, 0)
    assert model.eps(x, 0.5).shape == x.shape


def test_segments_at_branches_whose_middles_do_not_nest_all_find_their_cache() -> None:
    """F1B2 reuses blocks 1..3 of 6, F3B0 blocks 3..5: every full step records what both need."""
    model = tiny_dit_model()
    layout = model.layout
    a, b = (next(x for x in layout.branches if (x.front, x.back) == fb) for fb in ((1, 1), (2, 0)))
    assert not (set(a.deep) <= set(b.deep) or set(b.deep) <= set(a.deep))
    grid = teacher_timesteps(model, "flow-euler", 6)
    plan = Schedule((Step(FULL), Step(PARTIAL, a.index), Step(FULL), Step(PARTIAL, b.index), Step(FULL), Step(FORECAST, a.index)), tuple(grid), "flow-euler")
    out = generate_scheduled(model, plan, model.initial_noise(2, 0))
    assert torch.isfinite(out).all()
