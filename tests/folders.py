"""Tiny random pipeline folders of the transformer families (Flux, SD3, PixArt-Sigma, Qwen-Image, Wan 2.1), saved
with ``save_pretrained`` as a user's model folder is: diffusers' pipeline-test dummy sizes, local tokenizers written
from a few pieces (nothing is downloaded).

Each builder writes a folder and returns its path; ``FOLDERS`` maps a family name to its builder and the call
options (height, width, frames) its tiny latents need.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from typer.testing import CliRunner

from flexdiff.cli import app

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MERGES = ["c a", "ca t</w>", "d o", "do g</w>"]
MAX_TOKENS = 16
T5_PIECES = "▁a ▁cat ▁dog ▁red ▁blue ▁photo ▁of ▁the ▁and a b c d e g o t".split()


def write_tokenizer(folder: Path) -> dict[str, int]:
    """A CLIP BPE tokenizer from a 60-token vocabulary (letters, letters + </w>, four merges, specials)."""
    from transformers import CLIPTokenizer

    vocab = {c: i for i, c in enumerate(LETTERS)}
    vocab.update({c + "</w>": len(LETTERS) + i for i, c in enumerate(LETTERS)})
    for merge in MERGES:
        vocab[merge.replace(" ", "")] = len(vocab)
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=MAX_TOKENS).save_pretrained(str(folder))
    return vocab


def text_config(vocab: dict[str, int], hidden: int = 8) -> dict[str, Any]:
    eos = vocab["<|endoftext|>"]
    return dict(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=hidden,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=eos,
        pad_token_id=eos,
    )


def t5_tokenizer() -> Any:
    """A T5 (Unigram) tokenizer over a few pieces: what T5 / UMT5 text encoders are paired with."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.0) for p in T5_PIECES]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0, model_max_length=MAX_TOKENS)


def t5_encoder(d_model: int, seed: int = 4, umt5: bool = False) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = dict(vocab_size=len(T5_PIECES) + 3, d_model=d_model, d_kv=8, d_ff=16, num_layers=1, num_heads=2, relative_attention_num_buckets=8)
    return (UMT5EncoderModel(UMT5Config(**config)) if umt5 else T5EncoderModel(T5Config(**config))).eval()


def clip_encoder(hidden: int, seed: int = 2, projection: bool = False) -> tuple[Any, Any]:
    """(CLIP text encoder, its tokenizer), the tokenizer written to a scratch folder and read back."""
    import tempfile

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        vocab = write_tokenizer(Path(scratch))
        tokenizer = CLIPTokenizer.from_pretrained(scratch, local_files_only=True)
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(CLIPTextConfig(**text_config(vocab, hidden))).eval(), tokenizer


def _vae(latent_channels: int, flow: bool = False) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(1)
    extra = dict(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False) if flow else {}
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        latent_channels=latent_channels,
        sample_size=16,
        **extra,
    ).eval()


def flux(root: Path) -> Path:
    """FLUX.1: CLIP + T5 encoders, a packed-latent transformer (2x2 patches of 4-channel latents), dynamic shifting."""
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=8,
        axes_dims_rope=[2, 2, 4],
    )
    clip, tokenizer = clip_encoder(8, projection=False)
    pipe = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=4, max_image_seq_len=256
        ),
        vae=_vae(4, flow=True),
        text_encoder=clip,
        tokenizer=tokenizer,
        text_encoder_2=t5_encoder(16),
        tokenizer_2=t5_tokenizer(),
        transformer=transformer.eval(),
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return root


def sd3(root: Path, t5: bool = False) -> Path:
    """Stable Diffusion 3, by default without its T5 encoder (``text_encoder_3`` null in model_index.json, as diffusers
    documents)."""
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_projection_dim=16,
        joint_attention_dim=16,
        pooled_projection_dim=16,
        out_channels=4,
    )
    clip, tokenizer = clip_encoder(8, projection=True)
    clip_2, tokenizer_2 = clip_encoder(8, seed=3, projection=True)
    pipe = diffusers.StableDiffusion3Pipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(4, flow=True),
        text_encoder=clip,
        tokenizer=tokenizer,
        text_encoder_2=clip_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=t5_encoder(16) if t5 else None,
        tokenizer_3=t5_tokenizer() if t5 else None,
        transformer=transformer.eval(),
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return root


