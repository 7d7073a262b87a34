"""``flexdiff.enable`` over the transformer families people accelerate (tiny pipelines: :mod:`pipelines`).

For every case: the all-full schedule through ``enable`` is ``torch.equal`` to the plain call; a caching schedule (the
(F, B) residual partial step) changes the output and computes fewer linear layers; null steps drop network calls
where the scheduler takes custom timesteps, and are a one-line refusal naming the scheduler where it does not;
``disable`` restores the plain call bit for bit. A pipeline with several denoisers (Wan 2.2's two experts) gets each
hooked, with its own cache.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import diffusers
import pytest
import torch
from pipelines import CASES, IMG2IMG, STEPS, Case, _randn

import flexdiff
from flexdiff.integrations.diffusers_pipeline import denoisers_of, is_flow_scheduler, merge_repeats, scheduler_grid
from flexdiff.schedule import Schedule, Step


@contextmanager
def counting_linears() -> Iterator[list[int]]:
    """The number of ``nn.Linear`` calls inside the block: what a cached block does not compute."""
    calls = [0]

    def count(module: torch.nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, torch.nn.Linear):
            calls[0] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        yield calls
    finally:
        handle.remove()


def plain_run(case: Case) -> tuple[torch.Tensor, list[float], list[str]]:
    """The plain call's output, the grid its scheduler set (the pipeline's own clock: its sigmas, mu, timesteps) and
    which denoiser ran each loop step."""
    scheduler, grids, owners, current = case.pipe.scheduler, [], [], []
    original_set, original_step = scheduler.set_timesteps, scheduler.step

    @functools.wraps(original_set)
    def set_timesteps(*args: Any, **kwargs: Any) -> Any:
        out = original_set(*args, **kwargs)
        grids.append(merge_repeats(scheduler_grid(scheduler)))
        return out

    @functools.wraps(original_step)
    def step(*args: Any, **kwargs: Any) -> Any:
        owners.append(current[-1])
        return original_step(*args, **kwargs)

    handles = [m.register_forward_pre_hook(lambda _m, _a, attr=attr: current.append(attr)) for attr, m in denoisers_of(case.pipe)]
    scheduler.set_timesteps, scheduler.step = set_timesteps, step
    try:
        out = case()
    finally:
        del scheduler.set_timesteps, scheduler.step
        for h in handles:
            h.remove()
    return out, grids[0], owners


def denoiser_calls(case: Case) -> tuple[torch.Tensor, int]:
    """The call's output and how many times its denoisers ran."""
    calls: list[int] = []
    handles = [m.register_forward_pre_hook(lambda *a: calls.append(1)) for _, m in denoisers_of(case.pipe)]
    try:
        return case(), len(calls)
    finally:
        for h in handles:
            h.remove()


def caching_schedule(grid: list[float], owners: list[str], sampler: str, kind: str = "partial:1") -> Schedule:
    """Full, then the cheapest-but-one partial step (or ``kind``), alternating; full wherever a denoiser takes over."""
    kinds = ["full" if i % 2 == 0 or owners[i] != owners[i - 1] else kind for i in range(len(grid))]
    return Schedule(tuple(Step.parse(k) for k in kinds), tuple(grid), sampler)


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    built = CASES[request.param]()
    built.pipe.set_progress_bar_config(disable=True)
    return built


