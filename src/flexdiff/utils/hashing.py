"""Identities of weights and settings: what every cache key (teacher reference, compress phases) is built from."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes: identifies the weights, not the file they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # reshape: 0-d tensors too
    return digest.hexdigest()


def digest(*parts: Any, length: int = 16) -> str:
    """A short sha256 of JSON-encoded ``parts`` (objects JSON cannot encode by their ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:length]