def pixart_sigma(root: Path) -> Path:
    """PixArt-Sigma: a T5 encoder, DPM-Solver++ on integer timesteps, a learned-sigma transformer."""
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.PixArtTransformer2DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=16,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    pipe = diffusers.PixArtSigmaPipeline(
        tokenizer=t5_tokenizer(), text_encoder=t5_encoder(16), vae=_vae(4), transformer=transformer.eval(), scheduler=diffusers.DPMSolverMultistepScheduler()
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return root


def wan(root: Path) -> Path:
    """Wan 2.1 text-to-video: a UMT5 encoder, a 3-D transformer, a causal video VAE (4x in time, 8x in space)."""
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=16,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    torch.manual_seed(1)
    vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    pipe = diffusers.WanPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(16, umt5=True),
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return root


def qwen_tokenizer() -> Any:
    """A byte-level BPE tokenizer (the 256 byte symbols, no merges) with Qwen's chat specials: what Qwen-Image's prompt
    template is tokenized with (one token per byte: its system prompt is longer than the 34 tokens the pipeline drops)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tokenizer = Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token=None, model_max_length=64)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tokenizer


def qwen_image(root: Path) -> Path:
    """Qwen-Image: a Qwen2.5-VL text encoder (diffusers' test sizes, a 300-token vocabulary), its 3-D VAE, dynamic shifting."""
    import diffusers
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    transformer = diffusers.QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    vae = diffusers.AutoencoderKLQwenImage(
        base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4
    )
    text = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "vocab_size": 300,
        "rope_theta": 1e6,
        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        "bos_token_id": 256,
        "eos_token_id": 256,
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16,
        vocab_size=300,
        vision_end_token_id=290,
        vision_start_token_id=291,
        vision_token_id=292,
        bos_token_id=256,
        eos_token_id=256,
    )
    torch.manual_seed(1)
    encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192
    )
    diffusers.QwenImagePipeline(
        scheduler=scheduler, vae=vae.eval(), text_encoder=encoder, tokenizer=qwen_tokenizer(), transformer=transformer.eval()
    ).save_pretrained(root, safe_serialization=True)
    return root


#: family -> (folder builder, the call options its tiny latents take)
FOLDERS: dict[str, tuple[Callable[[Path], Path], dict[str, Any]]] = {
    "flux": (flux, {"height": 16, "width": 16}),
    "sd3": (sd3, {"height": 16, "width": 16}),
    "sd3-t5": (lambda root: sd3(root, t5=True), {"height": 16, "width": 16}),
    "pixart-sigma": (pixart_sigma, {"height": 16, "width": 16, "use_resolution_binning": False}),
    "qwen-image": (qwen_image, {"height": 32, "width": 32, "max_sequence_length": 16}),
    "wan": (wan, {"height": 16, "width": 16, "num_frames": 5}),
}


# --- the CLI and pipeline-folder helpers the end-to-end tests share ------------------------------------------------

runner = CliRunner()
SEARCH = ["--steps", "6", "--n", "4", "--trials", "2", "--segments", "2,3", "--validate-n", "4", "--validate-top", "1", "--baseline-branches", "0"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def tiny_vae(kind: str):
    from diffusers import AutoencoderKL, VQModel

    torch.manual_seed(1)
    common = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        sample_size=16,
    )
    if kind == "kl":
        return AutoencoderKL(latent_channels=4, **common)
    return VQModel(latent_channels=3, num_vq_embeddings=16, vq_embed_dim=3, **common)


def write_index(root: Path, pipeline: str, **parts: list) -> None:
    (root / "model_index.json").write_text(json.dumps({"_class_name": pipeline, "_diffusers_version": "0.35.0", **parts}))