@pytest.mark.slow
def test_enable_covers_the_family(case: Case) -> None:
    pipe = case.pipe
    plain, grid, owners = plain_run(case)
    sampler = "flow-euler" if is_flow_scheduler(pipe.scheduler) else "ddim"
    with counting_linears() as full_calls, flexdiff.enabled(pipe, flexdiff.full(grid, sampler)):
        assert torch.equal(case(), plain)
    with counting_linears() as cached_calls, flexdiff.enabled(pipe, caching_schedule(grid, owners, sampler)):
        cached = case()
    assert not torch.equal(cached, plain) and torch.isfinite(cached).all()
    assert cached_calls[0] < full_calls[0]
    with flexdiff.enabled(pipe, caching_schedule(grid, owners, sampler, "forecast:1")):  # TaylorSeer's first order on the cache
        forecast = case()
    assert torch.isfinite(forecast).all() and not torch.equal(forecast, plain) and not torch.equal(forecast, cached)
    nulls = Schedule(tuple(Step.parse("full" if i % 2 == 0 or owners[i] != owners[i - 1] else "null") for i in range(len(grid))), tuple(grid), sampler)
    try:
        with flexdiff.enabled(pipe, nulls):
            out, null_calls = denoiser_calls(case)
        assert out.shape == plain.shape and torch.isfinite(out).all()
        assert 0 < null_calls < denoiser_calls(case)[1]
    except flexdiff.FlexdiffError as err:  # a scheduler that takes no custom timesteps: one line naming it
        assert type(pipe.scheduler).__name__ in str(err) and "\n" not in str(err)
    assert torch.equal(case(), plain)


def test_calls_named_by_diffusers_cache_context_keep_their_own_cache() -> None:
    """A pipeline that names its calls with ``transformer.cache_context("cond")`` / ``("uncond")`` gets a cache per
    name: the same loop with the two calls swapped in odd steps gives the same latents under a caching schedule (keyed
    by call position, a partial step would replay the other call's features), and it is the unswapped run's."""
    case = CASES["wan"]()
    pipe, tr = case.pipe, case.pipe.transformer
    grid = flexdiff.pipeline_timesteps(pipe, STEPS)
    prompts = {"cond": _randn(1, 8, 32, seed=1), "uncond": _randn(1, 8, 32, seed=2)}

    def loop(swap: bool) -> torch.Tensor:
        latents = _randn(1, 16, 2, 4, 4, seed=3)
        pipe.scheduler.set_timesteps(STEPS)
        for i, t in enumerate(pipe.scheduler.timesteps):
            pred = {}
            for name in ("uncond", "cond") if swap and i % 2 else ("cond", "uncond"):
                with tr.cache_context(name):
                    pred[name] = tr(latents, t.expand(1), prompts[name], return_dict=False)[0]
            latents = pipe.scheduler.step(pred["uncond"] + 5.0 * (pred["cond"] - pred["uncond"]), t, latents).prev_sample
        return latents

    with torch.no_grad(), flexdiff.enabled(pipe, caching_schedule(grid, ["transformer"] * STEPS, "flow-euler")):
        straight, swapped = loop(False), loop(True)
        assert not pipe._flexdiff_enabled.parts[0].context  # cleared when each context ends
    with torch.no_grad():
        plain = loop(False)
    assert torch.equal(swapped, straight) and not torch.equal(straight, plain)


def test_each_denoiser_of_a_two_expert_pipeline_is_hooked_with_its_own_cache() -> None:
    """Wan 2.2: both experts carry the hooks; a partial step where the second expert takes over is a one-line refusal
    (its cache holds nothing of this run), and disable cleans both."""
    case = CASES["wan2.2"]()
    case.pipe.set_progress_bar_config(disable=True)
    plain, grid, owners = plain_run(case)
    assert set(owners) == {"transformer", "transformer_2"}
    with flexdiff.enabled(case.pipe, caching_schedule(grid, owners, "flow-euler")):
        assert all(block._diffusers_hook.hooks for _, module in denoisers_of(case.pipe) for block in module.blocks)
        assert not torch.equal(case(), plain)
    boundary = owners.index("transformer_2")
    kinds = ["full" if i == 0 else "partial:1" for i in range(len(grid))]
    with (
        flexdiff.enabled(case.pipe, Schedule(tuple(Step.parse(k) for k in kinds), tuple(grid), "flow-euler")),
        pytest.raises(flexdiff.FlexdiffError, match="transformer_2 takes over") as err,
    ):
        case()
    assert f"step {boundary}" in str(err.value) and "\n" not in str(err.value)
    for _, module in denoisers_of(case.pipe):
        assert all(not block._diffusers_hook.hooks for block in module.blocks)
    assert torch.equal(case(), plain)


