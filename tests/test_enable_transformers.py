"""`flexdiff.enable(pipe, schedule)` on diffusers' transformer pipelines (tiny, random, prompt embeddings passed in so
no text encoder is needed): DiT, PixArt-Sigma, SD3 and Flux with their own schedulers, flow matching included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

import flexdiff
from flexdiff.errors import FlexdiffError
from flexdiff.noise import FlowSchedule
from flexdiff.schedule import ddim_k, deepcache_uniform, full

STEPS = 6


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _vae(blocks: int = 1) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4 if blocks == 1 else 16,
        block_out_channels=(8,) * blocks,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        norm_num_groups=4,
        sample_size=16,
        shift_factor=0.0,
        scaling_factor=1.0,
    ).eval()


def _dit() -> tuple[Any, Callable[..., Any], dict[str, Any]]:
    torch.manual_seed(0)
    tr = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=3,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=1000,
        norm_num_groups=1,
    )
    pipe = DiTPipeline(transformer=tr.eval(), vae=_vae(), scheduler=DDIMScheduler(), id2label={0: "zero", 1: "one"})
    return pipe, lambda **kw: pipe(class_labels=[0, 1], num_inference_steps=STEPS, generator=_g(0), output_type="np", guidance_scale=4.0, **kw).images, {}


def _pixart() -> tuple[Any, Callable[..., Any], dict[str, Any]]:
    torch.manual_seed(0)
    tr = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=3,
        sample_size=8,
        patch_size=2,
        cross_attention_dim=16,
        caption_channels=12,
        norm_num_groups=1,
    )
    pipe = PixArtSigmaPipeline(tokenizer=None, text_encoder=None, vae=_vae(), transformer=tr.eval(), scheduler=DPMSolverMultistepScheduler())
    emb, neg = torch.randn((1, 5, 12), generator=_g(1)), torch.randn((1, 5, 12), generator=_g(2))
    mask = torch.ones((1, 5), dtype=torch.long)
    return (
        pipe,
        lambda **kw: (
            pipe(
                negative_prompt=None,
                prompt_embeds=emb,
                prompt_attention_mask=mask,
                negative_prompt_embeds=neg,
                negative_prompt_attention_mask=mask,
                num_inference_steps=STEPS,
                height=16,
                width=16,
                use_resolution_binning=False,
                generator=_g(0),
                output_type="np",
                guidance_scale=3.0,
                **kw,
            ).images
        ),
        {},
    )


def _sd3() -> tuple[Any, Callable[..., Any], dict[str, Any]]:
    torch.manual_seed(0)
    tr = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=16,
        num_layers=3,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=12,
        caption_projection_dim=16,
        pooled_projection_dim=10,
        out_channels=16,
        pos_embed_max_size=16,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=tr.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(2),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    emb, pooled = torch.randn((1, 5, 12), generator=_g(1)), torch.randn((1, 10), generator=_g(2))
    nemb, npooled = torch.randn((1, 5, 12), generator=_g(3)), torch.randn((1, 10), generator=_g(4))
    return (
        pipe,
        lambda **kw: (
            pipe(
                prompt_embeds=emb,
                pooled_prompt_embeds=pooled,
                negative_prompt_embeds=nemb,
                negative_pooled_prompt_embeds=npooled,
                num_inference_steps=STEPS,
                height=16,
                width=16,
                generator=_g(0),
                output_type="np",
                guidance_scale=3.0,
                **kw,
            ).images
        ),
        {},
    )


def _flux() -> tuple[Any, Callable[..., Any], dict[str, Any]]:
    torch.manual_seed(0)
    tr = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=12,
        pooled_projection_dim=10,
        axes_dims_rope=(2, 2, 4),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
    )
    pipe = FluxPipeline(scheduler=scheduler, vae=_vae(2), text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None, transformer=tr.eval())
    emb, pooled = torch.randn((1, 5, 12), generator=_g(1)), torch.randn((1, 10), generator=_g(2))
    # what FluxPipeline passes its scheduler: its own sigmas and the dynamic shift of its sequence length
    sigmas, mu = list(np.linspace(1.0, 1 / STEPS, STEPS)), calculate_shift(16, 256, 4096, 0.5, 1.15)  # 16 packed latent tokens at 16x16
    return (
        pipe,
        lambda **kw: (
            pipe(
                prompt_embeds=emb,
                pooled_prompt_embeds=pooled,
                num_inference_steps=STEPS,
                height=16,
                width=16,
                generator=_g(0),
                output_type="np",
                max_sequence_length=5,
                **kw,
            ).images
        ),
        {"sigmas": sigmas, "mu": mu},
    )


PIPELINES = {"dit": _dit, "pixart-sigma": _pixart, "sd3": _sd3, "flux": _flux}


@pytest.fixture(params=list(PIPELINES))
def case(request: pytest.FixtureRequest):
    pipe, call, grid_kwargs = PIPELINES[request.param]()
    pipe.set_progress_bar_config(disable=True)
    return request.param, pipe, call, grid_kwargs


def _sampler(pipe: Any) -> str:
    return "flow-euler" if isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler) else "ddim"


def test_all_full_is_the_plain_call_partial_changes_it_and_disable_restores(case) -> None:
    name, pipe, call, grid_kwargs = case
    plain = call()
    grid = flexdiff.pipeline_timesteps(pipe, STEPS, **grid_kwargs)
    assert len(grid) == STEPS
    calls = []
    denoiser = pipe.transformer
    handle = denoiser.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with flexdiff.enabled(pipe, full(grid, _sampler(pipe))):
            assert np.array_equal(call(), plain)
        n_plain = len(calls)
        with flexdiff.enabled(pipe, deepcache_uniform(grid, 3, 0, _sampler(pipe))):
            assert not np.array_equal(call(), plain)
        assert len(calls) == 2 * n_plain  # partial steps are calls too, with their middle blocks reused
    finally:
        handle.remove()
    assert np.array_equal(call(), plain)


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_null_steps_on_flow_schedulers_drop_sigmas_as_diffusers_does(name: str) -> None:
    """Null steps make no call, and the result is the pipeline given exactly the kept sigmas (diffusers shifts what
    it is given: the unshifted ones are passed)."""
    pipe, call, grid_kwargs = PIPELINES[name]()
    pipe.set_progress_bar_config(disable=True)
    grid = flexdiff.pipeline_timesteps(pipe, STEPS, **grid_kwargs)
    plan = ddim_k(grid, 3, "flow-euler")
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with flexdiff.enabled(pipe, plan):
            out = call()
    finally:
        handle.remove()
    assert len(calls) == 3  # one call per active step (SD3's CFG halves are one batched call)
    config = pipe.scheduler.config
    mu = grid_kwargs.get("mu")
    noise = FlowSchedule(int(config.num_train_timesteps), float(config.shift), bool(config.use_dynamic_shifting), "exponential", mu)
    kept = noise.unshifted(plan.active_timesteps)
    reference = call(sigmas=kept)
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_a_flow_schedule_for_another_grid_is_refused() -> None:
    pipe, call, grid_kwargs = _sd3()
    pipe.set_progress_bar_config(disable=True)
    other = FlowSchedule(shift=1.0).sigmas(STEPS)  # the unshifted grid, not SD3's shift 3
    with flexdiff.enabled(pipe, full(other, "flow-euler")), pytest.raises(FlexdiffError, match="sigmas"):
        call()
