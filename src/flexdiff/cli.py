"""The ``flexdiff`` command line. Every bad input ends in one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from flexdiff.errors import FlexdiffError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
F = TypeVar("F", bound=Callable[..., Any])

MODEL = typer.Option("builtin:digits", "--model", help="builtin:digits or a local diffusers folder")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda")
SEED = typer.Option(0, "--seed", help="one seed drives noise and training")


def _command(fn: F) -> F:
    """Register ``fn`` as a subcommand; a :class:`FlexdiffError` becomes one stderr line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlexdiffError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return app.command()(wrapper)  # type: ignore[return-value]


def _set_threads() -> None:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


@_command
def sample(
    out: Path = typer.Option(..., "--out", help="folder for samples.npz, grid.png and run.json"),
    model: str = MODEL,
    sampler: str = typer.Option("ddim", "--sampler", help="ddim or dpmpp-2m"),
    steps: int = typer.Option(50, "--steps", help="number of uniform sampler steps"),
    n: int = typer.Option(64, "--n", help="number of images"),
    seed: int = SEED,
    batch_size: int | None = typer.Option(None, "--batch-size", help="images per UNet call (default: all)"),
    eta: float = typer.Option(0.0, "--eta", help="DDIM stochasticity (0 = deterministic)"),
    device: str = DEVICE,
) -> None:
    """Generate images; writes OUT/samples.npz (key images, float32 NCHW in [-1, 1]) and OUT/grid.png."""
    from flexdiff.data import save_grid, save_npz
    from flexdiff.models import load_model
    from flexdiff.samplers import get_sampler
    from flexdiff.sampling import sample as run_sample, teacher_timesteps

    get_sampler(sampler)
    if n < 1:
        raise FlexdiffError(n, "--n >= 1", "ask for at least one image")
    m = load_model(model, device)
    teacher_timesteps(m, sampler, steps)  # validates --steps before any work
    start = time.perf_counter()
    images = run_sample(m, n, sampler=sampler, steps=steps, seed=seed, eta=eta, batch_size=batch_size, progress=True)
    wall = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    save_npz(out / "samples.npz", images)
    save_grid(out / "grid.png", images[:64])
    config = {"command": "sample", "model": model, "sampler": sampler, "steps": steps, "n": n, "seed": seed, "eta": eta, "batch_size": batch_size, "device": str(m.device), "wall_seconds": round(wall, 3)}
    _write_json(out / "run.json", config)
    print(f"{n} images in {wall:.1f} s -> {out / 'samples.npz'}, {out / 'grid.png'}")


@_command
def eval(  # noqa: A001 - the command is called eval
    samples: str = typer.Option(..., "--samples", help=".npz, image folder or builtin:digits-train|heldout"),
    reference: str = typer.Option("builtin:digits-heldout", "--reference", help="reference image set"),
    features: str = typer.Option("digits", "--features", help="feature network for FID"),
    n: int | None = typer.Option(None, "--n", help="use only the first N images of --samples"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    device: str = DEVICE,
) -> None:
    """FID between two image sets (.npz, image folders or builtin:digits-train / builtin:digits-heldout)."""
    from flexdiff.data import load_images
    from flexdiff.device import resolve_device
    from flexdiff.features import get_feature_network
    from flexdiff.metrics import frechet_distance

    net = get_feature_network(features, resolve_device(device))
    if n is not None and n < 2:
        raise FlexdiffError(n, "--n >= 2 (FID needs two images per side)", "pass a larger --n or drop it")
    a, b = load_images(samples)[:n], load_images(reference)
    value = frechet_distance(net(b), net(a))
    result = {"fid": round(value, 4), "n_samples": len(a), "n_reference": len(b), "features": features}
    print(json.dumps(result) if as_json else f"FID {value:.3f}  ({len(a)} samples vs {len(b)} reference, {features} features)")


def _train_into(out: Path, work: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Train into a sibling temp folder and swap it in only on success: an earlier result is never lost."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        stats = work(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return stats


@_command
def train(
    out: Path = typer.Option(..., "--out", help="folder for the trained model (diffusers pipeline format)"),
    seed: int = SEED,
    minutes: float | None = typer.Option(None, "--minutes", help="wall-time cap; the step count reached is recorded"),
    steps: int = typer.Option(20000, "--steps", help="optimizer steps (with --minutes: whichever ends first)"),
    data: str = typer.Option("builtin:digits-train", "--data", help="training images (.npz, folder or builtin set)"),
) -> None:
    """Train the built-in digits teacher (DDPM, EMA weights) reproducibly from a seed."""
    from flexdiff.data import load_images
    from flexdiff.progress import progress_bar
    from flexdiff.training import TeacherRecipe, train_teacher

    if steps < 1:
        raise FlexdiffError(steps, "--steps >= 1", "pass a positive number of optimizer steps")
    images = load_images(data)
    recipe = TeacherRecipe(seed=seed, steps=steps, minutes=minutes)
    with progress_bar("training teacher", steps) as advance:
        stats = _train_into(out, lambda tmp: train_teacher(tmp, recipe, images, on_step=lambda s, loss: advance(1, f"loss {loss:.4f}")))
    print(json.dumps(stats))


@_command
def train_features(
    out: Path = typer.Option(None, "--out", help="safetensors file (default: the packaged digits classifier)"),
    seed: int = SEED,
    epochs: int = typer.Option(40, "--epochs"),
) -> None:
    """Train the `digits` feature network (a small CNN classifier) and report its held-out accuracy."""
    from flexdiff.features import DIGITS_CLASSIFIER
    from flexdiff.progress import progress_bar
    from flexdiff.training import train_classifier

    target = out or DIGITS_CLASSIFIER
    with progress_bar("training digits classifier", epochs) as advance:
        stats = train_classifier(target, seed=seed, epochs=epochs, on_epoch=lambda e, loss: advance(1, f"loss {loss:.4f}"))
    print(json.dumps(stats))


def main() -> None:
    app()
