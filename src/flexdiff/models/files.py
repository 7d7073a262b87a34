"""Reading diffusers model folders strictly: configs, safetensors weights (never unpickled), sample shapes."""

from __future__ import annotations

from pathlib import Path

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.models.model import WEIGHTS_NAME
from flexdiff.models.student import apply_student
from flexdiff.utils.io import read_json_object


def read_config(path: Path) -> dict:
    """A JSON config as a dict; unreadable, non-UTF-8 or non-object content is a one-line error."""
    return read_json_object(path, "a readable UTF-8 JSON config", "the file is corrupt; restore it")


#: the largest sample side a config may declare (SD's latents are 64 or 128; pixel models rarely exceed 1024): a
#: larger one is a corrupt config, and one sample would not fit the machine
MAX_SAMPLE_SIDE = 8192


def sample_shape(unet: torch.nn.Module, config_file: Path) -> tuple[int, int, int]:
    """(C, H, W) of one sample from a loaded UNet's ``in_channels`` and ``sample_size`` (an int or [H, W]).

    diffusers stores ``sample_size`` without checking it, so a bad value would only fail later as an unpacking or
    int() error; ``config_file`` is named in the one-line error instead.
    """
    size = unet.config.sample_size
    hw = [size, size] if isinstance(size, int) else list(size) if isinstance(size, (list, tuple)) else None
    if hw is None or len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SAMPLE_SIDE for v in hw):
        raise FlexdiffError(
            f"{config_file}: sample_size {size!r}",
            f"an integer in [1, {MAX_SAMPLE_SIDE}] or a pair of them [height, width]",
            "restore the resolution the UNet was trained at",
        )
    return int(unet.config.in_channels), hw[0], hw[1]


def weights_name(variant: str | None = None) -> str:
    """``diffusion_pytorch_model.safetensors``, or ``diffusion_pytorch_model.<variant>.safetensors`` (diffusers' naming)."""
    return WEIGHTS_NAME if not variant else WEIGHTS_NAME.replace(".safetensors", f".{variant}.safetensors")


def load_component(folder: Path, classes: tuple[str, ...], fix: str, *, torch_dtype: torch.dtype | None = None, variant: str | None = None) -> torch.nn.Module:
    """A diffusers model (UNet, VAE) from ``config.json`` + ``diffusion_pytorch_model[.<variant>].safetensors``, strictly.

    ``classes`` are the accepted ``_class_name`` values; ``fix`` is the advice when the class is another.
    ``torch_dtype`` casts the loaded module (as diffusers' ``from_pretrained(torch_dtype=...)``).
    """
    import diffusers
    from safetensors.torch import load_file

    config = read_config(folder / "config.json")
    class_name = config.get("_class_name")
    if class_name not in classes:
        raise FlexdiffError(folder / "config.json", f"a {' or '.join(classes)} (found {class_name!r})", fix)
    weights = folder / weights_name(variant)
    if variant and not weights.is_file() and (folder / WEIGHTS_NAME).is_file():
        weights = folder / WEIGHTS_NAME  # a component without the variant loads its plain weights, as diffusers' pipelines do
    if not weights.is_file():
        pickled = [p.name for p in folder.glob("*.bin")]
        others = sorted(p.name for p in folder.glob("diffusion_pytorch_model*.safetensors"))
        hint = (
            f"convert {pickled[0]} to safetensors (flexdiff never unpickles weights)"
            if pickled
            else f"pick the variant of one of {others}"
            if others
            else "restore the weights file"
        )
        raise FlexdiffError(weights, f"{class_name} weights in safetensors format", hint)
    try:
        module = getattr(diffusers, class_name).from_config(config)
        apply_student(module, folder)
        state = load_file(str(weights))
        missing, unexpected = module.load_state_dict(state, strict=False)
    except FlexdiffError:
        raise
    except Exception as exc:  # diffusers raises many types on a bad config; one line for the user
        raise FlexdiffError(
            folder,
            f"a {class_name} config matching its safetensors weights",
            f"the folder is inconsistent ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})",
        ) from None
    if missing or unexpected:
        raise FlexdiffError(
            weights,
            f"weights for every parameter of the configured {class_name}",
            f"{len(missing)} missing, {len(unexpected)} unexpected keys; re-save the model",
        )
    if torch_dtype is not None:
        torch.nn.Module.to(module, torch_dtype)  # diffusers' own .to warns about keep-in-fp32 modules these classes do not have
    return module.eval().requires_grad_(False)


def safetensors_only(folder: Path, variant: str | None = None) -> str | None:
    """A transformers component folder must hold safetensors weights (flexdiff never unpickles weights). Returns the
    variant to load: ``variant`` where the folder has it, else None (its plain weights, as diffusers falls back)."""
    for chosen in ([variant] if variant else []) + [None]:
        name = f"model.{chosen}.safetensors" if chosen else "model.safetensors"
        if (folder / name).is_file() or (folder / f"{name}.index.json").is_file():
            return chosen
    name = f"model.{variant}.safetensors" if variant else "model.safetensors"
    pickled = sorted(p.name for p in folder.glob("*.bin"))
    hint = f"convert {pickled[0]} to safetensors (flexdiff never unpickles weights)" if pickled else "restore the weights file, or pick another variant"
    raise FlexdiffError(folder / name, "transformers weights in safetensors format", hint)
