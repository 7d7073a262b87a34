"""FLUX.1-dev and SD3-medium transformers at their real scale: parameters, full-step MACs and partial-step MACs at
every (F, B) branch, and for SD3-medium the CPU wall-clock of a full and of partial steps at a reduced resolution.

The transformers are built from their published configs (written out below) with random weights, on the meta device
for parameters and MACs (no memory, no download; cost does not depend on the weights, so this says nothing about
quality). Inputs: one 1024x1024 image (4096 image tokens) with its text tokens (Flux: 512 T5 tokens; SD3: 77 CLIP +
256 T5 = 333), batch 1. Partial steps run through flexdiff's own hooks (hooks/residual_step.py) after a full step
that filled their cache. Wall-clock: FLUX.1-dev's 12 B fp32 weights (48 GB) do not fit this machine's 24 GiB, so only
SD3-medium (2 B, 8 GB) is timed (``--wall``), at 256x256 (256 image tokens), best of ``--repeats`` rounds, fp32 on
the CPU: about 1.2 TMACs per call with its 333 text tokens, so tens of minutes on 2 cores.

    cd benchmarks && python transformer_cost.py --out results/transformer_cost.json          # MACs, meta device, ~4 min
    cd benchmarks && python transformer_cost.py --wall --out results/transformer_cost.json   # + SD3-medium CPU wall-clock
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from common import write_result

from flexdiff.backbones import layout_of
from flexdiff.hooks import apply_partial_steps, remove_partial_steps
from flexdiff.running.cost import count_macs

#: black-forest-labs/FLUX.1-dev, transformer/config.json (diffusers format), as published.
FLUX_DEV_CONFIG: dict[str, Any] = {
    "attention_head_dim": 128,
    "guidance_embeds": True,
    "in_channels": 64,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "patch_size": 1,
    "pooled_projection_dim": 768,
    "axes_dims_rope": [16, 56, 56],
}
#: stabilityai/stable-diffusion-3-medium-diffusers, transformer/config.json, as published.
SD3_MEDIUM_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "out_channels": 16,
    "pos_embed_max_size": 192,
}
#: the models' own model cards (rounded as published)
PUBLISHED_PARAMETERS = {"flux1-dev": "12 B", "sd3-medium": "2 B"}


def flux_inputs(device: torch.device | str, tokens: int = 4096, text: int = 512) -> tuple[torch.Tensor, dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((1, tokens, 64), generator=g).to(device)
    return x, {
        "timestep": torch.tensor([0.5], device=device),
        "guidance": torch.tensor([3.5], device=device),
        "encoder_hidden_states": torch.randn((1, text, 4096), generator=g).to(device),
        "pooled_projections": torch.randn((1, 768), generator=g).to(device),
        "img_ids": torch.zeros((tokens, 3), device=device),
        "txt_ids": torch.zeros((text, 3), device=device),
    }


def sd3_inputs(device: torch.device | str, latent: int = 128, text: int = 333) -> tuple[torch.Tensor, dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((1, 16, latent, latent), generator=g).to(device)
    return x, {
        "timestep": torch.tensor([500.0], device=device),
        "encoder_hidden_states": torch.randn((1, text, 4096), generator=g).to(device),
        "pooled_projections": torch.randn((1, 2048), generator=g).to(device),
    }


def build(name: str, device: str) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    with torch.device(device):
        module = FluxTransformer2DModel(**FLUX_DEV_CONFIG) if name == "flux1-dev" else SD3Transformer2DModel(**SD3_MEDIUM_CONFIG)
    return module.eval().requires_grad_(False)


@torch.no_grad()
def step_costs(module: torch.nn.Module, x: torch.Tensor, kwargs: dict[str, Any], measure: Any, branches: list[int] | None = None) -> tuple[Any, dict[str, Any]]:
    """``measure(fn)`` of a full step and of a partial step at each branch (after a full step that filled its cache)."""
    layout, state = apply_partial_steps(module)
    try:
        state.enter_full(range(0))
        full = measure(lambda: module(x, **kwargs))
        partial = {}
        for b in layout.branches if branches is None else [layout.branches[i] for i in branches]:
            state.enter_full(b.deep)
            module(x, **kwargs)
            state.enter_partial(b)
            partial[b.label] = measure(lambda: module(x, **kwargs))
    finally:
        state.reset()
        remove_partial_steps(module)
    return full, partial


def best_of(repeats: int) -> Any:
    def measure(fn: Any) -> float:
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return min(runs)

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--wall", action="store_true", help="also time SD3-medium on this CPU at 256x256 (about 1 s of compute per MMAC-second: tens of minutes on 2 cores)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/transformer_cost.json"))
    args = parser.parse_args()

    models = {}
    for name, inputs in (("flux1-dev", flux_inputs), ("sd3-medium", sd3_inputs)):
        module = build(name, "meta")
        x, kwargs = inputs("meta")
        full, partial = step_costs(module, x, kwargs, count_macs)
        layout = layout_of(module)
        models[name] = {
            "parameters": sum(p.numel() for p in module.parameters()),
            "published_parameters": PUBLISHED_PARAMETERS[name],
            "blocks": len(layout.units),
            "full_step_macs": full,
            "partial_step_macs": {k: {"macs": v, "share_of_full": round(v / full, 4)} for k, v in partial.items()},
        }
        print(
            f"{name}: {models[name]['parameters']:,} parameters, {len(layout.units)} blocks, full step {full / 1e12:.2f} TMACs, {len(partial)} branches "
            f"(F1B0 {partial['F1B0'] / full:.1%} of a full step)"
        )
        del module

    if not args.wall:
        write_result(
            args.out,
            {
                "resolution": "1024x1024",
                "batch": 1,
                "models": models,
                "wall": "not measured in this run (--wall); FLUX.1-dev's 48 GB of fp32 weights do not fit in this machine's 24 GiB",
            },
        )
        return
    # SD3-medium on the CPU at 256x256: wall-clock of a full step and of a few branches, against their MACs share
    module = build("sd3-medium", "cpu")
    x, kwargs = sd3_inputs("cpu", latent=32)
    labels = ["F1B0", "F2B0", "F4B0", "F8B0", "F4B4", "F12B0", "F8B8"]
    layout = layout_of(module)
    indices = [b.index for b in layout.branches if b.label in labels]
    macs_full, macs_partial = step_costs(module, x, kwargs, count_macs, indices)
    torch.set_grad_enabled(False)
    step_costs(module, x, kwargs, lambda fn: fn(), indices[:1])  # warm-up
    wall_full, wall_partial = step_costs(module, x, kwargs, best_of(args.repeats), indices)
    models["sd3-medium"]["cpu_wall_256px"] = {
        "dtype": "float32",
        "image_tokens": 256,
        "full_step_seconds": round(wall_full, 3),
        "partial": {
            k: {"seconds": round(v, 3), "wall_share": round(v / wall_full, 4), "macs_share": round(macs_partial[k] / macs_full, 4)}
            for k, v in wall_partial.items()
        },
    }
    print(
        f"sd3-medium 256px CPU: full {wall_full:.2f} s; "
        + ", ".join(f"{k} {v / wall_full:.1%} (MACs {macs_partial[k] / macs_full:.1%})" for k, v in wall_partial.items())
    )
    write_result(
        args.out,
        {
            "resolution": "1024x1024 (MACs); 256x256 (SD3-medium wall-clock)",
            "batch": 1,
            "models": models,
            "flux1_dev_wall": "not measured: 48 GB of fp32 weights do not fit in this machine's 24 GiB",
        },
    )


if __name__ == "__main__":
    main()
