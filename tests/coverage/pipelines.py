"""Tiny pipelines of the transformer families people accelerate, built from diffusers' classes with the sizes of
diffusers' own pipeline-test dummy components (``tests/pipelines/<family>/test_*.py``' ``get_dummy_components``),
random weights, no text encoder (random prompt embeddings are passed in) and no VAE (``output_type="latent"``).

Each builder returns a :class:`Case`: the pipeline and the keyword arguments of its call. Adding a family is adding a
builder to :data:`CASES`; the suite in ``test_coverage.py`` runs every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import diffusers
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

STEPS = 6


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=_g(seed))


@dataclass
class Case:
    """A pipeline and how to call it (``num_inference_steps``, ``generator`` and ``output_type`` are added)."""

    pipe: Any
    kwargs: dict[str, Any]
    video: bool = False
    #: what ``flexdiff.pipeline_timesteps`` needs beside the step count (Flux-style pipelines pass their own sigmas)
    grid_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, **extra: Any) -> torch.Tensor:
        out = self.pipe(**self.kwargs, num_inference_steps=STEPS, generator=_g(0), output_type="latent", **extra)
        out = out.frames if hasattr(out, "frames") and not isinstance(out, tuple) else out
        return torch.as_tensor(out[0])  # DDPMPipeline has no latent output: its numpy images


def _masked_prompts(length: int, dim: int, mask_dtype: torch.dtype = torch.long) -> dict[str, Any]:
    """Random prompt and negative-prompt embeddings ``(1, length, dim)`` with all-ones attention masks."""
    mask = torch.ones(1, length, dtype=mask_dtype)
    return dict(
        prompt_embeds=_randn(1, length, dim, seed=1),
        prompt_attention_mask=mask,
        negative_prompt_embeds=_randn(1, length, dim, seed=2),
        negative_prompt_attention_mask=mask,
    )


def _manual_seed(build: Callable[[], Any]) -> Any:
    torch.manual_seed(0)
    return build().eval()


def _wan_transformer(seed: int) -> Any:
    """The tiny Wan transformer both Wan cases use (Wan 2.2's two experts differ only by their seed)."""
    torch.manual_seed(seed)
    return diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=3,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    ).eval()


def _wan_case(pipe: Any) -> Case:
    """A Wan pipeline's call: 5 frames of 16x16 from precomputed text embeddings, with guidance."""
    return Case(
        pipe,
        dict(prompt_embeds=_randn(1, 8, 32, seed=1), negative_prompt_embeds=_randn(1, 8, 32, seed=2), height=16, width=16, num_frames=5, guidance_scale=5.0),
        video=True,
    )


def wan() -> Case:
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return _wan_case(diffusers.WanPipeline(tokenizer=None, text_encoder=None, transformer=_wan_transformer(0), vae=None, scheduler=scheduler))


def wan22() -> Case:
    """Wan 2.2's two experts: ``transformer`` for the high-noise steps, ``transformer_2`` after the boundary."""
    pipe = diffusers.WanPipeline(
        tokenizer=None,
        text_encoder=None,
        transformer=_wan_transformer(0),
        transformer_2=_wan_transformer(1),
        vae=None,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        boundary_ratio=0.5,
    )
    return _wan_case(pipe)


def qwen_image() -> Case:
    tr = _manual_seed(
        lambda: diffusers.QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=3,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=16,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        )
    )
    pipe = diffusers.QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None, transformer=tr)
    mask = torch.ones(1, 7, dtype=torch.long)
    return Case(
        pipe,
        dict(
            prompt_embeds=_randn(1, 7, 16, seed=1),
            prompt_embeds_mask=mask,
            negative_prompt_embeds=_randn(1, 7, 16, seed=2),
            negative_prompt_embeds_mask=mask,
            true_cfg_scale=4.0,
            height=32,
            width=32,
        ),
    )


