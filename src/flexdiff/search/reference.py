"""rFID's reference: the teacher's images and features for fixed seeds, cached on disk under a full key.

rFID (Flexiffusion) is the Fréchet distance between a candidate schedule's images and the *teacher's* images (all
steps full) from the same initial noise. The teacher's side is computed once and cached; the cache records
everything that determines it (UNet weights and noise schedule, decoder weights and latent scale, conditioning —
prompts, guidance, negative prompt, labels, seeds, text encoder states —, sampler, teacher timesteps, seed, n, feature
network and its weights) and is rebuilt, never silently reused, when any of it differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from flexdiff.either_loop import teacher_images
from flexdiff.measuring.features import FeatureNetwork
from flexdiff.models import DiffusionModel
from flexdiff.samplers import PIPELINE
from flexdiff.utils.hashing import digest, weights_hash
from flexdiff.utils.io import atomic_path, read_tensors

CACHE_NAME = "teacher_cache.safetensors"
#: the teacher's run (every active step's output) beside the cache, under its key: a ``--reuse`` search's (flexdiff/trajectory.py)
TEACHER_RUN = "teacher_run.safetensors"
#: the status of a cache file that is not whole (unreadable, truncated, wrong tensors): rebuilt, with a warning
DAMAGED = "rebuilt: the cache file was damaged"


def model_hash(model: DiffusionModel) -> str:
    """The UNet's weights and the noise schedule they are sampled with (alpha-bars, prediction type, x0 clipping): a
    changed scheduler_config.json changes the teacher's images as surely as other weights do."""
    noise = model.noise
    digest = hashlib.sha256(weights_hash(model.denoiser).encode())
    digest.update(noise.identity())
    return digest.hexdigest()


def decoder_hash(decoder: torch.nn.Module) -> str:
    """A latent decoder's weights and its latent scale (``scaling_factor`` / ``shift_factor`` of the VAE config)."""
    scale = f"|{getattr(decoder, 'scaling_factor', 1.0)}|{getattr(decoder, 'shift_factor', 0.0)}"
    return hashlib.sha256((weights_hash(decoder) + scale).encode()).hexdigest()


def reference_sampler(model: DiffusionModel, sampler: str) -> str:
    """The key's sampler: its name, or for the pipeline's loop the scheduler class and a digest of its whole config
    (another spacing, offset or solver order makes other images)."""
    if sampler != PIPELINE:
        return sampler
    return f"{PIPELINE}:{model.scheduler_class}:{digest(model.scheduler_config, length=12)}"


@dataclass(frozen=True)
class ReferenceKey:
    """Everything that determines the teacher's reference images and features."""

    model: str  # model_hash: the UNet's weights and its noise schedule
    sampler: str
    timesteps: tuple[int, ...]
    seed: int
    n: int
    features: str  # the feature network's key (name, and its weights for clip / inception)
    decoder: str = ""  # decoder_hash of a latent model's decoder (VAE weights and latent scale); "" for pixel models
    conditioning: str = ""  # Conditioning.key(): prompts, guidance, labels, seeds; "" for unconditional models

    def to_json(self) -> str:
        """Canonical JSON; empty decoder / conditioning are left out, so keys of pixel models read as before."""
        data = {k: v for k, v in asdict(self).items() if not (k in ("decoder", "conditioning") and v == "")}
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class TeacherReference:
    key: ReferenceKey
    noise: torch.Tensor  # (n, C, H, W): x_T for seed `key.seed`
    images: torch.Tensor  # (n, C, H, W): the teacher's outputs in [-1, 1]
    features: torch.Tensor  # (n, D) float64


def read_reference(path: Path, key: ReferenceKey) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, str]:
    """The cached ``(images, features)`` at ``path`` when the file is whole and made under ``key``, else None and why
    it will be rebuilt: a key field that differs, or what is wrong with the file (unreadable, truncated, tensors
    missing or of the wrong shape or dtype). A cache is never trusted unchecked, and a bad one is never fatal."""
    tensors, meta, why = read_tensors(path)
    if why:
        return None, f"{DAMAGED} ({why})"
    try:
        stored = json.loads(meta.get("key", "{}"))
    except ValueError:
        return None, f"{DAMAGED} (its key is not JSON)"
    expected = json.loads(key.to_json())
    if stored != expected:
        differs = [k for k, v in expected.items() if not isinstance(stored, dict) or stored.get(k) != v]
        return None, f"rebuilt: {', '.join(differs) or 'format'} differs"
    if set(tensors) != {"images", "features"}:
        return None, f"{DAMAGED} (tensors {sorted(tensors)}, expected images and features)"
    images, features = tensors["images"], tensors["features"]
    if images.ndim != 4 or images.shape[0] != key.n or not images.is_floating_point():
        return None, f"{DAMAGED} (images of shape {tuple(images.shape)}, {images.dtype}; expected ({key.n}, C, H, W) floats)"
    if features.ndim != 2 or features.shape[0] != key.n or not features.is_floating_point() or not torch.isfinite(features).all():
        return None, f"{DAMAGED} (features of shape {tuple(features.shape)}, {features.dtype}; expected ({key.n}, D) finite floats)"
    return (images, features), "reused"


def reference_key(model: DiffusionModel, sampler: str, timesteps: list[int], seed: int, n: int, net: FeatureNetwork) -> ReferenceKey:
    """The key of the teacher reference these settings make (hashes the weights: compute it once)."""
    return ReferenceKey(
        model_hash(model),
        reference_sampler(model, sampler),
        tuple(int(t) for t in timesteps),
        seed,
        n,
        net.key,
        decoder=decoder_hash(model.decoder) if isinstance(model.decoder, torch.nn.Module) else "",
        conditioning=model.conditioning.key() if model.conditioning is not None else "",
    )


def load_or_build_reference(
    model: DiffusionModel,
    sampler: str,
    timesteps: list[int],
    seed: int,
    n: int,
    net: FeatureNetwork,
    cache_dir: Path | None,
    batch_size: int | None = None,
    on_step: object = None,
    build: bool = True,
    key: ReferenceKey | None = None,
    images_of: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[TeacherReference | None, str]:
    """The teacher reference from ``cache_dir`` if its key matches, else generated (and cached). Returns (ref, status).

    ``status`` is ``"reused"``, ``"built"`` or ``"rebuilt: <field> differs"``. ``build=False`` (a dry run): ``None``
    and the status it would have, instead of generating. ``key``: :func:`reference_key` of these settings, when the
    caller has it already. ``images_of(noise)``: how the teacher's images are made when they must be (by default
    :func:`~flexdiff.either_loop.teacher_images`; a ``--reuse`` search runs the teacher's plan and keeps its steps).
    """
    from safetensors.torch import save_file

    key = key or reference_key(model, sampler, timesteps, seed, n, net)
    noise = model.initial_noise(n, seed)
    path = cache_dir / CACHE_NAME if cache_dir is not None else None
    status = "built"
    if path is not None and path.is_file():
        cached, status = read_reference(path, key)
        if cached is not None:
            return TeacherReference(key, noise, *cached), "reused"
    if not build:
        return None, status
    if images_of is not None:
        images = images_of(noise)
    else:
        images = teacher_images(model, noise, timesteps, sampler, seed=seed, batch_size=batch_size, on_step=on_step)
    features = net(images)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"images": images.contiguous(), "features": features.contiguous()}, str(tmp), metadata={"key": key.to_json()})
    return TeacherReference(key, noise, images, features), status
