"""Loading a diffusion model: the built-in teacher ``builtin:digits`` or a local diffusers folder.

A :class:`DiffusionModel` is the denoiser the samplers call: the unmodified diffusers UNet, its noise schedule and
the shape of one sample. Weights are read from safetensors only (never unpickled); nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flexdiff.device import resolve_device
from flexdiff.errors import FlexdiffError
from flexdiff.noise import NoiseSchedule

ASSETS = Path(__file__).parent / "assets"
BUILTIN_MODELS = {"builtin:digits": ASSETS / "digits-teacher"}
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
#: The noise schedule assumed when a bare UNet folder carries no scheduler config (DDPM, Ho et al. 2020).
DEFAULT_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "clip_sample": True,
}


@dataclass
class Conditioning:
    """Encoder states for a ``UNet2DConditionModel``, with classifier-free guidance (Ho & Salimans 2022).

    ``cond`` / ``uncond`` are (1 or N, L, D). With ``guidance_scale != 1`` both halves run in one UNet call on a
    batch of 2N (uncond first), so the partial-step cache holds both halves.
    """

    cond: torch.Tensor
    uncond: torch.Tensor | None = None
    guidance_scale: float = 1.0

    @property
    def guided(self) -> bool:
        return self.uncond is not None and self.guidance_scale != 1.0


@dataclass
class DiffusionModel:
    """A UNet that predicts noise, with everything the samplers need to drive it."""

    unet: torch.nn.Module
    noise: NoiseSchedule
    sample_shape: tuple[int, int, int]  # (C, H, W) of one sample
    name: str
    path: Path | None = None
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    conditioning: Conditioning | None = None

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """epsilon-hat(x_t, t) for a batch ``x`` (N, C, H, W) at integer timestep ``t``."""
        n, c = x.shape[0], self.conditioning
        if c is None:
            output = self.unet(x, torch.full((n,), int(t), device=x.device, dtype=torch.long)).sample
        elif not c.guided:
            output = self.unet(x, torch.full((n,), int(t), device=x.device), encoder_hidden_states=c.cond.expand(n, -1, -1)).sample
        else:
            states = torch.cat([c.uncond.expand(n, -1, -1), c.cond.expand(n, -1, -1)])
            out_uncond, out_cond = self.unet(torch.cat([x, x]), torch.full((2 * n,), int(t), device=x.device), encoder_hidden_states=states).sample.chunk(2)
            output = out_uncond + c.guidance_scale * (out_cond - out_uncond)  # CFG, eq. 6 of Ho & Salimans
        return self.noise.to_eps(output, x, int(t))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FlexdiffError(path, "a readable JSON config", f"the file is corrupt ({exc.__class__.__name__}); restore it") from None
    if not isinstance(data, dict):
        raise FlexdiffError(path, "a JSON object", "restore the config file")
    return data


def _unet_folder(root: Path) -> tuple[Path, Path | None]:
    """(UNet folder, scheduler config file or None) for a pipeline folder or a bare model folder."""
    if (root / "unet" / "config.json").is_file():
        sched = root / "scheduler" / "scheduler_config.json"
        return root / "unet", sched if sched.is_file() else None
    if (root / "config.json").is_file():
        sched = root / "scheduler_config.json"
        return root, sched if sched.is_file() else None
    raise FlexdiffError(
        root,
        "a diffusers folder: a pipeline with unet/config.json, or a model with config.json",
        "point --model to the folder that holds model_index.json or config.json, or use builtin:digits",
    )


def load_model(spec: str | Path = "builtin:digits", device: str | torch.device = "auto") -> DiffusionModel:
    """Load ``builtin:digits`` or a local diffusers folder holding a ``UNet2DModel``.

    Accepts a pipeline folder (``unet/`` and ``scheduler/``) or a bare model folder (``config.json`` and
    ``diffusion_pytorch_model.safetensors``, with an optional ``scheduler_config.json``; without one the DDPM
    linear schedule is assumed).
    """
    from diffusers import UNet2DModel
    from safetensors.torch import load_file

    text = str(spec)
    if text.startswith("builtin:"):
        if text not in BUILTIN_MODELS:
            raise FlexdiffError(text, f"a built-in model in {{{', '.join(BUILTIN_MODELS)}}}", "or pass a diffusers folder")
        root = BUILTIN_MODELS[text]
    else:
        root = Path(text).expanduser()
        if not root.is_dir():
            raise FlexdiffError(text, "an existing diffusers model folder", "check the path, or use builtin:digits")
    unet_dir, scheduler_file = _unet_folder(root)
    config = _read_json(unet_dir / "config.json")
    class_name = config.get("_class_name")
    if class_name != "UNet2DModel":
        raise FlexdiffError(
            unet_dir / "config.json",
            f"a UNet2DModel (found {class_name!r})",
            "this version of flexdiff samples pixel UNet2DModel folders; pass such a folder",
        )
    weights = unet_dir / WEIGHTS_NAME
    if not weights.is_file():
        pickled = [p.name for p in unet_dir.glob("*.bin")]
        hint = f"convert {pickled[0]} to safetensors (flexdiff never unpickles weights)" if pickled else "restore the weights file"
        raise FlexdiffError(weights, "UNet weights in safetensors format", hint)
    try:
        unet = UNet2DModel.from_config(config)
        state = load_file(str(weights))
        missing, unexpected = unet.load_state_dict(state, strict=False)
    except Exception as exc:  # diffusers raises many types on a bad config; one line for the user
        raise FlexdiffError(unet_dir, "a UNet2DModel config matching its safetensors weights", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    if missing or unexpected:
        raise FlexdiffError(weights, "weights for every parameter of the configured UNet", f"{len(missing)} missing, {len(unexpected)} unexpected keys; re-save the model")
    scheduler_config = _read_json(scheduler_file) if scheduler_file else dict(DEFAULT_SCHEDULER_CONFIG)
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    unet.eval().requires_grad_(False).to(resolve_device(device))
    return DiffusionModel(
        unet=unet,
        noise=NoiseSchedule.from_scheduler_config(scheduler_config),
        sample_shape=(int(unet.config.in_channels), int(h), int(w)),
        name=text,
        path=root,
        scheduler_config=scheduler_config,
    )


def save_model(model_or_unet: DiffusionModel | torch.nn.Module, out: Path, scheduler_config: dict[str, Any] | None = None) -> None:
    """Save a UNet as a diffusers pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``), safetensors only."""
    unet = model_or_unet.unet if isinstance(model_or_unet, DiffusionModel) else model_or_unet
    if scheduler_config is None:
        scheduler_config = model_or_unet.scheduler_config if isinstance(model_or_unet, DiffusionModel) else DEFAULT_SCHEDULER_CONFIG
    unet.save_pretrained(out / "unet", safe_serialization=True)
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2) + "\n")
    index = {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", scheduler_config.get("_class_name", "DDPMScheduler")]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
