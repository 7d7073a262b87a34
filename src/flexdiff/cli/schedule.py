"""``flexdiff schedule ...``: write schedule files (the teacher, the baselines, a Flexiffusion genome)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flexdiff.cli._app import MODEL, SAMPLER, TEACHER_STEPS, F, app, guard
from flexdiff.errors import FlexdiffError
from flexdiff.utils.text import escape

if TYPE_CHECKING:
    from flexdiff.schedule import Schedule

schedule_app = typer.Typer(no_args_is_help=True, help="Write schedule files (the teacher, the baselines, a Flexiffusion genome).")
app.add_typer(schedule_app, name="schedule")


SCHEDULE_OUT = typer.Option(..., "--out", help="schedule JSON file to write")


def _schedule_command(fn: F) -> F:
    """A ``flexdiff schedule`` subcommand under the error net, its ``--out`` checked before any work."""

    @functools.wraps(fn)
    def checked(*args: object, **kwargs: object) -> object:
        _check_schedule_file(str(kwargs["out"]))
        return fn(*args, **kwargs)

    return schedule_app.command(fn.__name__.removeprefix("schedule_"))(guard(checked))  # type: ignore[return-value]


def _check_schedule_file(out: str) -> None:
    """``--out`` names a file: a trailing separator or an existing folder names a folder (``Path`` would drop the
    separator and write a file called like the folder)."""
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        raise FlexdiffError(f"--out {out}", "a schedule file path, not a folder", f"pass e.g. --out {Path(out) / 'schedule.json'}")


def _teacher(model: str, sampler: str, steps: int) -> tuple[list[int], str]:
    """The teacher's grid (with --sampler pipeline: the folder's scheduler's) and the sampler (``auto`` resolved)."""
    from flexdiff.either_loop import default_sampler, teacher_grid
    from flexdiff.models import load_model
    from flexdiff.sample_job import check_pipeline_steps

    m = load_model(model, "cpu")
    sampler = default_sampler(m, sampler)
    check_pipeline_steps(m, sampler, steps)
    return teacher_grid(m, sampler, steps), sampler


def _write_schedule(plan: "Schedule", out: str, model: str) -> None:
    from flexdiff.models import load_model
    from flexdiff.schedule import bind

    m = load_model(model, "cpu")
    plan.check_branches(m.layout.num_branches)
    bind(plan, m.binding(plan.sampler)).save(Path(out))  # the file records the model it was written for
    print(f"{escape(plan.name)}: {plan.counts()} -> {escape(str(out))}")


@_schedule_command
def schedule_full(out: str = SCHEDULE_OUT, model: str = MODEL, sampler: str = SAMPLER, steps: int = TEACHER_STEPS) -> None:
    """The teacher: every one of the T steps full."""
    from flexdiff.schedule import full

    _write_schedule(full(*_teacher(model, sampler, steps)), out, model)


@_schedule_command
def schedule_ddim(
    k: int = typer.Option(..., "--k", help="number of active (full) steps, evenly spread"),
    out: str = SCHEDULE_OUT,
    model: str = MODEL,
    sampler: str = SAMPLER,
    steps: int = TEACHER_STEPS,
) -> None:
    """DDIM-k: k evenly spread full steps, the rest null (the sampler jumps over them)."""
    from flexdiff.schedule import ddim_k

    ts, sampler = _teacher(model, sampler, steps)
    _write_schedule(ddim_k(ts, k, sampler), out, model)


@_schedule_command
def schedule_deepcache(
    interval: int = typer.Option(..., "--interval", help="N: one full step every N steps"),
    branch: int = typer.Option(0, "--branch", help="skip branch of the partial steps (0 = shallowest)"),
    center: int | None = typer.Option(None, "--center", help="non-uniform: full steps cluster around this step"),
    power: float = typer.Option(1.4, "--power", help="non-uniform: clustering power p"),
    out: str = SCHEDULE_OUT,
    model: str = MODEL,
    sampler: str = SAMPLER,
    steps: int = TEACHER_STEPS,
) -> None:
    """DeepCache 1:N, uniform (default) or non-uniform (--center)."""
    from flexdiff.schedule import deepcache_nonuniform, deepcache_uniform

    ts, sampler = _teacher(model, sampler, steps)
    plan = deepcache_uniform(ts, interval, branch, sampler) if center is None else deepcache_nonuniform(ts, interval, branch, center, power, sampler)
    _write_schedule(plan, out, model)


@_schedule_command
def schedule_genome(
    segments: str = typer.Option(
        ..., "--segments", help="per segment BRANCH:INTERVAL, comma-separated, e.g. 0:3,1:2,0:4; append @POWER for unequal segments (e.g. 0:3,1:2,0:4@1.5)"
    ),
    out: str = SCHEDULE_OUT,
    model: str = MODEL,
    sampler: str = SAMPLER,
    steps: int = TEACHER_STEPS,
) -> None:
    """A Flexiffusion genome: T cut into segments (equal, or at a spacing power), each full -> (interval - 1) partials -> nulls."""
    from flexdiff.schedule import Genome

    ts, sampler = _teacher(model, sampler, steps)
    _write_schedule(Genome.parse(segments).expand(ts, sampler), out, model)
