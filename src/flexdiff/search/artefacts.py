"""A search's artefacts, written as a unit: ``results.json`` (with its provenance), ``best.json`` and one schedule
file per Pareto point in ``schedules/``; and the row <-> schedule conversion every reader of them uses."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flexdiff.provenance import run_provenance
from flexdiff.schedule import Schedule, Step, bind
from flexdiff.search.config import objective_of
from flexdiff.search.context import SearchContext
from flexdiff.utils.io import folder_as_unit, read_json_or_none, write_json
from flexdiff.utils.pareto import pareto_front
from flexdiff.utils.text import mask_password, safe_file_stem

#: what a search writes in OUT: the results (written last: it marks the set complete), the best plan, the front's plans
RESULTS, BEST, SCHEDULES = "results.json", "best.json", "schedules"


def schedule_of_row(row: dict[str, Any], timesteps: Sequence[int], sampler: str) -> Schedule:
    """The schedule a trial row of ``results.json`` (or of the study) describes, on the teacher's ``timesteps``;
    ``sampler`` is the run's, for rows that do not name their own (rows of a ``--solver`` search do)."""
    meta = {"family": row.get("family", "custom"), **({"genome": row["genome"]} if row.get("genome") else {})}
    return Schedule(tuple(Step.parse(s) for s in row["steps"]), tuple(timesteps), str(row.get("sampler", sampler)), str(row.get("name", "")), meta)


def _bound(ctx: SearchContext, schedule: Schedule) -> Schedule:
    """A schedule file records the model it was searched for (refused on another: :mod:`flexdiff.schedule.binding`)."""
    return bind(schedule, ctx.model.binding(schedule.sampler))


def file_name(name: str, limit: int = 120) -> str:
    """``NAME.json`` inside ``schedules/``. The name comes from the study (a trial's result, which anyone with access
    to the storage can write), so it is made a safe file name first (:func:`~flexdiff.utils.text.safe_file_stem`: no
    ``/``, ``..`` or control characters; a name that had to change gets a digest of itself); a name too long for a file
    system (a genome of many segments) is cut and given a digest too."""
    return f"{safe_file_stem(name, limit)}.json"


