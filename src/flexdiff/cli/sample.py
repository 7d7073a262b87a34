"""``flexdiff sample``: generate images (the job itself is :func:`flexdiff.sample_job.run_sample`)."""

from __future__ import annotations

from pathlib import Path

import typer

from flexdiff.cli._app import (
    CLIP,
    CONTROL_IMAGES,
    DEVICE,
    DTYPE,
    FRAMES,
    GUIDANCE,
    HEIGHT,
    LABELS,
    MODEL,
    NEGATIVE_PROMPT,
    PIPELINE_KWARGS,
    PROMPTS,
    SAMPLER,
    SEED,
    VARIANT,
    WIDTH,
    call_options,
    command,
)
from flexdiff.utils.text import escape


@command
def sample(
    out: Path = typer.Option(..., "--out", help="folder for samples.npz, grid.png and run.json"),
    model: str = MODEL,
    sampler: str = SAMPLER,
    steps: int | None = typer.Option(
        None,
        "--steps",
        help="number of uniform sampler steps (default 50; with --schedule, the schedule's: a searched one re-expands its genome at another --steps)",
    ),
    n: int = typer.Option(64, "--n", help="number of images"),
    seed: int = SEED,
    batch_size: int | None = typer.Option(None, "--batch-size", help="images per UNet call (default: all)"),
    eta: float = typer.Option(0.0, "--eta", help="DDIM stochasticity (0 = deterministic)"),
    schedule: Path | None = typer.Option(
        None, "--schedule", help="schedule JSON (flexdiff schedule ...); sets sampler and steps (another --sampler or --steps is refused)"
    ),
    prompts: Path | None = PROMPTS,
    negative_prompt: str | None = NEGATIVE_PROMPT,
    guidance: float | None = GUIDANCE,
    labels: str | None = LABELS,
    control_images: Path | None = CONTROL_IMAGES,
    clip: Path | None = CLIP,
    ignore_binding: bool = typer.Option(False, "--ignore-binding", help="apply a schedule file made for another model or scheduler anyway"),
    device: str = DEVICE,
    dtype: str | None = DTYPE,
    variant: str | None = VARIANT,
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    frames: int | None = FRAMES,
    pipeline_kwargs: str | None = PIPELINE_KWARGS,
) -> None:
    """Generate images; writes OUT/samples.npz (key images, float32 NCHW in [-1, 1]) and OUT/grid.png.

    With --schedule it also prints the schedule's MACs speed-up over its all-full teacher and the wall time.
    Latent pipelines save decoded images. With --prompts and --clip, run.json gets the CLIP score.
    """
    from flexdiff.sample_job import SampleConfig, run_sample

    run = run_sample(
        SampleConfig(
            out=out,
            model=model,
            sampler=sampler,
            steps=steps,
            n=n,
            seed=seed,
            batch_size=batch_size,
            eta=eta,
            schedule=schedule,
            prompts=prompts,
            negative_prompt=negative_prompt,
            guidance=guidance,
            labels=labels,
            control_images=str(control_images) if control_images else None,
            clip=clip,
            strict=not ignore_binding,
            device=device,
            torch_dtype=dtype,
            variant=variant,
            call_options=call_options(height, width, frames, pipeline_kwargs),
        )
    )
    if "clip_score" in run:
        print(f"CLIP score {run['clip_score']:.2f} ({n} images vs their prompts)")
    if "schedule" in run:
        from flexdiff.schedule import Schedule

        plan = Schedule.from_dict(run["schedule"])
        print(f"schedule {escape(plan.name or str(schedule))}: {plan.counts()} -> MACs speed-up {run['macs_speedup']:.2f}x over full-{plan.T}")
    print(f"{n} images in {run['wall_seconds']:.1f} s -> {out / 'samples.npz'}, {out / 'grid.png'}")
