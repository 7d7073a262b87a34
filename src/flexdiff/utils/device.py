"""``--device auto|cpu|cuda``: auto picks CUDA when present; CPU is the tested path."""

from __future__ import annotations

import torch

from flexdiff.errors import FlexdiffError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FlexdiffError(device, "a machine with a CUDA GPU for --device cuda", "use --device cpu or auto")
        return torch.device(name)
    raise FlexdiffError(device, "a device auto, cpu or cuda", "pick one of those")


#: ``--dtype`` names -> torch dtypes (diffusers' ``torch_dtype``).
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``torch_dtype`` as a dtype: None (the weights as stored), a torch dtype, or one of :data:`DTYPES`' names."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise FlexdiffError(f"--dtype {dtype}", f"one of {', '.join(DTYPES)}", "pick one, or leave it out for the weights' own dtype") from None