@pytest.mark.parametrize("how", ["torch.compile(transformer)", "transformer.compile()"])
def test_a_compiled_transformer_under_enable(how: str) -> None:
    """``pipe.transformer = torch.compile(pipe.transformer)`` is accepted as the same wrapper on a UNet is (the
    blocks are found under ``_orig_mod``); compiled output equals eager output (dynamo's eager backend)."""
    import torch._dynamo

    case = CASES["wan"]()
    case.pipe.set_progress_bar_config(disable=True)
    plain, grid, owners = plain_run(case)
    plan = caching_schedule(grid, owners, "flow-euler")
    with flexdiff.enabled(case.pipe, plan):
        eager = case()
    torch._dynamo.reset()
    try:
        if how == "transformer.compile()":
            case.pipe.transformer.compile(backend="eager")
        else:
            case.pipe.transformer = torch.compile(case.pipe.transformer, backend="eager")
        with flexdiff.enabled(case.pipe, plan):
            torch.testing.assert_close(case(), eager, rtol=0, atol=0)
    finally:
        torch._dynamo.reset()


def test_another_cache_on_the_denoiser_is_refused_in_one_line() -> None:
    """diffusers' own cache (``enable_cache``) or cache-dit's already on the denoiser: two caches would each skip work
    the other assumes was done. One line naming it; nothing attached."""
    from diffusers import FirstBlockCacheConfig

    case = CASES["wan"]()
    case.pipe.set_progress_bar_config(disable=True)
    grid = plain_run(case)[1]
    case.pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.2))
    with pytest.raises(flexdiff.FlexdiffError, match="FirstBlockCacheConfig active") as err:
        flexdiff.enable(case.pipe, flexdiff.full(grid, "flow-euler"))
    assert "\n" not in str(err.value) and not hasattr(case.pipe, "_flexdiff_enabled")
    case.pipe.transformer.disable_cache()
    cache_dit = pytest.importorskip("cache_dit")
    cache_dit.enable_cache(case.pipe)
    try:
        with pytest.raises(flexdiff.FlexdiffError, match="cache-dit active"):
            flexdiff.enable(case.pipe, flexdiff.full(grid, "flow-euler"))
    finally:
        cache_dit.disable_cache(case.pipe)
    with flexdiff.enabled(case.pipe, flexdiff.full(grid, "flow-euler")):  # both off again: accepted
        case()


def test_a_unet_whose_blocks_are_not_diffusers_per_layer_ones_is_refused_at_enable() -> None:
    """Kandinsky 3's UNet (resnets_in / resnets_out, one skip per block) crashed with an AttributeError at enable; now a
    one-line refusal naming the block classes, and nothing attached."""
    import diffusers

    torch.manual_seed(0)
    unet = diffusers.Kandinsky3UNet(
        in_channels=4,
        time_embedding_dim=4,
        groups=2,
        attention_head_dim=4,
        layers_per_block=3,
        block_out_channels=(32, 64),
        cross_attention_dim=4,
        encoder_hid_dim=32,
    ).eval()
    pipe = diffusers.Kandinsky3Pipeline(tokenizer=None, text_encoder=None, unet=unet, scheduler=diffusers.DDPMScheduler(), movq=None)
    with pytest.raises(flexdiff.FlexdiffError, match="Kandinsky3DownSampleBlock") as err:
        flexdiff.enable(pipe, flexdiff.full(flexdiff.pipeline_timesteps(pipe, STEPS)))
    assert "\n" not in str(err.value) and not hasattr(pipe, "_flexdiff_enabled")
    assert not any(getattr(m, "_diffusers_hook", None) and m._diffusers_hook.hooks for m in unet.modules())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wan", "qwen-image"])
