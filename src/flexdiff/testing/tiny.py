"""Tiny seeded models of diffusers' own classes (its pipeline tests' dummy sizes), and the fixtures the built-in
registry entries' contract suites run on. Everything is built in memory: nothing is downloaded or read from disk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, Conditioning, DiffusionModel
from flexdiff.noise import FlowSchedule, NoiseSchedule
from flexdiff.testing._suites import fixture_for


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_unet(seed: int = 0, sample_size: int = 8, channels: int = 1) -> torch.nn.Module:
    """A 2-level UNet2DModel with attention at the low resolution and 2 layers per block (frozen, as a loaded model is:
    oneDNN picks other kernels for trainable weights)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return (
        UNet2DModel(
            sample_size=sample_size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=(4, 8),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=2,
            attention_head_dim=4,
        )
        .eval()
        .requires_grad_(False)
    )


def tiny_plain_model() -> DiffusionModel:
    """:func:`tiny_unet` with DDPM's noise schedule: an unconditional pixel model (1x8x8)."""
    return DiffusionModel(tiny_unet(), NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 8, 8), "tiny")


def tiny_conditional_model() -> DiffusionModel:
    """A tiny UNet2DConditionModel with encoder states and classifier-free guidance (scale 3)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = (
        UNet2DConditionModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(4, 8),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=2,
            cross_attention_dim=6,
            attention_head_dim=2,
        )
        .eval()
        .requires_grad_(False)
    )
    g = _generator(1)
    cond = Conditioning(torch.randn(1, 3, 6, generator=g), torch.randn(1, 3, 6, generator=g), guidance_scale=3.0)
    return DiffusionModel(unet, NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 8, 8), "tiny-cond", conditioning=cond)


def tiny_dit_model() -> DiffusionModel:
    """A class-conditional pixel DiT with a rectified-flow schedule, like builtin:digits-dit (3 blocks, 1x8x8)."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    net = (
        DiTTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=1,
            out_channels=1,
            num_layers=3,
            sample_size=8,
            patch_size=2,
            num_embeds_ada_norm=10,
            norm_num_groups=1,
        )
        .eval()
        .requires_grad_(False)
    )
    return DiffusionModel(net, FlowSchedule(), (1, 8, 8), "tiny-dit", conditioning=Conditioning(labels=torch.arange(10)))


def tiny_pixart_model() -> DiffusionModel:
    """A text-conditional PixArt with DDPM noise and classifier-free guidance (both halves in one call)."""
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(0)
    net = (
        PixArtTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=1,
            out_channels=2,
            num_layers=3,
            sample_size=8,
            patch_size=2,
            cross_attention_dim=16,
            caption_channels=12,
            norm_num_groups=1,
        )
        .eval()
        .requires_grad_(False)
    )
    cond = Conditioning(torch.randn((1, 5, 12), generator=_generator(4)), torch.randn((1, 5, 12), generator=_generator(5)), guidance_scale=3.0)
    return DiffusionModel(net, NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 8, 8), "tiny-pixart", conditioning=cond)


@fixture_for("backbone", "unet")
def unet_models() -> list[Callable[[], DiffusionModel]]:
    return [tiny_plain_model, tiny_conditional_model]


@fixture_for("backbone", "transformer")
def transformer_models() -> list[Callable[[], DiffusionModel]]:
    return [tiny_dit_model, tiny_pixart_model]


@fixture_for("integration", "diffusers-pipeline")
def ddim_pipeline() -> Any:
    """A DDIMPipeline around :func:`tiny_unet`, called for two images in 6 steps from a fixed generator."""
    import diffusers

    from flexdiff.integrations import pipeline_timesteps
    from flexdiff.testing.integrations import Target

    pipe = diffusers.DDIMPipeline(unet=tiny_unet(), scheduler=diffusers.DDIMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG))
    pipe.set_progress_bar_config(disable=True)

    def call(p: Any) -> torch.Tensor:
        return torch.from_numpy(p(batch_size=2, num_inference_steps=6, generator=_generator(0), output_type="np").images)

    return Target(pipe, call, lambda p: pipeline_timesteps(p, 6), "ddim")
