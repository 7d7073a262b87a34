"""The strategy registry: a strategy is an Optuna sampler factory that proposes genomes (through
:meth:`~flexdiff.search.space.GenomeSpace.suggest`). The expensive evaluation stays outside it (ask/tell)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna.samplers import BaseSampler

from flexdiff.utils.registry import Registry

#: factory(space, schedule_key, budgets, seed, seeds) -> an Optuna sampler; ``budgets`` are the MACs budgets the run
#: cares about (None: unbounded), ``seeds`` the evaluated segment-shaped baselines with their schedule keys.
StrategyFactory = Callable[[Any, Callable[[Any], str], Sequence[float] | None, int, Sequence[tuple[Any, str]]], BaseSampler]

STRATEGIES: Registry[StrategyFactory] = Registry("a strategy", "pick one with --strategy")


def register_strategy(name: str) -> Callable[[StrategyFactory], StrategyFactory]:
    """Decorator: make a sampler factory available as ``--strategy name`` (and to the strategy contract tests)."""
    return STRATEGIES.decorator(name)
