"""Block-wise local search: per-block Pareto fronts and the budgeted combination (checked against brute force)."""

from __future__ import annotations

import itertools
import random

import pytest

from flexdiff.errors import FlexdiffError
from flexdiff.nas.local_search import Candidate, combine, pareto_front


def _blocks(seed: int, n_blocks: int = 4, n_choices: int = 6) -> list[list[Candidate]]:
    rng = random.Random(seed)
    blocks = []
    for b in range(n_blocks):
        blocks.append([Candidate(f"b{b}", i, rng.randint(1, 100), rng.randint(1, 100), round(rng.random(), 4)) for i in range(n_choices)])
    return blocks


def test_pareto_front_keeps_exactly_the_non_dominated() -> None:
    cands = _blocks(0, 1, 30)[0]
    front = pareto_front(cands)
    for c in cands:
        dominated = any(
            o.macs <= c.macs and o.params <= c.params and o.loss <= c.loss and (o.macs, o.params, o.loss) != (c.macs, c.params, c.loss) for o in cands
        )
        assert (c in front) == (not dominated) or any((o.macs, o.params, o.loss) == (c.macs, c.params, c.loss) for o in front)


@pytest.mark.parametrize("seed", range(12))
def test_combination_is_the_brute_force_optimum(seed: int) -> None:
    blocks = _blocks(seed)
    rng = random.Random(1000 + seed)
    max_macs, max_params = rng.randint(120, 300), rng.randint(120, 300)
    feasible = [combo for combo in itertools.product(*blocks) if sum(c.macs for c in combo) <= max_macs and sum(c.params for c in combo) <= max_params]
    if not feasible:
        with pytest.raises(FlexdiffError):
            combine([pareto_front(b) for b in blocks], max_macs, max_params)
        return
    best = min(sum(c.loss for c in combo) for combo in feasible)
    picked = combine([pareto_front(b) for b in blocks], max_macs, max_params)
    assert [c.block for c in picked] == [f"b{i}" for i in range(len(blocks))]
    assert sum(c.macs for c in picked) <= max_macs and sum(c.params for c in picked) <= max_params
    assert sum(c.loss for c in picked) == pytest.approx(best)


def test_budget_below_the_smallest_student_is_a_one_line_error() -> None:
    blocks = _blocks(3)
    with pytest.raises(FlexdiffError, match="--macs-ratio"):
        combine([pareto_front(b) for b in blocks], 3, 10_000)