def _front_files(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``schedules/NAME.json`` -> row for each plan of the front. Names come from the study, where two trials may say
    the same (a hand-edited or hostile storage): a second row with a taken file name gets its steps' digest in its
    name, so no front point's file is overwritten by another's."""
    files: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = f"{SCHEDULES}/{file_name(row['name'])}"
        if name in files:
            digest = hashlib.sha256(" ".join(map(str, row["steps"])).encode()).hexdigest()[:8]
            name = f"{SCHEDULES}/{file_name(str(row['name']) + '-' + digest)}"
        files[name] = row
    return files


def spent_images(
    ctx: SearchContext,
    baselines: list[dict[str, Any]],
    searched: list[dict[str, Any]],
    validated: list[dict[str, Any]],
    pruned: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> dict[str, float]:
    """What the search generated, per phase, in teacher-image equivalents (images x their MACs per image / the
    teacher's), counted from the studies (every worker's and every resumed run's evaluations; a candidate stopped on
    a rung counts the images it made) and the validation: the measured counterpart of the estimate's
    (``expected_teacher_image_equivalents``). Images a stored run replayed (``--reuse``) are counted as made."""
    c, teacher = ctx.config, ctx.costs.full * len(ctx.timesteps)

    def made(rows: list[dict[str, Any]]) -> float:
        return sum(int(r.get("pruned_at") or c.n) * float(r["macs"]) / teacher for r in rows)

    return {
        "reference": float(c.n),
        "baselines": round(made(baselines) + made(pruned[0]), 1),
        "search": round(made(searched) + made(pruned[1]), 1),
        "validation": round(c.validate_n * (1 + sum(float(r["macs"]) / teacher for r in validated)), 1),
    }


def write_results(
    ctx: SearchContext,
    baselines: list[dict[str, Any]],
    searched: list[dict[str, Any]],
    teacher: dict[str, Any],
    validated: list[dict[str, Any]],
    pruned: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], []),
    phases: dict[str, float] | None = None,
) -> dict[str, Any]:
    """``results.json`` and the schedule files of the front (``pruned``: plan baselines and searched candidates stopped
    early on the rungs, listed only;
    ``phases``: this process's wall seconds per phase, beside the estimate's phases)."""
    c, out = ctx.config, ctx.config.out
    budget, objective = ctx.max_macs, c.objective
    within = [r for r in validated if r["macs"] <= budget]
    best = min(within, key=lambda r: (objective_of(r, objective), r["macs"])) if within else None
    everything = baselines + searched
    front = [everything[i] for i in pareto_front([(r["macs"], objective_of(r, objective)) for r in everything])]
    # The artefacts describe this run's front and budget only, and are written as a unit: results.json, best.json and
    # schedules/ are staged beside OUT and swapped in together (utils.io.folder_as_unit), so a failure anywhere (a
    # full disk) leaves the previous complete set. Files of schedules/ that flexdiff wrote (the previous results.json's
    # manifest) and that this front no longer holds are dropped; any other file there is a user's and is kept.
    files = _front_files([row for row in front if row.get("steps")])  # a peer's row has no plan to write
    planned = [r for r in within if r.get("steps")]
    best_plan = min(planned, key=lambda r: (objective_of(r, objective), r["macs"])) if planned else None  # what enable() can apply, where a peer is best
    written = sorted(files) + ([BEST] if best_plan is not None else [])
    results = {
        # a storage URL's password never reaches a file (the report shows these; the config a worker gets keeps it)
        "config": {**c.to_json(), "storage": mask_password(c.storage) if c.storage else None},
        "study": ctx.study_name,
        "storage": mask_password(c.storage_url),
        "teacher": teacher,
        "full_step_macs": ctx.costs.full,
        "partial_step_macs": list(ctx.costs.partial),
        "budget_macs": budget,
        "budget_speedup": round(ctx.costs.full * len(ctx.timesteps) / budget, 4),
        "best": best,
        "validated": validated,
        "pareto": [{k: r[k] for k in ("kind", "name", "macs", "macs_speedup", "rfid", "paired")} for r in front],
        "trials": {"baselines": baselines, "searched": searched, "pruned": list(pruned[1]), "pruned_baselines": list(pruned[0])},
        # --reuse: image x active steps this process did not compute, and the bytes its stored runs hold at the end
        "phase_seconds": phases,
        "expected_teacher_image_equivalents": ctx.expected_images,  # the estimate's cost per phase, device-free (images x MACs / the teacher's)
        "teacher_image_equivalents": spent_images(ctx, baselines, searched, validated, pruned),  # what the studies and the validation made
        "reuse": {"saved_image_steps": ctx.trajectories.saved_steps, "stored_bytes": ctx.trajectories.nbytes} if ctx.trajectories is not None else None,
        "files": written,  # the manifest: what this run wrote beside results.json (a rerun removes only those)
        **run_provenance(out / "results.json"),  # command(s), versions, machine: what produced these numbers
    }
    ours = set(_manifest(out))
    with folder_as_unit(out, last=RESULTS) as tmp:
        (tmp / SCHEDULES).mkdir()
        for name, row in files.items():
            _bound(ctx, schedule_of_row(row, ctx.timesteps, c.sampler)).save(tmp / name)
        for path in sorted((out / SCHEDULES).glob("*")) if (out / SCHEDULES).is_dir() else ():
            name = f"{SCHEDULES}/{path.name}"
            if name not in files and name not in ours:  # a user's file: carried over as it is
                _carry(path, tmp / name)
        if best_plan is not None:
            _bound(ctx, schedule_of_row(best_plan, ctx.timesteps, c.sampler)).save(tmp / BEST)
        write_json(tmp / RESULTS, results, indent=1)
    if best_plan is None and BEST in ours:  # an earlier run's best, for another budget: not next to results without one
        (out / BEST).unlink(missing_ok=True)
    return results


def _manifest(out: Path) -> list[str]:
    """The files the previous results.json in ``out`` says flexdiff wrote (none when it is absent or unreadable, or
    older than the manifest: then nothing is removed that this run does not overwrite)."""
    old = read_json_or_none(out / RESULTS)
    files = old.get("files") if isinstance(old, dict) else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _carry(source: Path, target: Path) -> None:
    """``source`` into the staged folder: a hard link where the file system allows (no copy), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copy2(source, target, follow_symlinks=False)
