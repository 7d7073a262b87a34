"""The Flexiffusion schedule search (the ``search`` extra: optuna, torchmetrics, scikit-learn, matplotlib).

Settings and checks (:mod:`.config`), the genome space (:mod:`.space`), strategies (:mod:`.strategies`, a registry),
the Optuna study (:mod:`.study`), the teacher reference (:mod:`.reference`), one worker's context and scoring
(:mod:`.context`), the final validation (:mod:`.validation`), the artefacts (:mod:`.artefacts`) and the job
(:mod:`.run`).
"""

from flexdiff.utils.optional import require

require("optuna", "search", "the schedule search")