def test_residual_partial_steps_equal_cache_dits_dbcache_with_the_same_static_mask(name: str) -> None:
    """flexdiff's (F, B) partial step is cache-dit's DBCache with Fn = F, Bn = B and a static step mask (steps marked
    0 reuse the middle blocks' residual of the latest computed step), run from cache-dit's own code on the same pipeline
    and noise: equal to 1e-6 (measured: equal bit for bit)."""
    cache_dit = pytest.importorskip("cache_dit")
    from flexdiff.backbones import layout_of

    case = CASES[name]()
    case.pipe.set_progress_bar_config(disable=True)
    plain, grid, _ = plain_run(case)
    mask = [1, 0, 1, 0, 0, 1]
    labels = layout_of(case.pipe.transformer).labels
    for front, back in [(1, 0), (1, 1), (2, 0)]:
        config = cache_dit.DBCacheConfig(
            Fn_compute_blocks=front,
            Bn_compute_blocks=back,
            steps_computation_mask=mask,
            steps_computation_policy="static",
            max_warmup_steps=1,
            num_inference_steps=STEPS,
        )
        cache_dit.enable_cache(case.pipe, cache_config=config)
        try:
            theirs = case()
        finally:
            cache_dit.disable_cache(case.pipe)
        branch = labels.index(f"F{front}B{back}")
        plan = Schedule(tuple(Step.parse("full" if m else f"partial:{branch}") for m in mask), tuple(grid), "flow-euler")
        with flexdiff.enabled(case.pipe, plan):
            ours = case()
        assert not torch.equal(ours, plain)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(IMG2IMG))
def test_image_to_image_starts_where_the_plain_pipeline_starts(name: str) -> None:
    """The strength starts the loop part-way (the scheduler's begin index): all-full is the plain call; a schedule full
    where the loop starts and partial after changes it; one partial where it starts is a one-line refusal."""
    case = IMG2IMG[name]()
    case.pipe.set_progress_bar_config(disable=True)
    plain, grid, owners = plain_run(case)
    start = len(grid) - len(owners)  # the steps the strength skips
    assert 0 < start < len(grid)
    with flexdiff.enabled(case.pipe, flexdiff.full(grid, "flow-euler")):
        assert torch.equal(case(), plain)
    kinds = ["full" if i <= start or (i - start) % 2 == 0 else "partial:1" for i in range(len(grid))]
    with flexdiff.enabled(case.pipe, Schedule(tuple(Step.parse(k) for k in kinds), tuple(grid), "flow-euler")):
        assert not torch.equal(case(), plain)
    kinds[start] = "partial:1"
    with (
        flexdiff.enabled(case.pipe, Schedule(tuple(Step.parse(k) for k in kinds), tuple(grid), "flow-euler")),
        pytest.raises(flexdiff.FlexdiffError, match="where the pipeline's loop starts") as err,
    ):
        case()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["wan", "sd"])
def test_half_precision_all_full_is_the_plain_call(name: str) -> None:
    """bfloat16 weights: the all-full schedule is the plain bf16 call bit for bit, a caching one runs and changes it."""
    case = CASES[name]()
    case.pipe.set_progress_bar_config(disable=True)
    case.pipe.to(torch.bfloat16)
    case.kwargs = {k: v.to(torch.bfloat16) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in case.kwargs.items()}
    plain, grid, owners = plain_run(case)
    sampler = "flow-euler" if is_flow_scheduler(case.pipe.scheduler) else "ddim"
    with flexdiff.enabled(case.pipe, flexdiff.full(grid, sampler)):
        assert torch.equal(case(), plain)
    with flexdiff.enabled(case.pipe, caching_schedule(grid, owners, sampler)):
        cached = case()
    assert cached.dtype == plain.dtype and not torch.equal(cached, plain) and torch.isfinite(cached.float()).all()


def test_a_lora_and_cpu_offload_under_enable(tmp_path) -> None:
    """A LoRA loaded with ``load_lora_weights`` (peft layers inside the blocks) and accelerate's model CPU offload
    (hooks on each component): all-full is the plain call bit for bit, a caching schedule changes it, disable restores."""
    pytest.importorskip("peft")
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    donor = CASES["flux"]().pipe
    donor.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    diffusers.FluxPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(donor.transformer), safe_serialization=True)
    case = CASES["flux"]()
    case.pipe.set_progress_bar_config(disable=True)
    base = case()
    case.pipe.load_lora_weights(tmp_path, weight_name="pytorch_lora_weights.safetensors")
    for offload in (False, True):
        if offload:
            case.pipe.enable_model_cpu_offload(device="cpu")
        plain, grid, owners = plain_run(case)
        assert not torch.equal(plain, base)  # the LoRA acts
        with flexdiff.enabled(case.pipe, flexdiff.full(grid, "flow-euler")):
            assert torch.equal(case(), plain)
        with flexdiff.enabled(case.pipe, caching_schedule(grid, owners, "flow-euler")):
            assert not torch.equal(case(), plain)
        assert torch.equal(case(), plain)


