"""A search's artefacts, written as a unit: ``results.json`` (with its provenance), ``best.json`` and one schedule
file per Pareto point in ``schedules/``; and the row <-> schedule conversion every reader of them uses."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from flexdiff.provenance import run_provenance
from flexdiff.schedule import Schedule, Step, bind
from flexdiff.search.context import SearchContext
from flexdiff.utils.io import write_json
from flexdiff.utils.pareto import pareto_front


def schedule_of_row(row: dict[str, Any], timesteps: Sequence[int], sampler: str) -> Schedule:
    """The schedule a trial row of ``results.json`` (or of the study) describes, on the teacher's ``timesteps``;
    ``sampler`` is the run's, for rows that do not name their own (rows of a ``--solver`` search do)."""
    meta = {"family": row.get("family", "custom"), **({"genome": row["genome"]} if row.get("genome") else {})}
    return Schedule(tuple(Step.parse(s) for s in row["steps"]), tuple(timesteps), str(row.get("sampler", sampler)), str(row.get("name", "")), meta)


def _bound(ctx: SearchContext, schedule: Schedule) -> Schedule:
    """A schedule file records the model it was searched for (refused on another: :mod:`flexdiff.schedule.binding`)."""
    return bind(schedule, ctx.model.binding(schedule.sampler))


def file_name(name: str, limit: int = 120) -> str:
    """``NAME.json``; a name too long for a file system (a genome of many segments) is cut and given a digest of itself."""
    if len(name) <= limit:
        return f"{name}.json"
    return f"{name[:limit - 13]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}.json"


def write_results(ctx: SearchContext, baselines: list[dict[str, Any]], searched: list[dict[str, Any]], teacher: dict[str, Any], validated: list[dict[str, Any]],
                  pruned: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """``results.json`` and the schedule files of the front (``pruned``: candidates stopped early, listed only)."""
    c, out = ctx.config, ctx.config.out
    budget = ctx.max_macs
    within = [r for r in validated if r["macs"] <= budget]
    best = min(within, key=lambda r: (r["rfid"], r["macs"])) if within else None
    everything = baselines + searched
    front = [everything[i] for i in pareto_front([(r["macs"], r["rfid"]) for r in everything])]
    # the artefacts describe this run's front and budget only: files of an earlier run in OUT (a point since
    # dominated, a best for another --speedup) are removed once the new ones are written
    schedules_dir = out / "schedules"
    schedules_dir.mkdir(exist_ok=True)
    files = {schedules_dir / file_name(row["name"]): row for row in front if row.get("steps")}  # a peer's row has no plan to write
    for path, row in files.items():
        _bound(ctx, schedule_of_row(row, ctx.timesteps, c.sampler)).save(path)
    for path in schedules_dir.glob("*.json"):
        if path not in files:
            path.unlink()
    planned = [r for r in within if r.get("steps")]
    best_plan = min(planned, key=lambda r: (r["rfid"], r["macs"])) if planned else None  # what enable() can apply, where a peer is best
    if best_plan is not None:
        _bound(ctx, schedule_of_row(best_plan, ctx.timesteps, c.sampler)).save(out / "best.json")
    else:
        (out / "best.json").unlink(missing_ok=True)
    results = {
        "config": c.to_json(), "study": ctx.study_name, "storage": c.storage_url, "teacher": teacher,
        "full_step_macs": ctx.costs.full, "partial_step_macs": list(ctx.costs.partial), "budget_macs": budget,
        "budget_speedup": round(ctx.costs.full * len(ctx.timesteps) / budget, 4),
        "best": best, "validated": validated, "pareto": [{k: r[k] for k in ("kind", "name", "macs", "macs_speedup", "rfid", "paired")} for r in front],
        "trials": {"baselines": baselines, "searched": searched, "pruned": list(pruned)},
        # --reuse: image x active steps this process did not compute, and the bytes its stored runs hold at the end
        "reuse": {"saved_image_steps": ctx.trajectories.saved_steps, "stored_bytes": ctx.trajectories.nbytes} if ctx.trajectories is not None else None,
        **run_provenance(out / "results.json"),  # command(s), versions, machine: what produced these numbers
    }
    write_json(out / "results.json", results, indent=1)
    return results
