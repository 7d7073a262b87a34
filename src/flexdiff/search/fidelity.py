"""Multi-fidelity evaluation: a candidate is scored on a growing number of images (the *rungs*, ``--fidelity 32,64,128``
then ``--n``) and stopped early when it cannot enter the (MACs, rFID) front.

With rungs, every evaluation of the search (baselines included) generates in batches that end at the rungs; at each
rung below ``n`` the rFID of the images so far against the teacher's images from the same first noises is kept in
the result's ``rungs`` and, for a searched candidate, written as the trial's intermediate value (step = images) and
put to :class:`FrontPruner`. Its rule: a candidate is dominated at rung ``m`` when something already evaluated in full
(a searched trial or a baseline) costs no more MACs and scored better at ``m`` by more than ``margin`` (relative) —
the candidate would then, within the noise of ``m`` images, not be on the front whatever the remaining images say.
Comparisons are always at the same rung (the same first ``m`` noises), so the small-sample bias of rFID is shared.
With ``--prune-margin inf`` nothing is stopped and the batches are not cut: the rungs' rFID is only recorded (from the
first ``m`` images of each evaluation), so a study can be replayed later to see what a margin would have stopped.

Optuna's ``Trial.report`` / ``should_prune`` refuse multi-objective studies, so the intermediate values go through
the storage and the pruner is asked directly; it is an ordinary Optuna ``BasePruner`` and a stopped trial is Optuna's
``PRUNED``, with its partial scores as the user attribute ``result`` (``pruned_at``, ``rungs``): optuna-dashboard shows
them. The front and the table hold only complete (fully evaluated) trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, Trial

from flexdiff.errors import FlexdiffError

#: The relative rFID margin by which a cheaper evaluated schedule must beat a candidate at a rung to stop it. Chosen by
#: replaying the rule over a 120-trial study that recorded its rungs (benchmarks/search_cost.py, pruner_replay): rFID
#: on 32..128 images is noisy enough that every margin below 1 stopped the schedule the full search picks at 1/2.
DEFAULT_MARGIN = 1.0


def check_rungs(rungs: Sequence[int], n: int) -> tuple[int, ...]:
    """Rungs are increasing image counts in [2, n); the last rung is always ``n`` itself (not listed)."""
    bad = [m for m in rungs if not 2 <= m < n]
    if bad or list(rungs) != sorted(set(rungs)):
        raise FlexdiffError(f"--fidelity {','.join(map(str, rungs))}", f"increasing image counts in [2, --n={n})", "pass e.g. --fidelity 32,64,128 (or none: every candidate on all --n images)")
    return tuple(rungs)


class FrontPruner(BasePruner):
    """Prunes a trial whose intermediate rFID at its latest rung is worse, by more than ``margin``, than that of a
    fully evaluated schedule (a complete trial of the study, or one of ``baselines``) of no higher MACs."""

    def __init__(self, margin: float = DEFAULT_MARGIN, baselines: Sequence[dict[str, Any]] = ()) -> None:
        if not 0 <= margin:
            raise FlexdiffError(f"--prune-margin {margin}", "a relative margin >= 0", "pass e.g. --prune-margin 1")
        self.margin = margin
        self.baselines = [r for r in baselines if r.get("rungs")]

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        macs = trial.user_attrs.get("macs")
        if step is None or macs is None:
            return False
        from flexdiff.search.study import evaluated

        rows = [t.user_attrs.get("result") or {} for t in evaluated(study)] + self.baselines
        return dominated(rows, macs, step, trial.intermediate_values[step], self.margin)


def dominated(rows: Sequence[dict[str, Any]], macs: float, step: int, value: float, margin: float) -> bool:
    """The pruning rule: some fully evaluated row (with its ``rungs``) costs no more than ``macs`` and scored an rFID
    at rung ``step`` better than ``value`` by more than ``margin`` (relative). Also replayed over a recorded study to
    choose the margin (``benchmarks/search_cost.py``)."""
    return any(r["macs"] <= macs and (v := (r.get("rungs") or {}).get(str(step))) is not None and v * (1 + margin) < value for r in rows)


def report(trial: Trial, step: int, value: float) -> None:
    """``trial.report`` for a multi-objective study: the intermediate value written through its storage."""
    trial.study._storage.set_trial_intermediate_value(trial._trial_id, step, value)


def should_prune(trial: Trial, pruner: BasePruner) -> bool:
    """``trial.should_prune`` for a multi-objective study: ``pruner`` asked about the trial as stored."""
    return pruner.prune(trial.study, trial.study._storage.get_trial(trial._trial_id))
