"""Images for a schedule, whichever loop runs it: flexdiff's own or the pipeline's own.

- A registered sampler (``ddim``, ``dpmpp-2m``, ...): flexdiff's pure samplers over explicit timesteps
  (:mod:`flexdiff.sampling`), fast and exact, with its own solvers.
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
from typing import Any

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.integrations import enabled, pipeline_timesteps
from flexdiff.integrations.diffusers_pipeline import accepts_custom_timesteps
from flexdiff.models import DiffusionModel, pipeline_of
from flexdiff.samplers import PIPELINE
from flexdiff.sampling import (
    check_batch_size,
    generate,
    generate_scheduled,
    teacher_timesteps,
)
from flexdiff.schedule import Schedule
from flexdiff.trajectory import TrajectoryStore
from flexdiff.utils.memory import Count, check_memory, images_bytes, working_bytes
from flexdiff.utils.progress import progress_bar


def image_seed(seed: int, i: int) -> int:
    """The seed of image ``i``'s generator in a run with ``seed`` (the pipeline loop's step noise)."""
    return (seed * 1_000_003 + i + 1) % 2**63


def teacher_grid(model: DiffusionModel, sampler: str, steps: int) -> list[int]:
    """The teacher's ``steps`` timesteps: the pipeline scheduler's own grid, or flexdiff's sampler's spacing. For a
    pipeline only its own call drives (SDXL, ControlNet) it also captures the UNet call the cost model replays."""
    if model.pipeline_only and sampler != PIPELINE:
        raise FlexdiffError(f"--sampler {sampler} on {model.name}", f"--sampler {PIPELINE} (SDXL and ControlNet pipelines run through their own call)", f"pass --sampler {PIPELINE}")
    if sampler == PIPELINE:
        grid = pipeline_timesteps(pipeline_of(model), steps)
        if model.pipeline_only and model.replay is None:  # once per model (sample checks the grid, then samples)
            model.replay = captured_unet_call(model)
        return grid
    return teacher_timesteps(model, sampler, steps)


def captured_unet_call(model: DiffusionModel) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """One UNet call of a one-step ``pipe(...)`` for one image under the model's conditioning (its CFG batch, added
    conditions, ControlNet residuals), as a function of ``(x, t)`` that calls the UNet with those arguments and
    each image of ``x`` in place of its latent (repeated to the call's batch, e.g. 2 under CFG): the cost model's and
    the search estimate's probe."""
    pipe = pipeline_of(model)
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def capture(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not seen:
            seen.append((args, dict(kwargs)))

    noise = model.initial_noise(1, 0)
    handle = pipe.unet.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad(), model.for_images(0, 1):
            pipe(**{**pipeline_call_args(pipe, model, noise, 1, [0], start=0), "output_type": "latent"})
    finally:
        handle.remove()
    args, kwargs = seen[0]
    kwargs.pop("timestep", None)
    sample = kwargs.pop("sample", args[0] if args else None)
    rows = int(sample.shape[0])

    def one(x: torch.Tensor, t: int) -> torch.Tensor:  # x: (1, C, H, W), repeated to the captured call's rows
        out = pipe.unet(x.repeat(rows, 1, 1, 1).to(sample.dtype), torch.tensor(t, device=x.device), **kwargs)  # pipelines pass return_dict=False: a tuple
        return (out[0] if isinstance(out, tuple) else out.sample)[:1].float()

    def replay(x: torch.Tensor, t: int) -> torch.Tensor:
        """A batch of ``B`` images costs ``B`` captured one-image calls (the conditioning was captured for one)."""
        return torch.cat([one(x[i : i + 1], t) for i in range(x.shape[0])])

    return replay


def takes_null_steps(model: DiffusionModel, sampler: str) -> bool:
    """Whether schedules with null steps run under ``sampler``: always in flexdiff's loop; in the pipeline's where its
    scheduler's ``set_timesteps`` accepts custom timesteps (not DDIM, PNDM, UniPC, Euler ancestral)."""
    return sampler != PIPELINE or accepts_custom_timesteps(pipeline_of(model).scheduler)


def teacher_images(model: DiffusionModel, noise: torch.Tensor, timesteps: Sequence[int], sampler: str, *, eta: float = 0.0, seed: int = 0,
                   batch_size: int | None = None, on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """The teacher's images in ``[-1, 1]`` from ``noise``: every step full, no hooks (the plain ``pipe(...)`` call)."""
    if sampler == PIPELINE:
        _check_eta(eta)
        return _pipeline_images(model, noise, len(timesteps), None, seed=seed, batch_size=batch_size, on_step=on_step)
    return generate(model, noise, timesteps, sampler, eta=eta, seed=seed, batch_size=batch_size, on_step=on_step).clamp(-1, 1)


def _check_eta(eta: float) -> None:
    if eta:
        raise FlexdiffError(f"eta={eta:g} with sampler {PIPELINE}", "eta 0 (the pipeline's scheduler draws its own noise)", "drop --eta")


def schedule_images(model: DiffusionModel, schedule: Schedule, noise: torch.Tensor, *, eta: float = 0.0, seed: int = 0, batch_size: int | None = None,
                    on_step: Callable[[], None] | None = None, strict: bool = True, cuts: Sequence[int] = (),
                    on_batch: Callable[[int, torch.Tensor], None] | None = None, trajectories: TrajectoryStore | None = None) -> torch.Tensor:
    """Images in ``[-1, 1]`` from ``noise`` under ``schedule``, in the loop its sampler names. ``cuts`` / ``on_batch``:
    see :func:`flexdiff.sampling.generate` (the pipeline's own loop runs whole and reports once, at the end);
    ``trajectories``: :func:`flexdiff.sampling.generate_scheduled` (flexdiff's loop only)."""
    if schedule.sampler == PIPELINE:
        _check_eta(eta)
        images = _pipeline_images(model, noise, schedule.T, schedule, seed=seed, batch_size=batch_size, on_step=on_step, strict=strict)
        if on_batch is not None:
            on_batch(len(noise), images)
        return images
    return generate_scheduled(model, schedule, noise, eta=eta, seed=seed, batch_size=batch_size, on_step=on_step, strict=strict, cuts=cuts, on_batch=on_batch,
                              trajectories=trajectories)


def pipeline_call_args(pipe: Any, model: DiffusionModel, noise: torch.Tensor, steps: int, seeds: Sequence[int], start: int) -> dict[str, Any]:
    """The keyword arguments of ``pipe(...)`` for images ``start ..`` of a run: ``noise`` (their initial latents), their
    prompts as strings (image ``i`` takes prompt ``i mod P``: the pipeline encodes them itself, SDXL's two encoders
    included), negative prompt and guidance, one generator per image."""
    params = inspect.signature(pipe.__call__).parameters
    n = len(noise)
    args: dict[str, Any] = {"num_inference_steps": steps, "generator": [torch.Generator().manual_seed(s) for s in seeds], "output_type": "np"}
    c = model.conditioning
    if c is not None and c.labels is not None:
        raise FlexdiffError(f"class labels with sampler {PIPELINE}", "a pipeline that takes the conditioning flexdiff holds (prompts)", "use flexdiff's own loop (--sampler ddim) for class-conditional models")
    if c is not None and c.cond is not None:
        if "prompt" not in params:
            raise FlexdiffError(type(pipe).__name__, "a text-to-image pipeline that takes prompts", "use flexdiff's own loop (--sampler ddim)")
        texts = c.description.get("prompts") or [""]
        args["prompt"] = [texts[(start + i) % len(texts)] for i in range(n)]
        if c.guided:
            if c.guidance_scale <= 1:
                raise FlexdiffError(f"--guidance {c.guidance_scale:g} with sampler {PIPELINE}", "a guidance scale > 1 (diffusers' pipelines skip guidance at or below 1)", "pass --guidance > 1, or 1 for none")
            args["guidance_scale"] = c.guidance_scale
            if c.description.get("negative_prompt") is not None:  # else the pipeline's own default (SDXL: zeros, SD: "")
                args["negative_prompt"] = [c.description["negative_prompt"]] * n
        else:
            args["guidance_scale"] = 1.0
    if getattr(pipe, "controlnet", None) is not None:  # its conditioning images: image i takes control image i mod K
        if c is None or c.control is None:
            raise FlexdiffError(type(pipe).__name__, "control images for the ControlNet", "pass --control-images DIR (Python: flexdiff.condition(model, control_images=DIR))")
        args["image"] = c.control[[(start + i) % len(c.control) for i in range(n)]].to(pipe.device)
    if "latents" in params:
        dtype = next(pipe.unet.parameters()).dtype
        args["latents"] = noise.to(pipe.device, dtype)
        if "height" in params:
            scale = int(getattr(pipe, "vae_scale_factor", 1))
            args.update(height=noise.shape[-2] * scale, width=noise.shape[-1] * scale)
    else:
        args["batch_size"] = n
    return args


def _pipeline_images(model: DiffusionModel, noise: torch.Tensor, steps: int, schedule: Schedule | None, *, seed: int, batch_size: int | None,
                     on_step: Callable[[], None] | None, strict: bool = True) -> torch.Tensor:
    """``pipe(...)`` over ``noise`` in batches (under ``schedule`` when given); images in ``[-1, 1]`` (N, C, H, W)."""
    pipe = pipeline_of(model)
    check_batch_size(batch_size)
    size = batch_size or len(noise)
    handle = pipe.unet.register_forward_pre_hook(lambda *_: on_step()) if on_step is not None else None
    out = []
    try:
        with enabled(pipe, schedule, strict) if schedule is not None else nullcontext():
            for start in range(0, len(noise), size):
                x = noise[start : start + size]
                with torch.no_grad(), torch.random.fork_rng(devices=[]), model.for_images(start, start + len(x)):
                    # a pipeline that passes no generator to its scheduler (LDM) draws step noise from the global RNG: seeded per
                    # batch (so such images do depend on the batch size), and the caller's RNG state is restored after it
                    torch.manual_seed(image_seed(seed, start))
                    images = pipe(**pipeline_call_args(pipe, model, x, steps, [image_seed(seed, i) for i in range(start, start + len(x))], start)).images
                out.append(torch.from_numpy(images).permute(0, 3, 1, 2).float() * 2 - 1)
    finally:
        if handle is not None:
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
    from flexdiff.cost import probe_input

    latent = images_bytes(1, model.sample_shape)
    x, t = probe_input(model, 1)
    _, call = working_bytes(lambda: model.eps(x, t)) if not (model.pipeline_only and model.replay is None) else (None, None)
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