def hunyuan_video() -> Case:
    tr = _manual_seed(
        lambda: diffusers.HunyuanVideoTransformer3DModel(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=10,
            num_layers=2,
            num_single_layers=2,
            num_refiner_layers=1,
            patch_size=1,
            patch_size_t=1,
            guidance_embeds=True,
            text_embed_dim=16,
            pooled_projection_dim=8,
            rope_axes_dim=(2, 4, 4),
        )
    )
    pipe = diffusers.HunyuanVideoPipeline(
        text_encoder=None, tokenizer=None, transformer=tr, vae=None, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None, tokenizer_2=None
    )
    return Case(
        pipe,
        dict(
            prompt_embeds=_randn(1, 6, 16, seed=1),
            pooled_prompt_embeds=_randn(1, 8, seed=2),
            prompt_attention_mask=torch.ones(1, 6, dtype=torch.long),
            height=16,
            width=16,
            num_frames=5,
            guidance_scale=6.0,
        ),
        video=True,
    )


def ltx() -> Case:
    tr = _manual_seed(
        lambda: diffusers.LTXVideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=3,
            caption_channels=32,
        )
    )
    pipe = diffusers.LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None, transformer=tr)
    return Case(pipe, dict(**_masked_prompts(8, 32), height=32, width=32, num_frames=9, guidance_scale=3.0), video=True)


def cogvideox() -> Case:
    tr = _manual_seed(
        lambda: diffusers.CogVideoXTransformer3DModel(
            num_attention_heads=4,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            time_embed_dim=2,
            text_embed_dim=32,
            num_layers=3,
            sample_width=2,
            sample_height=2,
            sample_frames=9,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=16,
        )
    )
    pipe = diffusers.CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=tr, scheduler=diffusers.CogVideoXDDIMScheduler())
    return Case(
        pipe,
        dict(prompt_embeds=_randn(1, 16, 32, seed=1), negative_prompt_embeds=_randn(1, 16, 32, seed=2), height=16, width=16, num_frames=9, guidance_scale=6.0),
        video=True,
    )


def mochi() -> Case:
    tr = _manual_seed(
        lambda: diffusers.MochiTransformer3DModel(
            patch_size=2,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=3,
            pooled_projection_dim=16,
            in_channels=12,
            out_channels=None,
            qk_norm="rms_norm",
            text_embed_dim=32,
            time_embed_dim=4,
            activation_fn="swiglu",
            max_sequence_length=16,
        )
    )
    tr.pos_frequencies.data = tr.pos_frequencies.new_full(tr.pos_frequencies.shape, 0)
    pipe = diffusers.MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None, transformer=tr)
    return Case(pipe, dict(**_masked_prompts(16, 32), height=16, width=16, num_frames=7, guidance_scale=4.5), video=True)


def sana() -> Case:
    tr = _manual_seed(
        lambda: diffusers.SanaTransformer2DModel(
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=3,
            num_attention_heads=2,
            attention_head_dim=4,
            num_cross_attention_heads=2,
            cross_attention_head_dim=4,
            cross_attention_dim=8,
            caption_channels=8,
            sample_size=32,
        )
    )
    pipe = diffusers.SanaPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    return Case(pipe, dict(**_masked_prompts(6, 8), height=32, width=32, guidance_scale=4.5, use_resolution_binning=False, negative_prompt=None))


def cogview4() -> Case:
    tr = _manual_seed(
        lambda: diffusers.CogView4Transformer2DModel(
            patch_size=2,
            in_channels=4,
            num_layers=3,
            attention_head_dim=4,
            num_attention_heads=4,
            out_channels=4,
            text_embed_dim=32,
            time_embed_dim=8,
            condition_dim=4,
        )
    )
    pipe = diffusers.CogView4Pipeline(
        tokenizer=None,
        text_encoder=None,
        vae=None,
        transformer=tr,
        scheduler=FlowMatchEulerDiscreteScheduler(base_shift=0.25, max_shift=0.75, base_image_seq_len=256, use_dynamic_shifting=True, time_shift_type="linear"),
    )
    return Case(pipe, dict(prompt_embeds=_randn(1, 16, 32, seed=1), negative_prompt_embeds=_randn(1, 16, 32, seed=2), height=32, width=32, guidance_scale=5.0))


