"""Images for a schedule, whichever loop runs it: flexdiff's own or the pipeline's own.

- A registered sampler (``ddim``, ``dpmpp-2m``, ...): flexdiff's pure samplers over explicit timesteps
  (:mod:`flexdiff.running.own_loop`), fast and exact, with its own solvers.
- :data:`~flexdiff.samplers.PIPELINE`: the model folder's diffusers scheduler *as configured* (its class, spacing,
  offset, alpha-to-one), run by the diffusers pipeline's own ``__call__`` over the model's modules, with the schedule
  attached by :func:`flexdiff.enable`. The teacher is the plain ``pipe(...)`` call; a searched schedule's images are
  what ``flexdiff.enable(pipe, "best.json")`` then makes, because they are made that way.

The search, its validation, the report's grids and ``flexdiff sample`` go through :func:`teacher_images` and
:func:`schedule_images`, so each of them can run either loop.

**Noise of the pipeline loop.** Image ``i`` of a run gets its own generator, seeded by ``image_seed(seed, i)``
(:func:`image_seed`), for the scheduler's step noise; its initial noise is row ``i`` of the model's initial noise
(:meth:`~flexdiff.models.DiffusionModel.initial_noise`, as flexdiff's loop uses) where the pipeline takes ``latents``
(Stable Diffusion), else the pipeline draws it from that generator (DDPM / DDIM / LDM pipelines). Either way image
``i`` is the same whatever the batch size, and a user reproduces it with the same ``latents`` / ``generator``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.integrations import enabled, pipeline_timesteps
from flexdiff.integrations.diffusers_pipeline import accepts_custom_timesteps, merge_repeats, scheduler_grid
from flexdiff.models import DiffusionModel, pipeline_of
from flexdiff.models.pipelines import LOOP_UNETS, denoisers_of, first_denoiser_call, pipeline_call_args, probe_call, prompts_encoded_once
from flexdiff.running.own_loop import (
    check_batch_size,
    generate,
    generate_scheduled,
    teacher_timesteps,
)
from flexdiff.running.trajectory import TrajectoryStore
from flexdiff.samplers import AUTO, PIPELINE, resolve_sampler
from flexdiff.schedule import Schedule
from flexdiff.utils.memory import Count, check_memory, images_bytes, working_bytes
from flexdiff.utils.progress import progress_bar


def image_seed(seed: int, i: int) -> int:
    """The seed of image ``i``'s generator in a run with ``seed`` (the pipeline loop's step noise)."""
    return (seed * 1_000_003 + i + 1) % 2**63


def teacher_grid(model: DiffusionModel, sampler: str, steps: int) -> list[int]:
    """The teacher's ``steps`` timesteps: the pipeline scheduler's own grid, or flexdiff's sampler's spacing."""
    if model.pipeline_only and sampler != PIPELINE:
        raise FlexdiffError(
            f"--sampler {sampler} on {model.name}",
            f"--sampler {PIPELINE} ({type(model.denoiser).__name__} runs through its pipeline's own call)",
            f"pass --sampler {PIPELINE}",
        )
    if sampler == PIPELINE:
        pipe = pipeline_of(model)
        if type(model.denoiser).__name__ in LOOP_UNETS:
            return pipeline_timesteps(pipe, steps)
        # a pipeline with its own clock (Flux's sigmas and resolution-dependent mu, Wan's shift): the grid its call sets
        first_denoiser_call(pipe, probe_call(pipe, {**model.call_options, "num_inference_steps": steps}), model.prompt_embeddings)
        return merge_repeats(scheduler_grid(pipe.scheduler))
    return teacher_timesteps(model, sampler, steps)


def default_sampler(model: DiffusionModel, name: str) -> str:
    """``name``, or for :data:`~flexdiff.samplers.AUTO` the model's teacher: the pipeline's own call
    (:data:`~flexdiff.samplers.PIPELINE`, its scheduler as configured) for a pipeline folder or object whose call takes
    the noise flexdiff draws (``latents=``), else flexdiff's sampler for the model's noise kind (the built-ins, pixel
    DDPM folders)."""
    if name != AUTO:
        return name
    # a pipeline folder (its model builds its pipeline at load) or object; the built-ins and pixel UNet folders have none
    if model.pipeline is not None and "latents" in inspect.signature(model.pipeline.__call__).parameters:
        return PIPELINE
    return resolve_sampler(name, model.noise.kind)


def takes_null_steps(model: DiffusionModel, sampler: str) -> bool:
    """Whether schedules with null steps run under ``sampler``: always in flexdiff's loop; in the pipeline's where its
    scheduler's ``set_timesteps`` accepts custom timesteps (not DDIM, PNDM, UniPC, Euler ancestral)."""
    return sampler != PIPELINE or accepts_custom_timesteps(pipeline_of(model).scheduler)


