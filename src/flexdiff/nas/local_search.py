"""Phase 3: block-wise local search — per block the (cost, loss) front, combined under a global budget.

DiffNAS ranks candidates *within* a block, where the block-wise distillation losses are comparable, instead of
ranking whole sampled networks (the unfairness of a global ranking). Each block keeps its Pareto front of
(MACs, parameters, loss) candidates; the combination minimises the **sum of the blocks' relative losses** (each
already normalised by the teacher block's output power, :func:`~flexdiff.nas.blocks.relative_loss`) subject to
``student MACs <= macs_ratio x teacher MACs`` and ``student params <= params_ratio x teacher params``, where the
student's cost is the fixed stem (conv_in, time embedding, conv_out) plus the chosen blocks' costs.

The combination is an exact multiple-choice knapsack by dynamic programming over the blocks, keeping only the
Pareto-optimal partial sums (MACs, params, loss) that can still meet the budget with the cheapest remaining blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexdiff.errors import FlexdiffError
from flexdiff.utils import pareto


@dataclass(frozen=True)
class Candidate:
    """One candidate of one block with its per-sample MACs, parameters and relative distillation loss."""

    block: str
    index: int  # position in the block's list of choices
    macs: int
    params: int
    loss: float


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates no other candidate beats on all of MACs, parameters and loss (ties keep the first), cheapest first."""
    front = [candidates[i] for i in pareto.pareto_front([(c.loss, c.macs, c.params) for c in candidates])]
    return sorted(front, key=lambda c: (c.macs, c.params))


def _prune(states: list[tuple[int, int, float, tuple[Candidate, ...]]]) -> list[tuple[int, int, float, tuple[Candidate, ...]]]:
    """Keep the partial sums no other partial sum beats on MACs, params and loss."""
    kept: list[tuple[int, int, float, tuple[Candidate, ...]]] = []
    for s in sorted(states, key=lambda s: (s[2], s[0], s[1])):
        if not any(k[0] <= s[0] and k[1] <= s[1] for k in kept):
            kept.append(s)
    return kept


def combine(fronts: list[list[Candidate]], max_macs: float, max_params: float) -> tuple[Candidate, ...]:
    """One candidate per block minimising the summed loss within both budgets (block costs only, stem excluded)."""
    cheapest_macs = [min(c.macs for c in f) for f in fronts]
    cheapest_params = [min(c.params for c in f) for f in fronts]
    if sum(cheapest_macs) > max_macs or sum(cheapest_params) > max_params:
        raise FlexdiffError(
            f"budget {max_macs:.0f} MACs / {max_params:.0f} params for the blocks",
            f"at least the smallest student's {sum(cheapest_macs)} MACs / {sum(cheapest_params)} params",
            "raise --macs-ratio (or --params-ratio)",
        )
    states: list[tuple[int, int, float, tuple[Candidate, ...]]] = [(0, 0, 0.0, ())]
    for b, front in enumerate(fronts):
        rest_macs, rest_params = sum(cheapest_macs[b + 1 :]), sum(cheapest_params[b + 1 :])
        grown = [
            (m + c.macs, p + c.params, loss + c.loss, picked + (c,))
            for m, p, loss, picked in states
            for c in front
            if m + c.macs + rest_macs <= max_macs and p + c.params + rest_params <= max_params
        ]
        states = _prune(grown)
    return min(states, key=lambda s: (s[2], s[0], s[1]))[3]