def chroma() -> Case:
    tr = _manual_seed(
        lambda: diffusers.ChromaTransformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            axes_dims_rope=[4, 4, 8],
            approximator_hidden_dim=32,
            approximator_layers=1,
            approximator_num_channels=16,
        )
    )
    pipe = diffusers.ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None, transformer=tr)
    return Case(
        pipe,
        dict(
            **_masked_prompts(8, 32, torch.float32),  # a float mask, as its _get_t5_prompt_embeds makes it
            height=16,
            width=16,
            guidance_scale=5.0,
        ),
    )


def auraflow() -> Case:
    tr = _manual_seed(
        lambda: diffusers.AuraFlowTransformer2DModel(
            sample_size=32,
            patch_size=2,
            in_channels=4,
            num_mmdit_layers=2,
            num_single_dit_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=32,
            out_channels=4,
            pos_embed_max_size=256,
        )
    )
    pipe = diffusers.AuraFlowPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler())
    return Case(pipe, dict(**_masked_prompts(8, 32), height=32, width=32, guidance_scale=5.0))


def lumina2() -> Case:
    tr = _manual_seed(
        lambda: diffusers.Lumina2Transformer2DModel(
            sample_size=4,
            patch_size=2,
            in_channels=4,
            hidden_size=8,
            num_layers=3,
            num_attention_heads=1,
            num_kv_heads=1,
            multiple_of=16,
            ffn_dim_multiplier=None,
            norm_eps=1e-5,
            scaling_factor=1.0,
            axes_dim_rope=[4, 2, 2],
            cap_feat_dim=8,
        )
    )
    pipe = diffusers.Lumina2Pipeline(transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None)
    return Case(pipe, dict(**_masked_prompts(6, 8), height=32, width=32, guidance_scale=4.0))


def hunyuan_dit() -> Case:
    tr = _manual_seed(
        lambda: diffusers.HunyuanDiT2DModel(
            sample_size=16,
            num_layers=4,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            in_channels=4,
            cross_attention_dim=32,
            cross_attention_dim_t5=32,
            pooled_projection_dim=16,
            hidden_size=24,
            activation_fn="gelu-approximate",
        )
    )
    pipe = diffusers.HunyuanDiTPipeline(
        vae=None,
        text_encoder=None,
        tokenizer=None,
        transformer=tr,
        scheduler=diffusers.DDPMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        text_encoder_2=None,
        tokenizer_2=None,
    )
    mask, mask2 = torch.ones(1, 77, dtype=torch.long), torch.ones(1, 256, dtype=torch.long)  # its CLIP and T5 lengths: 77, 256 tokens
    return Case(
        pipe,
        dict(
            prompt_embeds=_randn(1, 77, 32, seed=1),
            prompt_attention_mask=mask,
            prompt_embeds_2=_randn(1, 256, 32, seed=2),
            prompt_attention_mask_2=mask2,
            negative_prompt_embeds=_randn(1, 77, 32, seed=3),
            negative_prompt_attention_mask=mask,
            negative_prompt_embeds_2=_randn(1, 256, 32, seed=4),
            negative_prompt_attention_mask_2=mask2,
            height=16,
            width=16,
            guidance_scale=5.0,
            use_resolution_binning=False,
        ),
    )


def hidream() -> Case:
    """HiDream: double- and single-stream lists of ``HiDreamBlock`` wrappers, four text encoders' embeddings."""
    tr = _manual_seed(
        lambda: diffusers.HiDreamImageTransformer2DModel(
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_channels=[32, 16],
            text_emb_dim=64,
            num_routed_experts=4,
            num_activated_experts=2,
            axes_dims_rope=(4, 2, 2),
            max_resolution=(32, 32),
            llama_layers=(0, 1, 2, 3),
        )
    )
    pipe = diffusers.HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
        text_encoder_4=None,
        tokenizer_4=None,
        transformer=tr,
    )
    pipe.default_sample_size = 4  # it rescales every request to this area (1024 px by default): 32 px
    return Case(
        pipe,
        dict(
            prompt_embeds_t5=_randn(1, 5, 32, seed=1),
            prompt_embeds_llama3=_randn(4, 1, 5, 16, seed=2),
            pooled_prompt_embeds=_randn(1, 64, seed=3),
            negative_prompt_embeds_t5=_randn(1, 5, 32, seed=4),
            negative_prompt_embeds_llama3=_randn(4, 1, 5, 16, seed=5),
            negative_pooled_prompt_embeds=_randn(1, 64, seed=6),
            height=32,
            width=32,
            guidance_scale=5.0,
        ),
    )


