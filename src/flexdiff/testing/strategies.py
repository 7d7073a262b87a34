"""The strategy contract: every registered strategy, asked through the wrapper the search puts around it, proposes
genomes of the space whose stored parameters give them back, and the same proposals for the same seed."""

from __future__ import annotations

import optuna

from flexdiff.search.space import GenomeSpace
from flexdiff.search.strategies import STRATEGIES, make_sampler
from flexdiff.search.study import Tagged
from flexdiff.testing._suites import register_suite

#: a small space (20 steps, 2-10 segments, 3 branches, two spacings) with a cost model: MACs ~ active steps
SPACE = GenomeSpace(20, (2, 4, 5, 10), 3, spacings=(1.0, 2.0), cost=lambda g: float(sum(s.interval for s in g.segments)))
TIMESTEPS = list(range(950, -1, -50))


def _proposals(name: str, seed: int, trials: int = 8) -> list[str]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    key = lambda g: g.expand(TIMESTEPS).key  # noqa: E731
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=Tagged(make_sampler(name, SPACE, key, [12.0], seed)))
    out = []
    for _ in range(trials):
        trial = study.ask()
        genome = SPACE.suggest(trial)
        assert SPACE.from_params(trial.params) == genome, f"{name}: trial parameters {trial.params} do not give back {genome}"
        assert len(genome.expand(TIMESTEPS).steps) == SPACE.T and len(genome.segments) in SPACE.segment_counts, f"{name}: {genome} is outside the space"
        active = sum(s.interval for s in genome.segments)
        trial.set_user_attr("key", key(genome))
        trial.set_user_attr("result", {"genome": str(genome)})
        study.tell(trial, (float(active), 100.0 / active))
        out.append(str(genome))
    return out


def proposes_genomes_of_the_space_reproducibly(name: str) -> None:
    first = _proposals(name, seed=3)
    assert first == _proposals(name, seed=3), f"{name}: the same seed proposed other genomes"


register_suite("strategy", STRATEGIES, [proposes_genomes_of_the_space_reproducibly])
