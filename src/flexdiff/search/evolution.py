"""Flexiffusion's evolutionary search as an Optuna sampler.

Each new trial is one child genome: parents are drawn from the (MACs, rFID) Pareto front and from the best trials
within the cost budget; a child is a crossover of whole segments (probability ``crossover``) followed by a
segment-aware mutation. Visited schedules are memoised (a child whose schedule was already evaluated, or is being
evaluated, is re-drawn). The first ``initial`` children are random genomes. Because it is an Optuna sampler, the
study stays the single source of truth: resuming and several workers need nothing extra.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from flexdiff.schedule import Genome
from flexdiff.search.space import GenomeSpace

PARAMS_ATTR = "evolution:params"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (both coordinates minimised), sorted by the first coordinate."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


class EvolutionSampler(BaseSampler):
    """Proposes whole genomes; Optuna stores them as ordinary parameters of the trial."""

    def __init__(
        self,
        space: GenomeSpace,
        schedule_key: Callable[[Genome], str],
        max_macs: float | None = None,
        seed: int = 0,
        initial: int = 8,
        elite: int = 8,
        crossover: float = 0.3,
        mutation_rate: float = 0.2,
    ) -> None:
        self.space, self.schedule_key, self.max_macs = space, schedule_key, max_macs
        self.initial, self.elite, self.crossover, self.mutation_rate = initial, elite, crossover, mutation_rate
        self._seed = seed
        self._fallback = RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs or trial.user_attrs.get("baseline"):
            return  # an enqueued trial (a baseline or a user's seed) keeps its own parameters
        genome = self.propose(study, trial.number)
        study._storage.set_trial_system_attr(trial._trial_id, PARAMS_ATTR, self.space.to_params(genome))

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        params = trial.system_attrs.get(PARAMS_ATTR, {})
        if param_name in params:
            return params[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def propose(self, study: Study, number: int) -> Genome:
        """A child genome whose schedule no trial has evaluated or is evaluating."""
        rng = random.Random(f"{self._seed}:{number}")  # deterministic per trial number, whatever the worker
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))
        seen = {t.user_attrs.get("key") for t in trials}
        done = [t for t in trials if t.state == TrialState.COMPLETE and (t.user_attrs.get("result") or {}).get("genome")]
        for _ in range(100):
            child = self._child(done, rng)
            if self.schedule_key(child) not in seen:
                return child
        return self.space.random_genome(rng)

    def _child(self, done: list[FrozenTrial], rng: random.Random) -> Genome:
        if len(done) < self.initial:
            return self.space.random_genome(rng)
        parents = self._parents(done)
        a = Genome.parse(rng.choice(parents).user_attrs["result"]["genome"])
        if rng.random() < self.crossover:
            a = self.space.crossover(a, Genome.parse(rng.choice(parents).user_attrs["result"]["genome"]), rng)
        return self.space.mutate(a, rng, self.mutation_rate)

    def _parents(self, done: list[FrozenTrial]) -> list[FrozenTrial]:
        """The Pareto front over (MACs, rFID) plus the ``elite`` lowest-rFID trials within the budget."""
        front = [done[i] for i in pareto_front([(t.values[0], t.values[1]) for t in done])]
        within = [t for t in done if self.max_macs is None or t.values[0] <= self.max_macs]
        best = sorted(within, key=lambda t: t.values[1])[: self.elite]
        return list({t.number: t for t in front + best}.values())


def make_sampler(strategy: str, space: GenomeSpace, schedule_key: Callable[[Genome], str], max_macs: float | None, seed: int) -> BaseSampler:
    """``evolution`` (Flexiffusion), ``nsga2`` (Optuna's NSGA-II) or ``random``: compared at equal budget."""
    from flexdiff.errors import FlexdiffError

    if strategy == "evolution":
        return EvolutionSampler(space, schedule_key, max_macs, seed)
    if strategy == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if strategy == "random":
        return RandomSampler(seed=seed)
    raise FlexdiffError(strategy, "a strategy evolution, nsga2 or random", "pick one with --strategy")