def animatediff() -> Case:
    """AnimateDiff: an SD UNet plus a MotionAdapter, which the pipeline turns into a ``UNetMotionModel``."""
    unet = _manual_seed(
        lambda: diffusers.UNet2DConditionModel(
            block_out_channels=(8, 8),
            layers_per_block=2,
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=8,
            norm_num_groups=2,
        )
    )
    adapter = _manual_seed(
        lambda: diffusers.MotionAdapter(block_out_channels=(8, 8), motion_layers_per_block=2, motion_norm_num_groups=2, motion_num_attention_heads=4)
    )
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False, set_alpha_to_one=True)
    pipe = diffusers.AnimateDiffPipeline(
        vae=None, text_encoder=None, tokenizer=None, unet=unet, motion_adapter=adapter, scheduler=scheduler, feature_extractor=None, image_encoder=None
    )
    pipe.unet.eval()
    return Case(
        pipe,
        dict(prompt_embeds=_randn(1, 7, 8, seed=1), negative_prompt_embeds=_randn(1, 7, 8, seed=2), height=16, width=16, num_frames=4, guidance_scale=7.5),
        video=True,
    )


def text_to_video_sd() -> Case:
    unet = _manual_seed(
        lambda: diffusers.UNet3DConditionModel(
            block_out_channels=(4, 8),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=4,
            attention_head_dim=4,
            norm_num_groups=2,
        )
    )
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False)
    pipe = diffusers.TextToVideoSDPipeline(vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler)
    return Case(
        pipe,
        dict(prompt_embeds=_randn(1, 7, 4, seed=1), negative_prompt_embeds=_randn(1, 7, 4, seed=2), height=16, width=16, num_frames=3, guidance_scale=6.0),
        video=True,
    )


def _sd_unet(cross: int = 8) -> Any:
    return _manual_seed(
        lambda: diffusers.UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(4, 8),
            layers_per_block=1,
            norm_num_groups=2,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=cross,
            attention_head_dim=2,
        )
    )


_SD = dict(vae=None, text_encoder=None, tokenizer=None, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _sd_call(**extra: Any) -> dict[str, Any]:
    return dict(prompt_embeds=_randn(1, 7, 8, seed=1), negative_prompt_embeds=_randn(1, 7, 8, seed=2), height=16, width=16, guidance_scale=3.0, **extra)


def ddpm() -> Case:
    from flexdiff.testing.tiny import tiny_unet

    pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.DDPMScheduler())
    return Case(pipe, dict(batch_size=2))


def sd() -> Case:
    return Case(diffusers.StableDiffusionPipeline(unet=_sd_unet(), scheduler=diffusers.DPMSolverMultistepScheduler(), **_SD), _sd_call())


def sd_controlnet() -> Case:
    unet = _sd_unet()
    controlnet = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 4, 8, 8))  # 8x down: the latent size
    with torch.no_grad():  # diffusers zero-initialises the output convolutions: random ones, as a trained ControlNet's
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=_g(3)) * 0.3)
    pipe = diffusers.StableDiffusionControlNetPipeline(unet=unet, controlnet=controlnet.eval(), scheduler=diffusers.EulerDiscreteScheduler(), **_SD)
    return Case(pipe, _sd_call(image=torch.rand(1, 3, 16, 16, generator=_g(5))))


def sd_pag() -> Case:
    """Perturbed-attention guidance: a third pass with the mid block's self-attention replaced, per step."""
    pipe = diffusers.StableDiffusionPAGPipeline(unet=_sd_unet(), scheduler=diffusers.DDIMScheduler(set_alpha_to_one=True), pag_applied_layers=["mid"], **_SD)
    return Case(pipe, _sd_call(pag_scale=3.0))


