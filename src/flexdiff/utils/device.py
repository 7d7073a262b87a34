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
