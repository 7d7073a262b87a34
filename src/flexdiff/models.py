"""Loading a diffusion model: the built-in teacher ``builtin:digits`` or a local diffusers folder.

A :class:`DiffusionModel` is the denoiser the samplers call: the unmodified diffusers UNet, its noise schedule and
the shape of one sample (for latent models: one latent, and an optional decoder that turns latents into images).
Weights are read from safetensors only (never unpickled); nothing is downloaded. Pipeline folders with a VAE or a
text encoder (LDM, Stable Diffusion) are loaded by :mod:`flexdiff.pipelines`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from flexdiff.device import resolve_device
from flexdiff.errors import FlexdiffError
from flexdiff.noise import NoiseSchedule, initial_noise

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


def _rows(tensor: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of a per-entry tensor: one entry is broadcast, otherwise image ``i`` takes entry ``i mod P``."""
    if tensor.shape[0] in (1, n):
        return tensor.expand(n, *tensor.shape[1:]) if tensor.shape[0] == 1 else tensor
    return tensor[torch.arange(n, device=tensor.device) % tensor.shape[0]]


@dataclass
class Conditioning:
    """What a conditional UNet sees besides ``x_t`` and ``t``: text encoder states (with classifier-free guidance,
    Ho & Salimans 2022) or class labels.

    ``cond`` is (P, L, D) encoder states, ``labels`` (P,) class labels: one row per *entry* (a prompt or a label);
    image ``i`` of a run takes entry ``i mod P``. ``uncond`` (1 or P, L, D) is the negative prompt. With
    ``guidance_scale != 1`` both halves run in one UNet call on a batch of 2N (uncond first), so the partial-step
    cache holds both halves. ``seeds`` (one per entry, ``None`` = the run's seed + entry index) makes each entry's
    initial noise its own: see :meth:`noise`. ``description`` records where it came from (prompts, labels).
    """

    cond: torch.Tensor | None = None
    uncond: torch.Tensor | None = None
    guidance_scale: float = 1.0
    labels: torch.Tensor | None = None
    seeds: tuple[int | None, ...] | None = None
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def guided(self) -> bool:
        return self.uncond is not None and self.guidance_scale != 1.0

    @property
    def entries(self) -> int:
        """P: the number of prompts or labels images cycle through."""
        rows = self.cond if self.cond is not None else self.labels
        return 1 if rows is None else int(rows.shape[0])

    def select(self, start: int, stop: int) -> "Conditioning":
        """The conditioning of images ``start .. stop - 1`` of a run (one batch of ``generate``)."""
        if self.entries == 1:
            return self
        index = torch.arange(start, stop) % self.entries
        pick = lambda t: t if t is None or t.shape[0] == 1 else t[index.to(t.device)]  # noqa: E731
        return replace(self, cond=pick(self.cond), uncond=pick(self.uncond), labels=pick(self.labels))

    def noise(self, n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
        """Initial noise of ``n`` images when entries carry seeds.

        Entry ``e`` has seed ``s_e`` (its own, or ``seed + e``); its images ``e, e + P, e + 2P ...`` are the rows of
        ``torch.randn((k, C, H, W), generator=torch.Generator().manual_seed(s_e))`` — so with one entry and no seed of
        its own this is exactly :func:`flexdiff.noise.initial_noise`.
        """
        if self.seeds is None:
            return initial_noise(n, shape, seed)
        out = torch.empty((n, *shape))
        for e, own in enumerate(self.seeds[:n]):
            rows = range(e, n, len(self.seeds))
            out[list(rows)] = initial_noise(len(rows), shape, own if own is not None else seed + e)
        return out

    def key(self) -> str:
        """A short string that changes whenever anything that changes the images does (teacher-reference key)."""
        # the prompt file's path is left out (its prompts, seeds and encoder states are in): the same file elsewhere,
        # or named another way, must give the same key, or a resumed or shared study would be refused
        described = {k: v for k, v in self.description.items() if k != "prompt_file"}
        digest = hashlib.sha256(json.dumps({**described, "guidance": self.guidance_scale, "seeds": self.seeds}, sort_keys=True, default=str).encode())
        for t in (self.cond, self.uncond if self.guided else None, self.labels):
            digest.update(b"|" if t is None else t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        kind = "text" if self.cond is not None else "labels" if self.labels is not None else "none"
        return f"{kind} P={self.entries} guidance={self.guidance_scale:g} #{digest.hexdigest()[:16]}"


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
    #: latents -> images in [-1, 1] (the VAE of a latent pipeline); None for pixel models.
    decoder: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: prompts -> (P, L, D) encoder states (the text encoder of a text-to-image pipeline); None otherwise.
    prompt_encoder: Callable[[list[str]], torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def initial_noise(self, n: int, seed: int) -> torch.Tensor:
        """x_T of ``n`` images for ``seed``: :func:`flexdiff.noise.initial_noise`, or per entry when prompts carry seeds."""
        if self.conditioning is None:
            return initial_noise(n, self.sample_shape, seed)
        return self.conditioning.noise(n, self.sample_shape, seed)

    @contextmanager
    def for_images(self, start: int, stop: int) -> Iterator[None]:
        """Within the block, the model conditions images ``start .. stop - 1`` of the run (their prompts / labels)."""
        whole = self.conditioning
        if whole is None:
            yield
            return
        self.conditioning = whole.select(start, stop)
        try:
            yield
        finally:
            self.conditioning = whole

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """epsilon-hat(x_t, t) for a batch ``x`` (N, C, H, W) at integer timestep ``t``."""
        n, c = x.shape[0], self.conditioning
        if c is None:
            output = self.unet(x, torch.full((n,), int(t), device=x.device, dtype=torch.long)).sample
        elif c.cond is None:  # class-conditional UNet2DModel
            output = self.unet(x, torch.full((n,), int(t), device=x.device, dtype=torch.long), class_labels=_rows(c.labels, n)).sample
        elif not c.guided:
            output = self.unet(x, torch.full((n,), int(t), device=x.device), encoder_hidden_states=_rows(c.cond, n)).sample
        else:
            states = torch.cat([_rows(c.uncond, n), _rows(c.cond, n)])
            out_uncond, out_cond = self.unet(torch.cat([x, x]), torch.full((2 * n,), int(t), device=x.device), encoder_hidden_states=states).sample.chunk(2)
            output = out_uncond + c.guidance_scale * (out_cond - out_uncond)  # CFG, eq. 6 of Ho & Salimans
        return self.noise.to_eps(output, x, int(t))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON config as a dict; unreadable, non-UTF-8 (JSON is UTF-8) or non-object content is a one-line error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlexdiffError(path, "a readable UTF-8 JSON config", f"the file is corrupt ({exc.__class__.__name__}); restore it") from None
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


def _apply_student(unet: torch.nn.Module, folder: Path) -> None:
    """A ``flexdiff compress`` student (``flexdiff_student.json`` beside ``config.json``): slim the skeleton's blocks."""
    description = folder / "flexdiff_student.json"
    if description.is_file():
        from flexdiff.nas.space import apply_architecture

        apply_architecture(unet, _read_json(description), description)


def sample_shape(unet: torch.nn.Module, config_file: Path) -> tuple[int, int, int]:
    """(C, H, W) of one sample from a loaded UNet's ``in_channels`` and ``sample_size`` (an int or [H, W]).

    diffusers stores ``sample_size`` without checking it, so a bad value would only fail later as an unpacking or
    int() error; ``config_file`` is named in the one-line error instead.
    """
    size = unet.config.sample_size
    hw = [size, size] if isinstance(size, int) else list(size) if isinstance(size, (list, tuple)) else None
    if hw is None or len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in hw):
        raise FlexdiffError(f"{config_file}: sample_size {size!r}", "an integer >= 1 or a pair of integers [height, width]", "restore the resolution the UNet was trained at")
    return int(unet.config.in_channels), hw[0], hw[1]


def load_component(folder: Path, classes: tuple[str, ...], fix: str) -> torch.nn.Module:
    """A diffusers model (UNet, VAE) from ``config.json`` + ``diffusion_pytorch_model.safetensors``, strictly.

    ``classes`` are the accepted ``_class_name`` values; ``fix`` is the advice when the class is another.
    """
    import diffusers
    from safetensors.torch import load_file

    config = _read_json(folder / "config.json")
    class_name = config.get("_class_name")
    if class_name not in classes:
        raise FlexdiffError(folder / "config.json", f"a {' or '.join(classes)} (found {class_name!r})", fix)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickled = [p.name for p in folder.glob("*.bin")]
        hint = f"convert {pickled[0]} to safetensors (flexdiff never unpickles weights)" if pickled else "restore the weights file"
        raise FlexdiffError(weights, f"{class_name} weights in safetensors format", hint)
    try:
        module = getattr(diffusers, class_name).from_config(config)
        _apply_student(module, folder)
        state = load_file(str(weights))
        missing, unexpected = module.load_state_dict(state, strict=False)
    except FlexdiffError:
        raise
    except Exception as exc:  # diffusers raises many types on a bad config; one line for the user
        raise FlexdiffError(folder, f"a {class_name} config matching its safetensors weights", f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    if missing or unexpected:
        raise FlexdiffError(weights, f"weights for every parameter of the configured {class_name}", f"{len(missing)} missing, {len(unexpected)} unexpected keys; re-save the model")
    return module.eval().requires_grad_(False)


def load_model(spec: str | Path = "builtin:digits", device: str | torch.device = "auto") -> DiffusionModel:
    """Load ``builtin:digits`` or a local diffusers folder.

    Accepts a pipeline folder (``model_index.json``: DDPM / DDIM with a pixel ``UNet2DModel``, LDM with a latent
    ``UNet2DModel`` and a VAE, Stable Diffusion; see :mod:`flexdiff.pipelines`) or a bare ``UNet2DModel`` folder
    (``config.json`` and ``diffusion_pytorch_model.safetensors``, with an optional ``scheduler_config.json``;
    without one the DDPM linear schedule is assumed).
    """
    from flexdiff.pipelines import is_latent_or_text_pipeline, load_pipeline

    text = str(spec)
    if text.startswith("builtin:"):
        if text not in BUILTIN_MODELS:
            raise FlexdiffError(text, f"a built-in model in {{{', '.join(BUILTIN_MODELS)}}}", "or pass a diffusers folder")
        root = BUILTIN_MODELS[text]
    else:
        root = Path(text).expanduser()
        if not root.is_dir():
            raise FlexdiffError(text, "an existing diffusers model folder", "check the path, or use builtin:digits")
    if is_latent_or_text_pipeline(root):
        return load_pipeline(root, text, device)
    unet_dir, scheduler_file = _unet_folder(root)
    unet = load_component(
        unet_dir, ("UNet2DModel",),
        "a bare UNet folder must hold a pixel UNet2DModel; a UNet2DConditionModel needs its Stable Diffusion pipeline folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)",
    )
    scheduler_config = _read_json(scheduler_file) if scheduler_file else dict(DEFAULT_SCHEDULER_CONFIG)
    noise = NoiseSchedule.from_scheduler_config(scheduler_config, scheduler_file or "the default scheduler config")
    shape = sample_shape(unet, unet_dir / "config.json")
    unet.to(resolve_device(device))
    model = DiffusionModel(
        unet=unet,
        noise=noise,
        sample_shape=shape,
        name=text,
        path=root,
        scheduler_config=scheduler_config,
    )
    from flexdiff.pipelines import default_conditioning

    model.conditioning = default_conditioning(model)  # class-conditional UNet2DModel: labels round-robin
    return model


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