@pytest.mark.parametrize("name", ["svd", "sd-karras"])
def test_null_steps_on_a_sigma_grid_run_the_kept_sigmas(name: str) -> None:
    """Schedulers whose timesteps are not integers (SVD's 0.25 log sigma, Euler with Karras sigmas) list their sigmas as
    the grid; null steps run the kept sigmas, exactly as the plain pipeline called with ``sigmas=`` those."""
    from pipelines import svd

    if name == "svd":
        case = svd()
    else:
        case = CASES["sd"]()
        case.pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(case.pipe.scheduler.config, use_karras_sigmas=True)
    case.pipe.set_progress_bar_config(disable=True)
    grid = flexdiff.pipeline_timesteps(case.pipe, STEPS)
    assert any(t != int(t) for t in grid)
    nulls = Schedule(tuple(Step.parse("null" if i in (2, 4) else "full") for i in range(STEPS)), tuple(grid), "euler")
    scheduler = copy.deepcopy(case.pipe.scheduler)
    scheduler.set_timesteps(STEPS)
    kept = [float(s) for i, s in enumerate(scheduler.sigmas.tolist()) if i not in (2, 4)]  # the terminal sigma kept
    plain = case(sigmas=kept)
    with flexdiff.enabled(case.pipe, nulls):
        assert torch.equal(case(), plain)


def test_a_quantized_denoiser_under_enable() -> None:
    """torchao's int8 weight-only quantization on the CPU (its linear weights become quantized tensors inside the
    blocks the hooks wrap): all-full is the plain quantized call bit for bit, a caching schedule changes it."""
    pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    case = CASES["wan"]()
    case.pipe.set_progress_bar_config(disable=True)
    quantize_(case.pipe.transformer, Int8WeightOnlyConfig())
    plain, grid, owners = plain_run(case)
    with flexdiff.enabled(case.pipe, flexdiff.full(grid, "flow-euler")):
        assert torch.equal(case(), plain)
    with flexdiff.enabled(case.pipe, caching_schedule(grid, owners, "flow-euler")):
        assert not torch.equal(case(), plain)
    assert torch.equal(case(), plain)


def test_a_searched_schedule_runs_at_any_num_inference_steps() -> None:
    """A schedule carrying its genome (a search's best.json) enabled once runs at every ``num_inference_steps`` the
    user calls: each call re-expands it there (exactly the plan ``for_steps`` makes), and back at its own T it is the
    plan itself again; a hand-made plan at another step count is a one-line refusal."""
    from flexdiff.schedule import Genome, for_steps

    case = CASES["sd3"]()
    pipe = case.pipe
    pipe.set_progress_bar_config(disable=True)

    def call(steps: int) -> torch.Tensor:
        return pipe(**case.kwargs, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="latent").images

    plan = Genome.parse("0:2,1:1,0:2").expand(flexdiff.pipeline_timesteps(pipe, STEPS), "flow-euler")
    with flexdiff.enabled(pipe, plan):
        moved, own = call(10), call(STEPS)
    with flexdiff.enabled(pipe, for_steps(plan, flexdiff.pipeline_timesteps(pipe, 10))):
        assert torch.equal(moved, call(10))
    with flexdiff.enabled(pipe, plan):
        assert torch.equal(own, call(STEPS))
    assert not torch.equal(moved, call(10))  # the plan acted
    hand_made = caching_schedule(flexdiff.pipeline_timesteps(pipe, STEPS), ["transformer"] * STEPS, "flow-euler")
    with flexdiff.enabled(pipe, hand_made), pytest.raises(flexdiff.FlexdiffError, match="carries its genome") as err:
        call(10)
    assert "\n" not in str(err.value)
