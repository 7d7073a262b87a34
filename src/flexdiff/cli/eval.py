"""``flexdiff eval``: FID between two image sets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flexdiff.cli._app import CLIP, DEVICE, FEATURE_WEIGHTS, FEATURES, INCEPTION, command, features_path
from flexdiff.errors import FlexdiffError


@command
def eval(  # noqa: A001 - the command is called eval
    samples: str = typer.Option(..., "--samples", help=".npz, image folder or builtin:digits-train|heldout"),
    reference: str = typer.Option("builtin:digits-heldout", "--reference", help="reference image set"),
    features: str = FEATURES,
    n: int | None = typer.Option(None, "--n", help="use only the first N images of --samples"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    clip: Path | None = CLIP,
    inception: Path | None = INCEPTION,
    feature_weights: str | None = FEATURE_WEIGHTS,
    device: str = DEVICE,
) -> None:
    """FID between two image sets (.npz, image folders or builtin:digits-train / builtin:digits-heldout)."""
    from flexdiff.data import load_images
    from flexdiff.measuring.features import get_feature_network
    from flexdiff.measuring.metrics import frechet_distance
    from flexdiff.utils.device import resolve_device

    net = get_feature_network(features, resolve_device(device), features_path(features, clip, inception, feature_weights))
    if n is not None and n < 2:
        raise FlexdiffError(n, "--n >= 2 (FID needs two images per side)", "pass a larger --n or drop it")
    a, b = load_images(samples)[:n], load_images(reference)
    if a.shape[1:] != b.shape[1:]:  # the feature network would resize either, and FID would measure the mismatch
        raise FlexdiffError(
            f"--samples {samples} (images {tuple(a.shape[1:])})",
            f"images of the reference's shape {tuple(b.shape[1:])} ({reference})",
            "compare sets of the same kind: resize or convert the samples, or pass a --reference of their shape",
        )
    value = frechet_distance(net(b), net(a))
    result = {"fid": round(value, 4), "n_samples": len(a), "n_reference": len(b), "features": features}
    print(json.dumps(result) if as_json else f"FID {value:.3f}  ({len(a)} samples vs {len(b)} reference, {features} features)")
