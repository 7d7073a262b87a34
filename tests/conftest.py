"""Shared fixtures: tiny saved pipeline folders, built once per session (the tiny models themselves are
flexdiff.testing.tiny's; the folders' parts and the CLI helpers are tests/folders.py's), and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is ever downloaded in tests

import numpy as np
import pytest
import torch
from folders import text_config, tiny_vae, write_index, write_tokenizer

from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, load_model, save_model
from flexdiff.testing.tiny import tiny_unet

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pixel-space pipeline folder (unet/ + scheduler/) saved as safetensors."""
    out = tmp_path_factory.mktemp("tiny") / "pipeline"
    save_model(tiny_unet(), out, DEFAULT_SCHEDULER_CONFIG)
    return out


@pytest.fixture()
def tiny_model(tiny_model_dir: Path):
    return load_model(tiny_model_dir, device="cpu")


# --- tiny pipeline folders (Stable Diffusion, SDXL, ControlNet, LDM, class-conditional, CLIP), built once per session


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stable Diffusion layout: unet (UNet2DConditionModel), vae (AutoencoderKL), text_encoder, tokenizer, scheduler."""
    from diffusers import PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("sd") / "pipeline"
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=2,
    ).save_pretrained(root / "unet", safe_serialization=True)
    tiny_vae("kl").save_pretrained(root / "vae", safe_serialization=True)
    vocab = write_tokenizer(root / "tokenizer")
    torch.manual_seed(2)
    CLIPTextModel(CLIPTextConfig(**text_config(vocab))).save_pretrained(str(root / "text_encoder"))
    PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1
    ).save_pretrained(root / "scheduler")
    write_index(
        root,
        "StableDiffusionPipeline",
        unet=["diffusers", "UNet2DConditionModel"],
        vae=["diffusers", "AutoencoderKL"],
        text_encoder=["transformers", "CLIPTextModel"],
        tokenizer=["transformers", "CLIPTokenizer"],
        scheduler=["diffusers", "PNDMScheduler"],
        safety_checker=[None, None],
        feature_extractor=[None, None],
        requires_safety_checker=False,
    )
    return root


@pytest.fixture(scope="session")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stable Diffusion XL layout: a UNet with added text-time conditions, two text encoders and tokenizers."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    root = tmp_path_factory.mktemp("sdxl") / "pipeline"
    torch.manual_seed(0)
    UNet2DConditionModel(  # cross attention = both encoders' states (8 + 8); added embedding = 6 time ids x 4 + the pooled 8
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=6 * 4 + 8,
    ).save_pretrained(root / "unet", safe_serialization=True)
    tiny_vae("kl").save_pretrained(root / "vae", safe_serialization=True)
    vocab = write_tokenizer(root / "tokenizer")
    write_tokenizer(root / "tokenizer_2")
    torch.manual_seed(2)
    CLIPTextModel(CLIPTextConfig(**text_config(vocab))).save_pretrained(str(root / "text_encoder"))
    CLIPTextModelWithProjection(CLIPTextConfig(**text_config(vocab))).save_pretrained(str(root / "text_encoder_2"))
    EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1).save_pretrained(
        root / "scheduler"
    )
    write_index(
        root,
        "StableDiffusionXLPipeline",
        unet=["diffusers", "UNet2DConditionModel"],
        vae=["diffusers", "AutoencoderKL"],
        text_encoder=["transformers", "CLIPTextModel"],
        tokenizer=["transformers", "CLIPTokenizer"],
        text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
        tokenizer_2=["transformers", "CLIPTokenizer"],
        scheduler=["diffusers", "EulerDiscreteScheduler"],
        force_zeros_for_empty_prompt=True,
    )
    return root


@pytest.fixture(scope="session")
def controlnet_dir(sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a StableDiffusionControlNetPipeline folder saved by diffusers, a folder of two 16x16 control images). The
    ControlNet's zero-initialised output convolutions get random weights, so its residuals change the images."""
    from diffusers import (
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionPipeline,
    )
    from PIL import Image

    base = StableDiffusionPipeline.from_pretrained(sd_dir, safety_checker=None, requires_safety_checker=False)
    controlnet = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(4, 8))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.3)
    root = tmp_path_factory.mktemp("controlnet")
    StableDiffusionControlNetPipeline(**base.components, controlnet=controlnet).save_pretrained(root / "pipeline", safe_serialization=True)
    images = root / "control"
    images.mkdir()
    for k in range(2):
        pixels = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(10 + k))
        Image.fromarray((pixels.numpy() * 255).astype(np.uint8)).save(images / f"{k}.png")
    return root / "pipeline", images


@pytest.fixture(scope="session")
def ldm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LDMPipeline layout: vqvae (VQModel), unet (latent UNet2DModel), scheduler (DDIM)."""
    from diffusers import DDIMScheduler, UNet2DModel

    root = tmp_path_factory.mktemp("ldm") / "pipeline"
    torch.manual_seed(0)
    UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=4,
    ).save_pretrained(root / "unet", safe_serialization=True)
    tiny_vae("vq").save_pretrained(root / "vqvae", safe_serialization=True)
    DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False).save_pretrained(root / "scheduler")
    write_index(root, "LDMPipeline", vqvae=["diffusers", "VQModel"], unet=["diffusers", "UNet2DModel"], scheduler=["diffusers", "DDIMScheduler"])
    return root


@pytest.fixture(scope="session")
def class_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-conditional pixel UNet2DModel (3 classes) in a DDPM pipeline folder."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=3,
    )
    root = tmp_path_factory.mktemp("class") / "pipeline"
    save_model(unet, root, DEFAULT_SCHEDULER_CONFIG)
    return root


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIPModel (both towers, 16x16 images) with its tokenizer, as transformers saves it."""
    from transformers import CLIPConfig, CLIPModel

    root = tmp_path_factory.mktemp("clip") / "clip"
    vocab = write_tokenizer(root)
    torch.manual_seed(3)
    vision = dict(image_size=16, patch_size=8, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=text_config(vocab), vision_config=vision, projection_dim=8)).save_pretrained(str(root))
    return root


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("a cat\n\n7\ta dog\nthe cat and the dog\n")
    return path
