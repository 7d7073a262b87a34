from __future__ import annotations

import random

import optuna
import pytest

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import FULL, Genome, Segment
from flexdiff.search.evolution import pareto_front
from flexdiff.search.space import GenomeSpace

TS = list(range(980, -1, -20))
SPACE = GenomeSpace(50, (5, 7, 10, 17), num_branches=9)


def _valid(genome: Genome) -> None:
    assert len(genome.segments) in SPACE.segment_counts
    for seg, length in zip(genome.segments, SPACE.lengths(len(genome.segments))):
        assert 0 <= seg.branch < 9 and 1 <= seg.interval <= length
    plan = genome.expand(TS)
    assert plan.T == 50 and plan.steps[0].kind == FULL


def test_operators_keep_genomes_valid() -> None:
    rng = random.Random(0)
    population = [SPACE.random_genome(rng) for _ in range(20)]
    for _ in range(300):
        a, b = rng.choice(population), rng.choice(population)
        child = SPACE.mutate(SPACE.crossover(a, b, rng), rng)
        _valid(child)
        population.append(child)
    assert len({str(g) for g in population}) > 100  # the operators explore


def test_mutation_changes_something_and_resegment_keeps_shape() -> None:
    rng = random.Random(1)
    g = SPACE.random_genome(rng, 10)
    assert any(SPACE.mutate(g, rng) != g for _ in range(5))
    r = SPACE.resegment(Genome((Segment(3, 10),) * 5), 10)
    assert len(r.segments) == 10 and all(s == Segment(3, 5) for s in r.segments)  # same active fraction (all of it)


def test_params_round_trip_and_suggest() -> None:
    rng = random.Random(2)
    for _ in range(50):
        g = SPACE.random_genome(rng)
        params = SPACE.to_params(g)
        assert SPACE.from_params(params) == g
        assert SPACE.suggest(optuna.trial.FixedTrial(params)) == g


def test_space_validation() -> None:
    with pytest.raises(FlexdiffError, match="counts in"):
        GenomeSpace(10, (0, 5), 3)


def test_pareto_front() -> None:
    points = [(3, 1.0), (1, 5.0), (2, 2.0), (2, 3.0), (4, 0.5), (5, 0.7)]
    assert pareto_front(points) == [1, 2, 0, 4]
