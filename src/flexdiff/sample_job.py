"""``flexdiff sample`` as a library job: check everything, generate, write ``samples.npz``, ``grid.png`` and
``run.json`` (with the CLIP score when asked for, the schedule's MACs speed-up, and the provenance)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexdiff.data import save_grid, save_npz
from flexdiff.either_loop import check_sample_memory, default_sampler, sample, teacher_grid
from flexdiff.errors import FlexdiffError, output_folder
from flexdiff.measuring.clip import load_clip
from flexdiff.models import DiffusionModel, condition, conditioning_summary, image_prompts, load_model
from flexdiff.provenance import run_provenance
from flexdiff.running.cost import measure_macs
from flexdiff.running.own_loop import check_batch_size, check_image_count
from flexdiff.samplers import AUTO, PIPELINE, check_eta, check_sampler
from flexdiff.samplers.timesteps import check_steps
from flexdiff.schedule import Schedule, check_binding, for_steps
from flexdiff.utils.io import folder_as_unit, write_json

#: the sampler's steps without a schedule file (diffusers' usual 50)
DEFAULT_STEPS = 50


@dataclass(frozen=True)
class SampleConfig:
    out: Path
    model: str = "builtin:digits"
    sampler: str = AUTO  # by the model's noise kind; with a schedule file, its own ("auto" or the same; another is refused)
    steps: int | None = None  # the sampler's steps (default 50); with a schedule file, its own (another is refused)
    n: int = 64
    seed: int = 0
    batch_size: int | None = None
    eta: float = 0.0
    schedule: Path | None = None  # a schedule file: sets the sampler and the teacher's steps
    prompts: Path | None = None
    negative_prompt: str | None = None
    guidance: float | None = None
    labels: str | None = None
    clip: Path | None = None  # a local CLIP folder: run.json gets the CLIP score (needs prompts)
    strict: bool = True  # False (--ignore-binding): apply a schedule file made for another model anyway
    device: str = "auto"
    control_images: str | None = None  # a ControlNet pipeline's conditioning images (folder or .npz)
    torch_dtype: str | None = None  # fp32 / fp16 / bf16; None: the weights as stored
    variant: str | None = None
    call_options: dict[str, Any] = field(default_factory=dict)  # height, width, num_frames, --pipeline-kwargs of a pipeline-driven model


def run_sample(config: SampleConfig) -> dict[str, Any]:
    """Every option checked before any work, then the images; returns what ``run.json`` holds."""
    c = config
    plan = Schedule.load(c.schedule) if c.schedule is not None else None
    if plan is not None:  # the file sets sampler and steps: an option saying otherwise would be ignored, so it is refused
        stretches = isinstance(plan.meta.get("genome"), str)  # a searched plan re-expands at another --steps (for_steps)
        for option, given, own in (("--sampler", c.sampler, plan.sampler), ("--steps", None if stretches else c.steps, plan.T)):
            if given not in (None, AUTO, own):
                raise FlexdiffError(
                    f"{option} {given} with --schedule {c.schedule}",
                    f"the schedule's own {option.lstrip('-')} ({own}) or none",
                    f"drop {option} (the schedule file sets it), or write a schedule for it",
                )
    sampler = plan.sampler if plan else c.sampler
    steps = c.steps if c.steps is not None else plan.T if plan else DEFAULT_STEPS
    check_sampler(sampler, auto=True)
    check_image_count(c.n)
    check_batch_size(c.batch_size)
    model = load_model(c.model, c.device, torch_dtype=c.torch_dtype, variant=c.variant, call_options=c.call_options)
    sampler = default_sampler(model, sampler)
    condition(model, prompts=c.prompts, negative_prompt=c.negative_prompt, guidance=c.guidance, labels=c.labels, control_images=c.control_images)
    scorer = None
    if c.clip is not None:
        if c.prompts is None:
            raise FlexdiffError("--clip", "--prompts as well (the CLIP score compares images with their prompts)", "pass --prompts FILE or drop --clip")
        scorer = load_clip(c.clip, model.device)
    if plan is None:
        check_pipeline_steps(model, sampler, steps)
        teacher_grid(model, sampler, steps)  # validates --steps before any work (flexdiff's grids: no repeated timestep)
    else:
        if steps != plan.T:  # the searched genome, re-expanded on this model's teacher grid of --steps steps
            check_pipeline_steps(model, sampler, steps)
            plan = for_steps(plan, teacher_grid(model, sampler, steps))
        check_binding(plan, lambda: model.binding(plan.sampler), where=c.schedule, strict=c.strict)  # made for this model?
        plan.check_branches(model.layout.num_branches)
        plan.check_timesteps(model.noise, where=c.schedule)
    check_eta(c.eta)  # before any work (the sampler checks it again)
    check_sample_memory(model, c.n, c.batch_size, c.eta)
    output_folder(c.out, create=False, staged=True)  # a file in the way is refused now; the folder is made once there are samples
    start = time.perf_counter()
    images = sample(
        model, c.n, sampler=sampler, steps=steps, seed=c.seed, eta=c.eta, batch_size=c.batch_size, schedule=plan, progress=True, strict=False
    )  # checked above
    wall = time.perf_counter() - start
    run: dict[str, Any] = {
        "command": "sample",
        "model": c.model,
        "sampler": sampler,
        "steps": steps,
        "n": c.n,
        "seed": c.seed,
        "eta": c.eta,
        "batch_size": c.batch_size,
        "device": str(model.device),
        "wall_seconds": round(wall, 3),
    }
    if model.conditioning is not None:
        run["conditioning"] = conditioning_summary(model)
    if scorer is not None:
        run["clip_score"] = round(scorer.score(images, image_prompts(model, c.n)), 4)
    if plan is not None:
        costs = measure_macs(model)
        run.update(schedule=plan.to_dict(), steps=plan.T, macs_per_sample=costs.schedule(plan), macs_speedup=round(costs.speedup(plan), 3))
    run["provenance"] = run_provenance(c.out / "run.json")
    output_folder(c.out.parent)
    with folder_as_unit(c.out, last="run.json") as tmp:  # samples, grid and run.json replace the old ones together, or none does
        save_npz(tmp / "samples.npz", images)
        save_grid(tmp / "grid.png", images[:64], scale=4 if images.shape[-1] <= 64 else 1)
        write_json(tmp / "run.json", run)
    return run


def check_pipeline_steps(model: DiffusionModel, sampler: str, steps: int) -> None:
    """``--steps`` for :data:`~flexdiff.samplers.PIPELINE` on an alpha-bar model, in ``[1, T]`` before the folder's
    scheduler is asked: diffusers refuses more only inside ``set_timesteps``, a ``ValueError`` that read as an internal
    failure. (flexdiff's own grids check their counts in :func:`~flexdiff.samplers.timesteps.uniform_timesteps`.)"""
    if sampler == PIPELINE and model.noise.kind != "flow":
        check_steps(model.noise.num_train_timesteps, steps)
