"""Multi-fidelity evaluation: a candidate is scored on a growing number of images (the *rungs*, ``--fidelity 16,64``
then ``--n``) and stopped early when it cannot enter the (MACs, rFID) front within the search's budgets.

With rungs, every evaluation of the search (plan baselines included) generates in batches that end at the rungs; at
each rung below ``n`` the rFID (``rungs``) and the paired distance (``paired_rungs``) of the images so far against
the teacher's images from the same first noises are kept in the result; for a trial that may be stopped the paired
distance is written as its intermediate value (step = images) and :class:`FrontPruner` is asked. Its rule
(:func:`dominated`): a candidate is of use only within the budgets at or above its MACs; it is stopped at rung ``m``
when within every one of them something already evaluated in full (a searched trial or a plan baseline) had a
paired distance on the same first ``m`` images lower by more than the margin (relative; it shrinks as 1/sqrt(m)).

Why the paired distance and not rFID at the rungs: rFID on ``m`` images carries a small-sample bias that grows as
``m`` shrinks and is shared by every candidate, so relative rFID differences at 32 images say little (replayed over
a 120-trial study, every margin that stopped a useful share also stopped the schedule the full search picks); the
paired distance is a mean over images, unbiased at any ``m``, and orders schedules as rFID does (Spearman 0.98
between the two over the 109 fully evaluated schedules of a UNet study; of 329 pairs where the paired distance of a
cheaper schedule was lower by 10 %, its rFID was lower too in 325). Comparisons are at the same rung (the same first
``m`` noises), so the images that are hard for one schedule are hard for the other.
With ``--prune-margin inf`` nothing is stopped and the batches are not cut: the rungs are only recorded (from the
first ``m`` images of each evaluation), so a study can be replayed later to see what a margin would have stopped.

Optuna's ``Trial.report`` / ``should_prune`` refuse multi-objective studies, so the intermediate values go through
the storage and the pruner is asked directly; it is an ordinary Optuna ``BasePruner`` and a stopped trial is Optuna's
``PRUNED``, with its partial scores as the user attribute ``result`` (``pruned_at``, ``rungs``, ``paired_rungs``):
optuna-dashboard shows them. The front and the table hold only complete (fully evaluated) trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, Trial

from flexdiff.errors import FlexdiffError

#: The relative margin at :data:`MARGIN_IMAGES` images; at a rung of ``m`` images it is ``margin * sqrt(64 / m)``,
#: shrinking as the standard error of a mean over ``m`` images does. Chosen with the ladder :data:`DEFAULT_RUNGS` by
#: replaying the rule over 120-trial studies that recorded their rungs (benchmarks/search_cost.py, ``pruner_replay``):
#: on the first (seed 0) the largest share of work saved with no *false stop* (a stopped candidate whose full rFID
#: would have been the best within one of its budgets when it was stopped); over three seeds' studies it makes 5 false
#: stops, all in one, none of them that study's final pick (0.2 makes none, at 41 % of the images instead of 27 %),
#: and the searches run with it validate within the exhaustive searches' seed spread at every budget.
DEFAULT_MARGIN = 0.1
#: the rung count the margin is stated at
MARGIN_IMAGES = 64
#: the ladder ``flexdiff search`` uses by default (``--fidelity``), chosen with :data:`DEFAULT_MARGIN`
DEFAULT_RUNGS = (16, 64)


def margin_at(margin: float, images: int) -> float:
    """The relative margin at a rung of ``images`` images (``margin`` at :data:`MARGIN_IMAGES`)."""
    return margin * math.sqrt(MARGIN_IMAGES / images)


def check_rungs(rungs: Sequence[int], n: int) -> tuple[int, ...]:
    """Rungs are increasing image counts in [2, n); the last rung is always ``n`` itself (not listed)."""
    bad = [m for m in rungs if not 2 <= m < n]
    if bad or list(rungs) != sorted(set(rungs)):
        raise FlexdiffError(
            f"--fidelity {','.join(map(str, rungs))}",
            f"increasing image counts in [2, --n={n})",
            "pass e.g. --fidelity 16,64 (or none: every candidate on all --n images)",
        )
    return tuple(rungs)


class FrontPruner(BasePruner):
    """Prunes a trial that cannot enter the front within any of the search's ``budgets`` (MACs per image) at or above
    its own cost: within each, a fully evaluated schedule (a complete trial of the study, or one of ``baselines``) had
    a paired distance lower by more than the margin at the trial's latest rung (see :func:`dominated`)."""

    def __init__(self, margin: float = DEFAULT_MARGIN, baselines: Sequence[dict[str, Any]] = (), budgets: Sequence[float] = ()) -> None:
        if not 0 <= margin:
            raise FlexdiffError(f"--prune-margin {margin}", "a relative margin >= 0", "pass e.g. --prune-margin 0.1")
        self.margin, self.budgets = margin, tuple(budgets)
        self.baselines = [r for r in baselines if r.get("paired_rungs")]

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        macs = trial.user_attrs.get("macs")
        if step is None or macs is None:
            return False
        from flexdiff.search.study import evaluated

        rows = [t.user_attrs.get("result") or {} for t in evaluated(study)] + self.baselines
        return dominated(rows, macs, step, trial.intermediate_values[step], self.margin, self.budgets)


def dominated(rows: Sequence[dict[str, Any]], macs: float, step: int, value: float, margin: float, budgets: Sequence[float] = ()) -> bool:
    """The pruning rule. The candidate (``macs``, paired distance ``value`` on the first ``step`` images) is of use
    only within the ``budgets`` at or above its cost: it is stopped when within every one of them some fully
    evaluated row (with its ``paired_rungs``) had a paired distance at rung ``step`` lower by more than
    :func:`margin_at` (relative), and at once when it is over every budget. Without budgets, the Pareto rule: some
    row of no higher cost did. Also replayed over a recorded study (``benchmarks/search_cost.py``)."""
    limits = [b for b in budgets if b >= macs] if budgets else [macs]
    factor = 1 + margin_at(margin, step)
    return all(
        any(r["macs"] <= limit and (v := (r.get("paired_rungs") or {}).get(str(step))) is not None and v * factor < value for r in rows) for limit in limits
    )


def rfid_from_paired(pairs: Sequence[tuple[float, float]]) -> Callable[[float], float] | None:
    """rFID predicted from a paired distance: the least-squares line of log rFID on log paired distance over fully
    evaluated schedules' ``(paired, rfid)`` (the two order schedules alike; see the module docstring). None with
    fewer than two distinct positive points. The paired distance at a rung estimates the full one without bias, so
    a stopped candidate's prediction is comparable with measured rFIDs (the evolution's parents, never the front)."""
    points = [(math.log(p), math.log(r)) for p, r in pairs if p > 0 and r > 0]
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return lambda paired: math.exp(my + slope * (math.log(max(paired, 1e-12)) - mx))


def report(trial: Trial, step: int, value: float) -> None:
    """``trial.report`` for a multi-objective study: the intermediate value written through its storage."""
    trial.study._storage.set_trial_intermediate_value(trial._trial_id, step, value)


def should_prune(trial: Trial, pruner: BasePruner) -> bool:
    """``trial.should_prune`` for a multi-objective study: ``pruner`` asked about the trial as stored."""
    return pruner.prune(trial.study, trial.study._storage.get_trial(trial._trial_id))
