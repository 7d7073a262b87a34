"""``flexdiff train`` and ``flexdiff train-features``: the built-in teacher and feature network, from a seed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from flexdiff.cli._app import DEVICE, SEED, command


def _train_into(out: Path, work: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Check ``out`` before any work, train into a hidden sibling folder and move what training wrote into ``out``
    only on success: an earlier model, and any other file in ``out`` (a model card), is never lost."""
    from flexdiff.training import check_model_out
    from flexdiff.utils.io import folder_as_unit

    check_model_out(out)
    with folder_as_unit(out) as tmp:
        return work(tmp)


@command
def train(
    out: Path = typer.Option(..., "--out", help="folder for the trained model (diffusers pipeline format)"),
    seed: int = SEED,
    minutes: float | None = typer.Option(None, "--minutes", help="wall-time cap (> 0); the step count reached is recorded"),
    steps: int = typer.Option(8000, "--steps", help="optimizer steps; the learning rate decays to zero over them (with --minutes: whichever ends first)"),
    data: str = typer.Option("builtin:digits-train", "--data", help="training images (.npz, folder or builtin set)"),
    device: str = DEVICE,
    arch: str = typer.Option(
        "unet", "--arch", help="unet: the DDPM UNet of builtin:digits; dit: the rectified-flow DiT of builtin:digits-dit (class-conditional)"
    ),
    lr: float = typer.Option(None, "--lr", help="peak learning rate (default: 1e-3 for unet, 5e-4 for dit)"),
) -> None:
    """Train a built-in digits teacher (DDPM UNet or rectified-flow DiT, EMA weights) reproducibly from a seed."""
    from flexdiff.data import load_images
    from flexdiff.training import TeacherRecipe, train_teacher
    from flexdiff.utils.device import resolve_device
    from flexdiff.utils.progress import progress_bar

    recipe = TeacherRecipe(seed=seed, steps=steps, minutes=minutes, arch=arch, lr=lr)  # checked before any work
    images, labels = load_images(data), None
    recipe.check_images(images, f"--data {data}")
    if data == "builtin:digits-train":
        from flexdiff.data import digits

        labels = digits("train")[1]
    target = resolve_device(device)

    def work(tmp: Path) -> dict[str, Any]:
        # the bar starts only once _train_into has accepted --out: a refused --out is the only stderr line
        with progress_bar("training teacher", steps) as advance:
            return train_teacher(tmp, recipe, images, on_step=lambda s, loss: advance(1, f"loss {loss:.4f}"), device=target, labels=labels)

    print(json.dumps(_train_into(out, work)))


@command
def train_features(
    out: Path = typer.Option(None, "--out", help="safetensors file (default: the packaged digits classifier)"),
    seed: int = SEED,
    epochs: int = typer.Option(40, "--epochs", help="training epochs (>= 1)"),
) -> None:
    """Train the `digits` feature network (a small CNN classifier) and report its held-out accuracy."""
    from flexdiff.measuring.features import DIGITS_CLASSIFIER
    from flexdiff.training import check_classifier_args, train_classifier
    from flexdiff.utils.progress import progress_bar

    target = out or DIGITS_CLASSIFIER
    check_classifier_args(target, epochs)  # before the progress bar, so a refusal is the only stderr line
    with progress_bar("training digits classifier", epochs) as advance:
        stats = train_classifier(target, seed=seed, epochs=epochs, on_epoch=lambda e, loss: advance(1, f"loss {loss:.4f}"))
    print(json.dumps(stats))
