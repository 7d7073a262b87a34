"""Generating images in flexdiff's own loop: the sampler over the model's timesteps, in batches (``flexdiff.sample``,
which also runs the pipeline's own loop, is in :mod:`flexdiff.either_loop`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.models import DiffusionModel
from flexdiff.running.executor import apply_schedule
from flexdiff.running.trajectory import TrajectoryStore, finished, replaying
from flexdiff.samplers import (
    Denoise,
    NoiseSampler,
    check_sampler_for,
    get_sampler,
    sampler_info,
    uniform_timesteps,
)
from flexdiff.schedule import Schedule


def teacher_timesteps(model: DiffusionModel, sampler: str, steps: int) -> list[float]:
    """The teacher's grid of ``steps`` points: the uniform timesteps the named sampler uses in diffusers (its default
    spacing), or for a flow-matching model its ``steps`` shifted sigmas (``FlowMatchEulerDiscreteScheduler``'s)."""
    check_sampler_for(sampler, model.noise.kind)
    if model.noise.kind == "flow":
        return model.noise.sigmas(steps)
    return uniform_timesteps(model.noise.num_train_timesteps, steps, sampler_info(sampler).spacing)


#: the most images one command generates or scores: beyond it a run cannot fit a machine's memory or a day (and
#: numbers such as 10**20 are not sizes torch accepts)
MAX_IMAGES = 1_000_000


def check_image_count(n: int, option: str = "--n", least: int = 1) -> None:
    """An image count in ``[least, MAX_IMAGES]``, checked before any work."""
    if not least <= n <= MAX_IMAGES:
        raise FlexdiffError(
            f"{option} {n}", f"an image count in [{least}, {MAX_IMAGES:,}]", f"pass a smaller {option}" if n > MAX_IMAGES else f"pass {option} >= {least}"
        )


def check_batch_size(batch_size: int | None) -> None:
    """A batch size is None (all at once) or >= 1."""
    if batch_size is not None and batch_size < 1:
        raise FlexdiffError(f"--batch-size {batch_size}", "a batch size >= 1", "pass e.g. --batch-size 256")


def extra_noise(shape: torch.Size, seed: int, start: int, stop: int) -> NoiseSampler:
    """The extra (eta > 0) noise of images ``start..stop`` at each active step ``i``: ``torch.randn(shape)`` for all N
    images from a generator seeded by ``(seed, i)``, sliced. Drawing per batch would make image ``i``'s noise depend
    on the batch it falls in."""

    def draw(i: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed((seed * 1_000_003 + i + 1) % 2**63)
        return torch.randn(shape, generator=generator)[start:stop]

    return draw


def generate(
    model: DiffusionModel,
    noise: torch.Tensor,
    timesteps: Sequence[int],
    sampler: str = "ddim",
    *,
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int | None = None,
    denoise: Callable[[], Denoise] | None = None,
    on_step: Callable[[], None] | None = None,
    decode: bool = True,
    grid: Sequence[int] | None = None,
    cuts: Sequence[int] = (),
    on_batch: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Run ``sampler`` from ``noise`` (N, C, H, W) over ``timesteps``, in batches; returns x_0 on the CPU, unclamped.

    ``denoise() -> Denoise`` is called once per batch to wrap the model (the schedule executor does: a fresh cache); by
    default the plain model is called. With ``eta > 0`` the extra noise of step ``i`` is drawn for all N images from a
    generator seeded by ``(seed, i)`` and sliced to the batch, so image ``i`` gets the same noise whatever the batch
    size (:func:`extra_noise`). Image ``i`` is conditioned on entry ``i mod P`` of the model's prompts / labels, whatever
    the batch size. A latent model's decoder turns each batch's x_0 into images (``decode=False``: the latents), so
    every caller — rFID, FID, saved samples — sees images. ``grid``: the teacher's timesteps ``timesteps`` were taken
    from, for a sampler that corrects towards the teacher's discretisation (``ddim-2m``); the others ignore it.
    ``cuts``: image indices a batch never spans (the rungs of a multi-fidelity evaluation, :mod:`flexdiff.search.fidelity`);
    ``on_batch(stop, images)`` sees each batch's images as it is done (it may raise to end the run early).
    """
    sample_fn = get_sampler(sampler)
    check_batch_size(batch_size)
    device = model.device
    out = []
    for start, stop in batch_bounds(len(noise), batch_size, cuts):
        x = noise[start:stop].to(device)
        fn = denoise() if denoise is not None else (lambda xt, t, i: model.eps(xt, t))
        draw = extra_noise(noise.shape, seed, start, start + len(x)) if eta > 0 else None
        with torch.no_grad(), model.for_images(start, start + len(x)):
            y = sample_fn(fn, x, timesteps, model.noise, eta=eta, noise_sampler=draw, callback=(lambda i: on_step()) if on_step else None, grid=grid)
            if decode and model.decoder is not None:
                y = model.decoder(y)
        out.append(y.cpu())
        if on_batch is not None:
            on_batch(stop, out[-1])
    return torch.cat(out)


def batch_bounds(n: int, batch_size: int | None, cuts: Sequence[int] = ()) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch over ``n`` images: ``batch_size`` at most (all at once: None), never across a cut."""
    edges = sorted({0, n, *(c for c in cuts if 0 < c < n)})
    size = batch_size or n
    return [(a, min(a + size, b)) for lo, b in zip(edges, edges[1:]) for a in range(lo, b, size)]


def generate_scheduled(
    model: DiffusionModel,
    schedule: Schedule,
    noise: torch.Tensor,
    *,
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int | None = None,
    on_step: Callable[[], None] | None = None,
    strict: bool = True,
    cuts: Sequence[int] = (),
    on_batch: Callable[[int, torch.Tensor], None] | None = None,
    trajectories: TrajectoryStore | None = None,
) -> torch.Tensor:
    """Images in ``[-1, 1]`` from ``noise`` under ``schedule``: hooks on for the call, off again after it.
    ``strict=False`` applies a schedule file made for another model anyway (:mod:`flexdiff.schedule.binding`);
    ``cuts`` / ``on_batch`` as in :func:`generate` (``on_batch`` sees the clamped images). With ``trajectories``
    the run starts from the stored run sharing its longest prefix and is stored itself once complete
    (:mod:`flexdiff.running.trajectory`: bit-identical to running from noise)."""
    seen = (lambda stop, y: on_batch(stop, y.clamp(-1, 1))) if on_batch is not None else None
    bounds = batch_bounds(len(noise), batch_size, cuts)
    with apply_schedule(model, schedule, strict=strict) as run:
        denoise, captured = run.start, []
        if trajectories is not None:
            denoise = replaying(run.start, run.set_step, schedule, trajectories.plan(schedule, bounds), captured, trajectories.count_saved)
        try:
            x0 = generate(
                model,
                noise,
                schedule.active_timesteps,
                schedule.sampler,
                eta=eta,
                seed=seed,
                batch_size=batch_size,
                denoise=denoise,
                on_step=on_step,
                grid=schedule.timesteps,
                cuts=cuts,
                on_batch=seen,
            )
        finally:  # a run stopped early (on the rungs) still leaves its finished batches
            if trajectories is not None:
                trajectories.add(finished(schedule, bounds, captured))
    return x0.clamp(-1, 1)
