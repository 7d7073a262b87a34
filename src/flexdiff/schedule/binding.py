"""What a schedule file was made for, and the refusal to apply it elsewhere.

A schedule searched on one model means nothing on another: its partial steps name branches of that model and its
quality was measured with that model's weights and noise schedule. Schedule files written by ``flexdiff search`` and
``flexdiff schedule`` therefore carry a binding in ``meta["bound_to"]``: the denoiser's weights fingerprint, its branch
labels, its noise schedule's fingerprint and the scheduler it runs with. Applying the file to a model (or pipeline)
whose binding differs is a one-line error naming the field; ``strict=False`` (``--ignore-binding``) overrides it.
Files without a binding (hand-written ones, older ones) apply anywhere their branches and timesteps fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from flexdiff.errors import FlexdiffError
from flexdiff.schedule.schedule import BINDING_KEY, Schedule

KEY = BINDING_KEY


@dataclass(frozen=True)
class Binding:
    model: str  # the denoiser's weights fingerprint
    branches: tuple[str, ...]  # its branch labels, in branch order
    noise: str  # the noise schedule's fingerprint (alpha-bars, prediction type, clipping)
    scheduler: str  # what runs the steps: "flexdiff:<sampler>" for flexdiff's own loop, else the diffusers class

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "branches": list(self.branches)}


def bind(schedule: Schedule, binding: Binding) -> Schedule:
    """The same schedule, recording what it was made for."""
    return replace(schedule, meta={**schedule.meta, KEY: binding.to_json()})


def check_binding(schedule: Schedule, found: Binding | None | Callable[[], Binding | None], where: object = None, strict: bool = True) -> None:
    """Refuse ``schedule`` on a model whose binding differs from the one it records (unless ``strict`` is false).
    The scheduler is compared only when both sides name a diffusers scheduler class (a schedule from flexdiff's own
    loop runs in a pipeline with the pipeline's scheduler by design). ``found`` may be a callable: the binding (a
    weights hash) is then computed only for a schedule that records one. None: the object cannot say what it is
    (an integration without a binding), so there is nothing to compare."""
    recorded = schedule.meta.get(KEY)
    if not strict or not isinstance(recorded, dict):
        return
    found = found() if callable(found) else found
    if found is None:
        return
    name = where or schedule.name or "schedule"
    fields = ["model", "branches", "noise"]
    if not str(recorded.get("scheduler", "")).startswith("flexdiff:") and not found.scheduler.startswith("flexdiff:"):
        fields.append("scheduler")
    mine = found.to_json()
    differs = [f for f in fields if recorded.get(f) != mine[f]]
    if differs:
        what = {"model": "weights", "branches": "branch layout", "noise": "noise schedule", "scheduler": "scheduler"}
        detail = ", ".join(f"{what[f]} {recorded.get(f)!r:.40} here {mine[f]!r:.40}" for f in differs)
        raise FlexdiffError(
            f"{name}: made for another model ({detail})",
            "a schedule made for this model and scheduler",
            "search or write one for it (flexdiff search / flexdiff schedule --model ...), or pass --ignore-binding (strict=False) to apply it anyway",
        )
