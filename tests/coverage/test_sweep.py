"""A sweep over every pipeline class diffusers exports: its denoiser (``unet`` / ``transformer`` / ``transformer_2`` /
``prior``, as its ``__init__`` annotates it) is built on the meta device (no memory, no weights: the structure is what
flexdiff reads) and given flexdiff's step hooks, as ``enable`` gives them. Each is accepted or refused in one line;
none crashes. The accepted transformer classes are printed and must include every family users accelerate today."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import diffusers
import pytest
import torch

from flexdiff.backbones.transformer import TransformerBackbone
from flexdiff.errors import FlexdiffError
from flexdiff.hooks import apply_partial_steps, remove_partial_steps

#: Classes whose default constructor is incomplete: the sizes of diffusers' own test dummy components.
CONFIGS: dict[str, dict[str, Any]] = {
    "HunyuanDiT2DModel": dict(
        sample_size=16,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        in_channels=4,
        cross_attention_dim=32,
        cross_attention_dim_t5=32,
        pooled_projection_dim=16,
        hidden_size=24,
        activation_fn="gelu-approximate",
    ),
    "HiDreamImageTransformer2DModel": dict(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=[32, 16],
        text_emb_dim=64,
        num_routed_experts=4,
        num_activated_experts=2,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(32, 32),
        llama_layers=(0, 1),
    ),
    "LatteTransformer3DModel": dict(
        sample_size=8,
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    ),
}

#: The families "Why" of issue 29 names (their diffusers transformer classes): each must be accepted.
FAMILIES = {
    "Wan": "WanTransformer3DModel",
    "Qwen-Image": "QwenImageTransformer2DModel",
    "HunyuanVideo": "HunyuanVideoTransformer3DModel",
    "LTX": "LTXVideoTransformer3DModel",
    "CogVideoX": "CogVideoXTransformer3DModel",
    "Mochi": "MochiTransformer3DModel",
    "Sana": "SanaTransformer2DModel",
    "Chroma": "ChromaTransformer2DModel",
    "Lumina2": "Lumina2Transformer2DModel",
    "CogView4": "CogView4Transformer2DModel",
    "AuraFlow": "AuraFlowTransformer2DModel",
    "Flux2": "Flux2Transformer2DModel",
    "Z-Image": "ZImageTransformer2DModel",
    "HunyuanDiT": "HunyuanDiT2DModel",
    "DiT": "DiTTransformer2DModel",
    "PixArt": "PixArtTransformer2DModel",
    "SD3": "SD3Transformer2DModel",
    "Flux": "FluxTransformer2DModel",
    "HiDream": "HiDreamImageTransformer2DModel",
}


def denoiser_classes() -> dict[str, set[str]]:
    """Denoiser class name -> the exported pipeline classes that hold one (from their ``__init__`` annotations)."""
    found: dict[str, set[str]] = {}
    for name in dir(diffusers):
        pipeline = getattr(diffusers, name, None) if name.endswith("Pipeline") else None
        if not inspect.isclass(pipeline) or name in ("DiffusionPipeline", "AutoPipeline"):
            continue
        for attr in ("unet", "transformer", "transformer_2", "prior"):
            parameter = inspect.signature(pipeline.__init__).parameters.get(attr)
            if parameter is None:
                continue
            annotation = parameter.annotation
            if isinstance(annotation, str):
                annotation = annotation.split("|")[0].strip()
            else:
                annotation = (typing.get_args(annotation) or (annotation,))[0]
                annotation = getattr(annotation, "__name__", str(annotation))
            found.setdefault(annotation, set()).add(name)
    return found


def sweep() -> dict[str, str]:
    """Each denoiser class -> "accepted", "refused: <line>" or "not built: <why>" (a class diffusers cannot construct
    from its defaults and no CONFIGS entry; a crash inside flexdiff fails the test instead)."""
    verdicts: dict[str, str] = {}
    for name in sorted(denoiser_classes()):
        cls = getattr(diffusers, name, None)
        if not isinstance(cls, type):
            verdicts[name] = "not built: not exported"
            continue
        try:
            with torch.device("meta"):
                module = cls(**CONFIGS.get(name, {}))
        except Exception as exc:  # noqa: BLE001 - diffusers' own constructor, not flexdiff
            verdicts[name] = f"not built: {type(exc).__name__}"
            continue
        try:
            apply_partial_steps(module)
        except FlexdiffError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)
            verdicts[name] = f"refused: {exc}"
            continue
        remove_partial_steps(module)
        assert not any(getattr(m, "_diffusers_hook", None) and m._diffusers_hook.hooks for m in module.modules())
        verdicts[name] = "accepted" + (" (transformer)" if TransformerBackbone().matches(module) else "")
    return verdicts


@pytest.mark.slow
def test_every_exported_pipelines_denoiser_is_accepted_or_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    verdicts = sweep()
    accepted = sorted(name for name, v in verdicts.items() if v == "accepted (transformer)")
    with capsys.disabled():
        print(
            f"\nflexdiff.enable accepts {len(accepted)} transformer classes of {len(verdicts)} denoiser classes in diffusers {diffusers.__version__}: {', '.join(accepted)}"
        )
    missing = {family: cls for family, cls in FAMILIES.items() if cls not in accepted}
    assert not missing, {family: verdicts.get(cls) for family, cls in missing.items()}
    unbuilt = [name for name, v in verdicts.items() if v.startswith("not built") and name in FAMILIES.values()]
    assert not unbuilt