def sdxl() -> Case:
    unet = _manual_seed(
        lambda: diffusers.UNet2DConditionModel(
            block_out_channels=(2, 4),
            layers_per_block=2,
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80,
            cross_attention_dim=64,
            norm_num_groups=1,
        )
    )
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=None, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=unet, scheduler=diffusers.EulerDiscreteScheduler()
    )
    return Case(
        pipe,
        dict(
            prompt_embeds=_randn(1, 7, 64, seed=1),
            pooled_prompt_embeds=_randn(1, 32, seed=2),
            negative_prompt_embeds=_randn(1, 7, 64, seed=3),
            negative_pooled_prompt_embeds=_randn(1, 32, seed=4),
            height=16,
            width=16,
            guidance_scale=5.0,
        ),
    )


def pixart_sigma() -> Case:
    tr = _manual_seed(
        lambda: diffusers.PixArtTransformer2DModel(
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
    )
    pipe = diffusers.PixArtSigmaPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=tr, scheduler=diffusers.DPMSolverMultistepScheduler())
    return Case(pipe, dict(negative_prompt=None, **_masked_prompts(5, 12), height=16, width=16, use_resolution_binning=False, guidance_scale=3.0))


def _sd3_transformer() -> Any:
    return _manual_seed(
        lambda: diffusers.SD3Transformer2DModel(
            sample_size=8,
            patch_size=2,
            in_channels=16,
            num_layers=4,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=12,
            caption_projection_dim=16,
            pooled_projection_dim=10,
            out_channels=16,
            pos_embed_max_size=16,
        )
    )


def sd3(**extra: Any) -> Case:
    pipe = diffusers.StableDiffusion3Pipeline(
        transformer=_sd3_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    return Case(
        pipe,
        dict(
            prompt_embeds=_randn(1, 5, 12, seed=1),
            pooled_prompt_embeds=_randn(1, 10, seed=2),
            negative_prompt_embeds=_randn(1, 5, 12, seed=3),
            negative_pooled_prompt_embeds=_randn(1, 10, seed=4),
            height=16,
            width=16,
            guidance_scale=3.0,
            **extra,
        ),
    )


def sd3_slg() -> Case:
    """SD3 with skip-layer guidance: a third transformer pass, with block 1 skipped, in steps 1..4 of 6 (step 1 is
    partial in the caching schedule: its third pass has no full step's cache to reuse, so it computes)."""
    return sd3(skip_guidance_layers=[1], skip_layer_guidance_start=0.1, skip_layer_guidance_stop=0.7)


def _flux_transformer(**extra: Any) -> Any:
    return _manual_seed(
        lambda: diffusers.FluxTransformer2DModel(
            patch_size=1,
            in_channels=extra.pop("in_channels", 64),
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=12,
            pooled_projection_dim=10,
            axes_dims_rope=(2, 2, 4),
            **extra,
        )
    )


def _flux_scheduler() -> Any:
    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)


def flux() -> Case:
    pipe = diffusers.FluxPipeline(
        scheduler=_flux_scheduler(), vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None, transformer=_flux_transformer()
    )
    return Case(pipe, dict(prompt_embeds=_randn(1, 5, 12, seed=1), pooled_prompt_embeds=_randn(1, 10, seed=2), height=16, width=16, max_sequence_length=5))


def z_image() -> Case:
    tr = _manual_seed(
        lambda: diffusers.ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=32,
            n_layers=3,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            norm_eps=1e-5,
            qk_norm=True,
            cap_feat_dim=16,
            rope_theta=256.0,
            t_scale=1000.0,
            axes_dims=[8, 4, 4],
            axes_lens=[256, 32, 32],
        )
    )
    pipe = diffusers.ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None, transformer=tr)
    return Case(pipe, dict(prompt_embeds=[_randn(5, 16, seed=1)], negative_prompt_embeds=[_randn(5, 16, seed=2)], height=32, width=32, guidance_scale=4.0))


