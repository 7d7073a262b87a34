"""Phase 1: record the teacher's block inputs and outputs on noised training images at random timesteps.

Each recorded row is one ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (DDPM forward process, Ho et al. 2020 eq. 4)
from a training image, a uniform timestep and Gaussian noise, all drawn from the run's seed; the teacher's forward
pass on it is captured block by block (:func:`flexdiff.nas.blocks.capture`). The first ``n_train`` rows train the
block supernets, the last ``n_val`` rows score their candidates.

Stored as float16 (half the memory and disk; the relative error 1e-3 is far below the distillation losses that
matter), in one safetensors file; ``scale.<key>`` holds E[out^2] of every captured tensor over the training rows,
the normaliser of :func:`flexdiff.nas.blocks.relative_loss`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from flexdiff.models import DiffusionModel
from flexdiff.models.student import block_specs
from flexdiff.nas.blocks import capture
from flexdiff.utils.io import atomic_path, read_tensors


@dataclass
class Records:
    """Captured teacher activations: ``data[key]`` is ``(n_train + n_val, ...)`` float16."""

    data: dict[str, torch.Tensor]
    n_train: int
    n_val: int

    def rows(self, index: torch.Tensor | slice, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The rows ``index`` of every key, as float32 (the dtype the blocks compute in) on ``device`` (the records
        stay on the CPU; the blocks may be on a GPU)."""
        return {k: v[index].to(device=device, dtype=torch.float32) for k, v in self.data.items() if not k.startswith("scale.")}

    def scales(self, keys: list[str]) -> list[float]:
        return [float(self.data[f"scale.{k}"]) for k in keys]

    @property
    def val(self) -> slice:
        return slice(self.n_train, self.n_train + self.n_val)

    def save(self, path: Path, metadata: dict[str, str]) -> None:
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            save_file(
                {k: v.contiguous() for k, v in self.data.items()},
                str(tmp),
                metadata={**metadata, "n_train": str(self.n_train), "n_val": str(self.n_val), "names": json.dumps(sorted(self.data))},
            )

    @classmethod
    def read(cls, path: Path, key: str, n_train: int, n_val: int) -> tuple["Records | None", str]:
        """The records at ``path`` when the file is whole and was recorded under ``key`` for ``n_train + n_val`` rows;
        else None and what is wrong (unreadable, truncated, another key, rows or dtypes that do not fit): a resumed
        run records again instead of failing on, or trusting, a damaged file."""
        data, meta, why = read_tensors(path)
        if why:
            return None, why
        if meta.get("key") != key:
            return None, "recorded for other settings"
        if (meta.get("n_train"), meta.get("n_val")) != (str(n_train), str(n_val)):
            return None, f"{meta.get('n_train')} + {meta.get('n_val')} rows recorded, expected {n_train} + {n_val}"
        bad = sorted(
            k
            for k, v in data.items()
            if not v.is_floating_point() or not torch.isfinite(v).all() or (not k.startswith("scale.") and (v.ndim < 1 or v.shape[0] != n_train + n_val))
        )
        if not data or bad:
            return None, f"tensors of the wrong shape or values: {', '.join(bad[:3]) or 'none at all'}"
        features = {k for k in data if not k.startswith("scale.")}
        unpaired = sorted(features ^ {k[len("scale.") :] for k in data if k.startswith("scale.")})
        if unpaired or ("names" in meta and meta["names"] != json.dumps(sorted(data))):
            return None, f"tensors of other names than recorded: {', '.join(unpaired[:3]) or 'renamed'}"
        return cls(data, n_train, n_val), "whole"


def noised_rows(model: DiffusionModel, images: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` recorded inputs ``(x_t (n, C, H, W), t (n,))`` of seed ``seed``: image, timestep, noise per row."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(images), (n,), generator=gen)
    t = torch.randint(0, model.noise.num_train_timesteps, (n,), generator=gen)
    eps = torch.randn((n, *model.sample_shape), generator=gen)
    abar = model.noise.alphas_cumprod[t].view(-1, 1, 1, 1)
    return abar.sqrt() * images[idx] + (1 - abar).sqrt() * eps, t


@torch.no_grad()
def record_teacher(
    model: DiffusionModel,
    images: torch.Tensor,
    n_train: int,
    n_val: int,
    seed: int,
    batch_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> Records:
    """Run the teacher on ``n_train + n_val`` noised images (drawn from ``seed``) and capture every block."""
    unet, specs = model.denoiser, block_specs(model.denoiser)
    n = n_train + n_val
    x_t, t = noised_rows(model, images, n, seed)
    chunks: dict[str, list[torch.Tensor]] = {}
    device = model.device
    with capture(unet, specs) as live:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            unet(x_t[start:stop].to(device), t[start:stop].to(device))
            for key, value in live.items():
                chunks.setdefault(key, []).append(value.detach().to("cpu", torch.float16))
            if on_batch is not None:
                on_batch(stop - start)
    data = {k: torch.cat(v) for k, v in chunks.items()}
    for key in list(data):
        data[f"scale.{key}"] = data[key][:n_train].float().pow(2).mean().clamp_min(1e-8).reshape(1)
    return Records(data, n_train, n_val)