def teacher_images(
    model: DiffusionModel,
    noise: torch.Tensor,
    timesteps: Sequence[int],
    sampler: str,
    *,
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int | None = None,
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """The teacher's images in ``[-1, 1]`` from ``noise``: every step full, no hooks (the plain ``pipe(...)`` call)."""
    if sampler == PIPELINE:
        _check_eta(eta)
        return _pipeline_images(model, noise, len(timesteps), None, seed=seed, batch_size=batch_size, on_step=on_step)
    return generate(model, noise, timesteps, sampler, eta=eta, seed=seed, batch_size=batch_size, on_step=on_step).clamp(-1, 1)


def _check_eta(eta: float) -> None:
    if eta:
        raise FlexdiffError(f"eta={eta:g} with sampler {PIPELINE}", "eta 0 (the pipeline's scheduler draws its own noise)", "drop --eta")


def schedule_images(
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
    """Images in ``[-1, 1]`` from ``noise`` under ``schedule``, in the loop its sampler names. ``cuts`` / ``on_batch``:
    see :func:`flexdiff.running.own_loop.generate` (the pipeline's own loop runs whole and reports once, at the end);
    ``trajectories``: :func:`flexdiff.running.own_loop.generate_scheduled` (flexdiff's loop only)."""
    if schedule.sampler == PIPELINE:
        _check_eta(eta)
        images = _pipeline_images(model, noise, schedule.T, schedule, seed=seed, batch_size=batch_size, on_step=on_step, strict=strict)
        if on_batch is not None:
            on_batch(len(noise), images)
        return images
    return generate_scheduled(
        model,
        schedule,
        noise,
        eta=eta,
        seed=seed,
        batch_size=batch_size,
        on_step=on_step,
        strict=strict,
        cuts=cuts,
        on_batch=on_batch,
        trajectories=trajectories,
    )


def _pipeline_images(
    model: DiffusionModel,
    noise: torch.Tensor,
    steps: int,
    schedule: Schedule | None,
    *,
    seed: int,
    batch_size: int | None,
    on_step: Callable[[], None] | None,
    strict: bool = True,
) -> torch.Tensor:
    """``pipe(...)`` over ``noise`` in batches (under ``schedule`` when given); images in ``[-1, 1]``, (N, C, H, W), or
    (N, F, C, H, W) for a video pipeline."""
    pipe = pipeline_of(model)
    check_batch_size(batch_size)
    size = batch_size or len(noise)
    handles = [m.register_forward_pre_hook(lambda *_: on_step()) for _, m in denoisers_of(pipe)] if on_step is not None else []
    out = []
    try:
        with enabled(pipe, schedule, strict) if schedule is not None else nullcontext(), prompts_encoded_once(pipe, model.prompt_embeddings):
            for start in range(0, len(noise), size):
                x = noise[start : start + size]
                with torch.no_grad(), torch.random.fork_rng(devices=[]), model.for_images(start, start + len(x)):
                    # a pipeline that passes no generator to its scheduler (LDM) draws step noise from the global RNG: seeded per
                    # batch (so such images do depend on the batch size), and the caller's RNG state is restored after it
                    torch.manual_seed(image_seed(seed, start))
                    result = pipe(**pipeline_call_args(pipe, model, x, steps, [image_seed(seed, i) for i in range(start, start + len(x))], start))
                images = torch.as_tensor(getattr(result, "frames", None) if hasattr(result, "frames") else result.images)
                out.append(images.movedim(-1, -3).float() * 2 - 1)  # (N, [F,] H, W, C) in [0, 1] -> (N, [F,] C, H, W) in [-1, 1]
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(out)


def sample(
    model: DiffusionModel,
    n: int = 64,
    *,
    sampler: str = "ddim",
    steps: int = 50,
    seed: int = 0,
    eta: float = 0.0,
    batch_size: int | None = None,
    schedule: Schedule | None = None,
    progress: bool = False,
    strict: bool = True,
) -> torch.Tensor:
    """``n`` images (N, C, H, W) in ``[-1, 1]`` from seed ``seed``.

    Without ``schedule``: ``steps`` steps of ``sampler`` (:data:`~flexdiff.samplers.PIPELINE`: the folder's own
    scheduler through ``pipe(...)``). With one: its sampler and teacher timesteps, full / partial / null steps as it
    says (``sampler`` and ``steps`` are then ignored).
    """
    if n < 1:
        raise FlexdiffError(n, "at least one sample", "pass e.g. --n 64")
    noise = model.initial_noise(n, seed)
    batches = -(-n // (batch_size or n))
    if schedule is None:
        timesteps = teacher_grid(model, sampler, steps)
        with progress_bar(f"sampling {n} x {sampler}-{steps}", len(timesteps) * batches, enabled=progress) as advance:
            return teacher_images(model, noise, timesteps, sampler, eta=eta, seed=seed, batch_size=batch_size, on_step=advance)
    with progress_bar(f"sampling {n} x {schedule.name or 'schedule'}", len(schedule.active_indices) * batches, enabled=progress) as advance:
        return schedule_images(model, schedule, noise, eta=eta, seed=seed, batch_size=batch_size, on_step=advance, strict=strict)


#: latents of one image a sampler holds per batch beyond the network call: x_t, the prediction, x_0, the multistep
#: history and the next x_t
SAMPLER_COPIES = 6


def check_sample_memory(model: DiffusionModel, n: int, batch_size: int | None, eta: float = 0.0) -> None:
    """Refuse ``--n`` / ``--batch-size`` whose arrays cannot fit the free memory, before the noise is drawn.

    Host: the initial noise of all ``n`` images, the finished batches and their concatenation (two image sets), with
    ``eta > 0`` the extra noise drawn for all images at each step; on the device running the model (host for the CPU)
    one batch's working set: one network call and one decoder call measured at one image (:func:`working_bytes`),
    scaled by the batch, plus the sampler's own latents. Without this check ``--n 100000`` with the default batch (all
    at once) grew until the kernel killed the process."""
    from flexdiff.running.cost import probe_input

    latent = images_bytes(1, model.sample_shape)
    x, t = probe_input(model, 1)
    _, call = working_bytes(lambda: model.eps(x, t))
    image, decode = latent, 0
    if model.decoder is not None:
        decoded, decode = working_bytes(lambda: model.decoder(torch.zeros((1, *model.sample_shape), device=model.device)))
        image = images_bytes(1, decoded.shape[1:]) if isinstance(decoded, torch.Tensor) else latent
    per_image = max(call or 0, decode or 0) + SAMPLER_COPIES * latent  # the network's or the decoder's, one at a time

    def batch_of(values: dict[str, int]) -> int:
        return min(values["--batch-size"], values["--n"])

    def host(values: dict[str, int]) -> int:
        count = values["--n"]
        need = count * latent * (2 if eta > 0 else 1) + 2 * count * image
        return need + (batch_of(values) * per_image if model.device.type == "cpu" else 0)

    needs = {"cpu": host}
    if model.device.type != "cpu":
        needs[str(model.device)] = lambda values: batch_of(values) * per_image
    counts = [Count("--n", n), Count("--batch-size", batch_size or n, shown=None if batch_size else f"all {n} images at once", same_result=True)]
    check_memory(counts, needs, what="a sampling run")