def _vae(latent_channels: int = 16) -> Any:
    """A two-level AutoencoderKL (scale factor 2), for the pipelines that encode an image (control images, DiT's decode)."""
    return _manual_seed(
        lambda: diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=latent_channels,
            block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=4,
            sample_size=16,
            shift_factor=0.0,
            scaling_factor=1.0,
        )
    )


def pixart_alpha() -> Case:
    case = pixart_sigma()
    pipe = diffusers.PixArtAlphaPipeline(
        tokenizer=None, text_encoder=None, vae=None, transformer=case.pipe.transformer, scheduler=diffusers.DPMSolverMultistepScheduler()
    )
    return Case(pipe, case.kwargs)


def dit() -> Case:
    tr = _manual_seed(
        lambda: diffusers.DiTTransformer2DModel(
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
    )
    pipe = diffusers.DiTPipeline(transformer=tr, vae=_vae(4), scheduler=diffusers.DDIMScheduler(), id2label={0: "zero", 1: "one"})
    return Case(pipe, dict(class_labels=[0, 1], guidance_scale=4.0))


def flux_control() -> Case:
    """Flux Control (Canny / Depth): the control image's latents joined to the sample's channels; it passes t / 1000."""
    pipe = diffusers.FluxControlPipeline(
        scheduler=_flux_scheduler(),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=_flux_transformer(in_channels=128, out_channels=64),
    )
    return Case(
        pipe,
        dict(
            prompt_embeds=_randn(1, 5, 12, seed=1),
            pooled_prompt_embeds=_randn(1, 10, seed=2),
            control_image=torch.rand(1, 3, 16, 16, generator=_g(5)),
            height=16,
            width=16,
            max_sequence_length=5,
        ),
    )


def flux_controlnet() -> Case:
    controlnet = _manual_seed(
        lambda: diffusers.FluxControlNetModel(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=12,
            pooled_projection_dim=10,
            axes_dims_rope=(2, 2, 4),
        )
    )
    pipe = diffusers.FluxControlNetPipeline(
        scheduler=_flux_scheduler(),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=_flux_transformer(),
        controlnet=controlnet,
    )
    return Case(
        pipe,
        dict(
            prompt_embeds=_randn(1, 5, 12, seed=1),
            pooled_prompt_embeds=_randn(1, 10, seed=2),
            control_image=torch.rand(1, 3, 16, 16, generator=_g(5)),
            controlnet_conditioning_scale=0.7,
            height=16,
            width=16,
            max_sequence_length=5,
        ),
    )


def flux_img2img() -> Case:
    pipe = diffusers.FluxImg2ImgPipeline(
        scheduler=_flux_scheduler(), vae=_vae(), text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None, transformer=_flux_transformer()
    )
    return Case(
        pipe,
        dict(
            prompt_embeds=_randn(1, 5, 12, seed=1),
            pooled_prompt_embeds=_randn(1, 10, seed=2),
            image=torch.rand(1, 3, 16, 16, generator=_g(5)),
            strength=0.5,
            height=16,
            width=16,
            max_sequence_length=5,
        ),
    )


def sd3_img2img() -> Case:
    case = sd3()
    pipe = diffusers.StableDiffusion3Img2ImgPipeline(
        transformer=case.pipe.transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    kwargs = {k: v for k, v in case.kwargs.items() if k not in ("height", "width")}
    return Case(pipe, dict(kwargs, image=torch.rand(1, 3, 16, 16, generator=_g(5)), strength=0.5))


def flux_kontext() -> Case:
    """Flux Kontext: the input image's latents join the sequence the blocks see (their tokens are cached as well)."""
    pipe = diffusers.FluxKontextPipeline(
        scheduler=_flux_scheduler(),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=_flux_transformer(),
        image_encoder=None,
        feature_extractor=None,
    )
    return Case(
        pipe,
        dict(
            image=torch.rand(1, 3, 16, 16, generator=_g(5)),
            prompt_embeds=_randn(1, 5, 12, seed=1),
            pooled_prompt_embeds=_randn(1, 10, seed=2),
            height=16,
            width=16,
            max_sequence_length=5,
            max_area=16 * 16,
            _auto_resize=False,
        ),
    )  # no resizing to its 1024 px buckets


def flux_fill() -> Case:
    """Flux Fill (inpainting): the masked image's latents and the mask joined to the sample's channels."""
    pipe = diffusers.FluxFillPipeline(
        scheduler=_flux_scheduler(),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=_flux_transformer(in_channels=64 + 64 + 16, out_channels=64),
    )  # latents, masked image, mask (packed)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    return Case(
        pipe,
        dict(
            image=torch.rand(1, 3, 16, 16, generator=_g(5)),
            mask_image=mask,
            prompt_embeds=_randn(1, 5, 12, seed=1),
            pooled_prompt_embeds=_randn(1, 10, seed=2),
            height=16,
            width=16,
            max_sequence_length=5,
        ),
    )


def sd3_pag() -> Case:
    case = sd3()
    pipe = diffusers.StableDiffusion3PAGPipeline(
        transformer=case.pipe.transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
        pag_applied_layers=["transformer_blocks.1"],
    )
    return Case(pipe, dict(case.kwargs, pag_scale=3.0))


def pixart_pag() -> Case:
    case = pixart_sigma()
    pipe = diffusers.PixArtSigmaPAGPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=None,
        transformer=case.pipe.transformer,
        scheduler=diffusers.DPMSolverMultistepScheduler(),
        pag_applied_layers=["transformer_blocks.1"],
    )
    return Case(pipe, dict(case.kwargs, pag_scale=3.0))


