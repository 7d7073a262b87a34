"""Search strategies, one per module, in a registry (:mod:`._registry`); adding a strategy is adding a file here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna.samplers import BaseSampler

from flexdiff.search.strategies._registry import (
    STRATEGIES,
    StrategyFactory,
    register_strategy,
)
from flexdiff.utils.registry import import_submodules

import_submodules(__name__, __path__)


def make_sampler(
    strategy: str, space: Any, schedule_key: Callable[[Any], str], max_macs: float | Sequence[float] | None, seed: int, seeds: Sequence[tuple[Any, str]] = ()
) -> BaseSampler:
    """The Optuna sampler of ``strategy`` for ``space``; ``max_macs`` one budget or several (None: unbounded)."""
    budgets = None if max_macs is None else [float(max_macs)] if isinstance(max_macs, (int, float)) else [float(b) for b in max_macs]
    return STRATEGIES.get(strategy)(space, schedule_key, budgets, seed, seeds)


def strategy_names() -> list[str]:
    return STRATEGIES.names()


__all__ = ["STRATEGIES", "StrategyFactory", "make_sampler", "register_strategy", "strategy_names"]
