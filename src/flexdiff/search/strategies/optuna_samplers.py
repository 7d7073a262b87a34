"""Optuna's own samplers as strategies, compared with the evolution at equal budget (they start from scratch, as they
would for a user, and see only the fixed parameter set of :meth:`~flexdiff.search.space.GenomeSpace.suggest`)."""

from __future__ import annotations

import optuna
from optuna.samplers import BaseSampler

from flexdiff.search.strategies._registry import register_strategy


@register_strategy("nsga2")
def _nsga2(space: object, schedule_key: object, budgets: object, seed: int, seeds: object) -> BaseSampler:
    """Optuna's NSGA-II over (MACs, rFID), population 16."""
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)


@register_strategy("random")
def _random(space: object, schedule_key: object, budgets: object, seed: int, seeds: object) -> BaseSampler:
    """Uniform random genomes: the floor every strategy must beat."""
    return optuna.samplers.RandomSampler(seed=seed)