def svd() -> Case:
    """Stable Video Diffusion (diffusers' test sizes): an image encoder and a temporal VAE encode the input image."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    unet = _manual_seed(
        lambda: diffusers.UNetSpatioTemporalConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=8,
            out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=32,
            num_attention_heads=8,
            projection_class_embeddings_input_dim=96,
            addition_time_embed_dim=32,
        )
    )
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    vae = _manual_seed(
        lambda: diffusers.AutoencoderKLTemporalDecoder(
            block_out_channels=[32, 64], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], latent_channels=4
        )
    )
    encoder = _manual_seed(
        lambda: CLIPVisionModelWithProjection(
            CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=5, num_attention_heads=4, image_size=32, intermediate_size=37, patch_size=1)
        )
    )
    pipe = diffusers.StableVideoDiffusionPipeline(
        vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler, feature_extractor=CLIPImageProcessor(crop_size=32, size=32)
    )
    return Case(pipe, dict(image=torch.rand(1, 3, 32, 32, generator=_g(3)), height=32, width=32, num_frames=2, decode_chunk_size=2), video=True)


#: image-to-image: the loop starts part-way (the strength), at the scheduler's begin index
IMG2IMG: dict[str, Callable[[], Case]] = {"flux-img2img": flux_img2img, "sd3-img2img": sd3_img2img}


CASES: dict[str, Callable[[], Case]] = {
    "wan": wan,
    "wan2.2": wan22,
    "qwen-image": qwen_image,
    "hunyuan-video": hunyuan_video,
    "ltx": ltx,
    "cogvideox": cogvideox,
    "mochi": mochi,
    "sana": sana,
    "cogview4": cogview4,
    "chroma": chroma,
    "auraflow": auraflow,
    "lumina2": lumina2,
    "animatediff": animatediff,
    "text-to-video-sd": text_to_video_sd,
    "hunyuan-dit": hunyuan_dit,
    "hidream": hidream,
    "ddpm": ddpm,
    "sd": sd,
    "sd-controlnet": sd_controlnet,
    "sd-pag": sd_pag,
    "sdxl": sdxl,
    "pixart-sigma": pixart_sigma,
    "sd3": sd3,
    "sd3-slg": sd3_slg,
    "flux": flux,
    "z-image": z_image,
    "pixart-alpha": pixart_alpha,
    "dit": dit,
    "flux-control": flux_control,
    "flux-controlnet": flux_controlnet,
    "flux-kontext": flux_kontext,
    "flux-fill": flux_fill,
    "sd3-pag": sd3_pag,
    "pixart-pag": pixart_pag,
    "svd": svd,
}
