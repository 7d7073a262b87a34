"""Flexiffusion's evolutionary search as an Optuna sampler.

Each new trial is one child genome: parents are drawn from the two best (MACs, rFID) Pareto ranks and from the best
trials within the cost budget; a child is a crossover of whole segments (probability ``crossover``) followed by a
segment-aware mutation. Visited schedules are memoised (a child whose schedule was already evaluated, or is being
evaluated, is re-drawn, and so is one costing more than the largest budget). The population is seeded as
AutoDiffusion and Flexiffusion describe: the plan baselines (DDIM-k, DeepCache and forecast 1:N; evaluated once in
their own study, passed in as ``seeds``) are parents from the first child on — a segment-shaped one as itself, any
other as its nearest genome (``projected``: its full steps moved onto the segment grid,
:meth:`GenomeSpace.nearest_genome`), which is proposed unchanged the first time it is drawn as a parent and
afterwards competes with its own measured scores — and the first ``initial`` children are random genomes (half of
them uniform: every segment alike). Candidates the multi-fidelity pruner stopped are parents too, with the rFID their
paired distance predicts. Because it is an Optuna sampler, the study stays the single source of
truth: resuming and several workers need nothing extra.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from flexdiff.schedule import Genome
from flexdiff.search.fidelity import rfid_from_paired
from flexdiff.search.space import GenomeSpace
from flexdiff.search.strategies._registry import register_strategy
from flexdiff.search.study import untagged
from flexdiff.utils.pareto import pareto_ranks

PARAMS_ATTR = "evolution:params"
#: random genomes before the first child (half of them uniform)
INITIAL = 8


@dataclass(frozen=True)
class Member:
    """One evaluated genome of the population: its encoding and both objectives. ``projected``: the nearest genome
    of a plan baseline the segment grid cannot express, scored by that baseline until it is evaluated itself."""

    genome: str
    macs: float
    rfid: float
    projected: bool = False
    paired: float | None = None  # its paired distance (fits the rFID of stopped candidates, :func:`flexdiff.search.fidelity.rfid_from_paired`)


class EvolutionSampler(BaseSampler):
    """Proposes whole genomes; Optuna stores them as ordinary parameters of the trial (the genome's own segments only:
    :meth:`~flexdiff.search.space.GenomeSpace.suggest` asks no more of an ``active_only`` sampler)."""

    active_only = True

    def __init__(
        self,
        space: GenomeSpace,
        schedule_key: Callable[[Genome], str],
        max_macs: float | Sequence[float] | None = None,
        seed: int = 0,
        initial: int = INITIAL,
        elite: int = 8,
        crossover: float = 0.3,
        mutation_rate: float = 0.2,
        seeds: Sequence[tuple[Member, str]] = (),
    ) -> None:
        """``seeds``: evaluated plan baselines as genomes, with their schedule keys (never re-evaluated; a projected
        seed's own schedule is another one, and is evaluated when first drawn)."""
        self.space, self.schedule_key = space, schedule_key
        # several budgets (a benchmark covering 1/2 .. 1/5): an elite within each of them
        self.budgets: list[float | None] = (
            [None] if max_macs is None else [float(max_macs)] if isinstance(max_macs, (int, float)) else [float(b) for b in max_macs]
        )
        self.seeds, self.seed_keys = [m for m, _ in seeds], {k for _, k in seeds}
        # a projected seed's own schedule (another than its baseline's): once some trial holds it, it is a member itself
        self._own_keys = {m.genome: schedule_key(Genome.parse(m.genome)) for m in self.seeds if m.projected}
        self.initial, self.elite, self.crossover, self.mutation_rate = initial, elite, crossover, mutation_rate
        self._seed = seed
        self._fallback = RandomSampler(seed=seed)
        # the parameters proposed for each trial of this process: answering Optuna's ~50 suggest calls per trial from
        # here, not from the trial's system attributes, saves one storage read per parameter (0.25 s a trial on SQLite)
        self._proposed: dict[int, dict[str, Any]] = {}

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs:
            return  # an enqueued trial (a user's seed) keeps its own parameters
        genome = self.propose(study, trial.number)
        self._proposed = {trial._trial_id: self.space.to_params(genome)}  # only the trial being asked is ever looked up
        study._storage.set_trial_system_attr(trial._trial_id, PARAMS_ATTR, self._proposed[trial._trial_id])

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        params = self._proposed.get(trial._trial_id)
        if params is None:
            params = trial.system_attrs.get(PARAMS_ATTR, {})
        if param_name in params:
            return params[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def propose(self, study: Study, number: int) -> Genome:
        """A child genome whose schedule no trial has evaluated or is evaluating (and which is not a seed baseline)."""
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED)
        trials = [t for t in study.get_trials(deepcopy=False, states=states) if not untagged(t)]
        # deterministic per position in the search: the trials before this one that did not fail. A run resumed after a
        # kill (its in-flight trial failed) draws, for its first new trial, what the killed trial drew — the same child
        # from the same parents — so a single-worker search resumes into the trials an uninterrupted one makes. A trial
        # the kill caught before it was tagged stays RUNNING (no worker to fail it by) and holds no position either.
        position = sum(1 for t in trials if t.number < number)
        rng = random.Random(f"{self._seed}:{position}")
        seen = {t.user_attrs.get("key") for t in trials} | self.seed_keys
        done = [
            Member(r["genome"], float(t.values[0]), float(t.values[1]), paired=r.get("paired"))
            for t in trials
            if t.state == TrialState.COMPLETE and (r := t.user_attrs.get("result") or {}).get("genome")
        ]
        done += self._stopped(trials, done)
        seeds = [m for m in self.seeds if not (m.projected and self._own_keys[m.genome] in seen)]
        for _ in range(100):
            child = self._child(done, seeds, rng)
            if self.schedule_key(child) not in seen and self._affordable(child):
                return child
        for _ in range(1000):  # the parents breed nothing new within the budgets: a random genome that is new and within
            child = self.space.random_genome(rng)
            if self.schedule_key(child) not in seen and self._affordable(child):
                return child
        return self.space.random_genome(rng)

    def _affordable(self, genome: Genome) -> bool:
        """Within the largest budget (with the space's cost model): a costlier child is of no use at any budget, so it
        is drawn again instead of spending a trial (a constrained evolution keeps to its constraint)."""
        limits = [b for b in self.budgets if b is not None]
        return self.space.cost is None or not limits or self.space.cost(genome) <= max(limits)

    def _stopped(self, trials: Sequence[FrozenTrial], done: list[Member]) -> list[Member]:
        """Candidates the multi-fidelity pruner stopped, as members with the rFID their paired distance at the rung
        predicts (fitted over the fully evaluated members and seeds): a stopped candidate is no front point, yet still
        a parent as it would have been fully evaluated — the lineages the evolution grows from mediocre parents go on
        (without it, a search pruning most children starves to its seeds)."""
        rows = [r for t in trials if t.state == TrialState.PRUNED and "pruned_at" in (r := t.user_attrs.get("result") or {}) and r.get("genome")]
        if not rows:
            return []
        predict = rfid_from_paired([(m.paired, m.rfid) for m in done + self.seeds if m.paired is not None])
        if predict is None:
            return []
        return [Member(r["genome"], float(r["macs"]), predict(float(r["paired_rungs"][str(r["pruned_at"])]))) for r in rows]

    def _child(self, done: list[Member], seeds: list[Member], rng: random.Random) -> Genome:
        if len(done) < self.initial:
            return self.space.uniform_genome(rng) if len(done) % 2 == 0 else self.space.random_genome(rng)
        parents = self._parents(done + seeds)
        parent = rng.choice(parents)
        a = Genome.parse(parent.genome)
        if parent.projected:  # not evaluated yet: first the baseline's own plan on the segment grid
            return a
        if rng.random() < self.crossover:
            a = self.space.crossover(a, Genome.parse(rng.choice(parents).genome), rng)
        return self.space.mutate(a, rng, self.mutation_rate)

    def _parents(self, pool: list[Member]) -> list[Member]:
        """The two best Pareto ranks over (MACs, rFID) plus the ``elite`` lowest-rFID members within each budget."""
        front = [pool[i] for i in pareto_ranks([(m.macs, m.rfid) for m in pool], 2)]
        best = []
        for budget in self.budgets:
            within = [m for m in pool if budget is None or m.macs <= budget]
            best += sorted(within, key=lambda m: m.rfid)[: self.elite]
        return list(dict.fromkeys(front + best))


@register_strategy("evolution")
def _evolution(
    space: GenomeSpace, schedule_key: Callable[[Genome], str], budgets: Sequence[float] | None, seed: int, seeds: Sequence[tuple[Member, str]]
) -> BaseSampler:
    """Flexiffusion's evolution, seeded with the segment-shaped baselines."""
    return EvolutionSampler(space, schedule_key, budgets, seed, seeds=seeds)
