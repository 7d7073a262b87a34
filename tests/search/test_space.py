from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import FORECAST, FULL, NULL, Genome, Segment
from flexdiff.search.space import GenomeSpace
from flexdiff.utils.pareto import pareto_front

TS = list(range(980, -1, -20))
SPACE = GenomeSpace(50, (5, 7, 10, 17), num_branches=9)
SPACED = GenomeSpace(50, (5, 7, 10, 17), num_branches=9, spacings=(1.0, 1.5, 2.0))  # segment boundaries searched too
FORECASTING = GenomeSpace(50, (5, 7, 10, 17), num_branches=9, forecast=True)  # a reuse / forecast gene per segment
SPACES = pytest.mark.parametrize("space", [SPACE, SPACED, FORECASTING], ids=["equal-segments", "spaced-segments", "forecast-gene"])


def _valid(genome: Genome, space: GenomeSpace = SPACE) -> None:
    assert len(genome.segments) in space.segment_counts and genome.spacing in space.spacings
    for seg, length in zip(genome.segments, space.lengths(len(genome.segments), genome.spacing)):
        assert 0 <= seg.branch < 9 and 1 <= seg.interval <= length
    plan = genome.expand(TS)
    assert plan.T == 50 and plan.steps[0].kind == FULL


@SPACES
def test_operators_keep_genomes_valid(space: GenomeSpace) -> None:
    rng = random.Random(0)
    population = [space.random_genome(rng) for _ in range(20)]
    for _ in range(300):
        a, b = rng.choice(population), rng.choice(population)
        child = space.mutate(space.crossover(a, b, rng), rng)
        _valid(child, space)
        population.append(child)
    assert len({str(g) for g in population}) > 100  # the operators explore
    assert {g.spacing for g in population} == set(space.spacings)  # ... every spacing too


def test_spacing_mutation_keeps_the_plan_and_crossover_takes_the_first_parents_spacing() -> None:
    rng = random.Random(5)
    g = Genome((Segment(2, 3),) * 10)
    moved = {SPACED.mutate(g, rng) for _ in range(200)}
    respaced = [m for m in moved if m.spacing != 1.0]
    assert respaced and all(len(m.segments) == 10 and {s.branch for s in m.segments} == {2} for m in respaced)
    b = Genome((Segment(1, 1),) * 7, 2.0)
    child = SPACED.crossover(g, b, rng)
    assert child.spacing == 1.0 and len(child.segments) == 10
    _valid(child, SPACED)


def test_mutation_changes_something_and_resegment_keeps_shape() -> None:
    rng = random.Random(1)
    g = SPACE.random_genome(rng, 10)
    assert any(SPACE.mutate(g, rng) != g for _ in range(5))
    r = SPACE.resegment(Genome((Segment(3, 10),) * 5), 10)
    assert len(r.segments) == 10 and all(s == Segment(3, 5) for s in r.segments)  # same active fraction (all of it)


@SPACES
def test_params_round_trip_and_suggest(space: GenomeSpace) -> None:
    rng = random.Random(2)
    for _ in range(50):
        g = space.random_genome(rng)
        params = space.to_params(g)
        assert space.from_params(params) == g
        assert space.suggest(optuna.trial.FixedTrial(params)) == g


def test_space_validation() -> None:
    with pytest.raises(FlexdiffError, match="counts in"):
        GenomeSpace(10, (0, 5), 3)
    with pytest.raises(FlexdiffError, match="spacing=0: expected a positive power"):
        GenomeSpace(10, (5,), 3, spacings=(1.0, 0.0))


def test_pareto_front() -> None:
    points = [(3, 1.0), (1, 5.0), (2, 2.0), (2, 3.0), (4, 0.5), (5, 0.7)]
    assert pareto_front(points) == [1, 2, 0, 4]


@SPACES
def test_genome_of_recovers_segment_shaped_baselines(space: GenomeSpace) -> None:
    from flexdiff.schedule import ddim_k, deepcache_uniform

    assert space.genome_of(ddim_k(TS, 17)) == Genome((Segment(0, 1),) * 17)
    assert space.genome_of(deepcache_uniform(TS, 5, 3)) == Genome((Segment(3, 5),) * 10)
    assert space.genome_of(deepcache_uniform(TS, 4, 0)) is None  # full steps every 4: no segmentation in the space
    rng = random.Random(3)
    for _ in range(50):
        g = space.random_genome(rng)
        recovered = space.genome_of(g.expand(TS))
        assert recovered is not None and recovered.expand(TS).steps == g.expand(TS).steps


def test_shift_keeps_active_steps_and_uniform_genomes_are_uniform() -> None:
    rng = random.Random(4)
    for _ in range(50):
        g = SPACE.random_genome(rng, 10)
        if all(s.interval == 1 for s in g.segments):
            continue
        shifted = SPACE.shift(g, rng)
        _valid(shifted)
        assert sum(s.interval for s in shifted.segments) == sum(s.interval for s in g.segments) and shifted != g
    for _ in range(20):
        u = SPACE.uniform_genome(rng)
        _valid(u)
        intervals = [s.interval for s in u.segments]  # segment lengths differ by at most one, so do the intervals
        assert len({s.branch for s in u.segments}) == 1 and max(intervals) - min(intervals) <= 1


def test_evolution_starts_from_seed_baselines_and_never_re_evaluates_them() -> None:
    from flexdiff.search.strategies.evolution import EvolutionSampler, Member

    seed_genome = Genome((Segment(0, 1),) * 10)  # DDIM-10 as a genome
    key = lambda g: g.expand(TS).key  # noqa: E731
    sampler = EvolutionSampler(SPACE, key, max_macs=None, seed=0, initial=0, seeds=[(Member(str(seed_genome), 10.0, 5.0), key(seed_genome))])
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    actives = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        genome = SPACE.suggest(trial)
        assert key(genome) != key(seed_genome)
        active = sum(s.interval for s in genome.segments)
        actives.append(active)
        trial.set_user_attr("key", key(genome))
        trial.set_user_attr("result", {"genome": str(genome)})
        return float(active), 100.0 / active

    study.optimize(objective, n_trials=6)
    # children of DDIM-10 stay near its 10 active steps; random genomes over these segment counts average ~27
    assert max(actives) <= 20, actives


def test_parents_hold_an_elite_within_every_budget() -> None:
    from flexdiff.search.strategies.evolution import EvolutionSampler, Member

    # B = (4.9, 21) is dominated by C = (4.6, 20.5), which is dominated by A = (4.5, 20): Pareto rank 3
    pool = [Member(f"0:{i}", macs, rfid) for i, (macs, rfid) in enumerate([(10, 1.0), (9, 1.5), (5.5, 8.0), (4.5, 20.0), (4.6, 20.5), (4.9, 21.0)], 1)]
    b = Member("0:6", 4.9, 21.0)
    assert b not in EvolutionSampler(SPACE, str, max_macs=10, elite=3)._parents(pool)
    assert b in EvolutionSampler(SPACE, str, max_macs=[10, 4.9], elite=3)._parents(pool)  # third best within 4.9


def test_stopped_candidates_are_parents_with_the_rfid_their_paired_distance_predicts() -> None:
    """A candidate the multi-fidelity pruner stopped is no front point, yet a parent: its rFID predicted from its
    paired distance at the rung by the log-log line over the fully evaluated members (here an exact power law)."""
    from optuna.trial import TrialState, create_trial

    from flexdiff.search.fidelity import rfid_from_paired
    from flexdiff.search.strategies.evolution import EvolutionSampler, Member

    law = lambda paired: 3.0 * paired**1.5  # noqa: E731
    predict = rfid_from_paired([(p, law(p)) for p in (1.0, 2.0, 4.0)])
    assert predict is not None and abs(predict(3.0) - law(3.0)) < 1e-9
    assert rfid_from_paired([(2.0, 1.0), (2.0, 3.0)]) is None  # one paired distance: no line
    stopped = {"genome": "1:2", "macs": 5.0, "pruned_at": 16, "paired_rungs": {"16": 3.0}}
    trials = [
        create_trial(
            state=TrialState.PRUNED,
            params={"segments": 4},
            distributions={"segments": optuna.distributions.IntDistribution(1, 30)},
            user_attrs={"key": "k", "result": stopped},
        )
    ]
    sampler = EvolutionSampler(SPACE, str)
    assert sampler._stopped(trials, []) == []  # nothing to fit on yet: not a parent
    members = [Member(f"0:{i + 1}", 10.0 + i, law(p), paired=p) for i, p in enumerate((1.0, 2.0, 4.0))]
    (parent,) = sampler._stopped(trials, members)
    assert parent.genome == "1:2" and parent.macs == 5.0 and abs(parent.rfid - law(3.0)) < 1e-9


def test_the_forecast_gene_expands_to_forecast_steps_and_round_trips() -> None:
    g = Genome.parse("2:3f,1:2,0:1f,4:4,3:5f")
    assert str(g) == "2:3f,1:2,0:1,4:4,3:5f"  # a segment without partial steps has nothing to forecast
    plan = g.expand(TS)
    kinds = [s.kind for s in plan.steps[:4]]
    assert kinds == [FULL, FORECAST, FORECAST, NULL] and plan.steps[1].branch == 2
    assert FORECASTING.genome_of(plan) == g and SPACE.genome_of(plan) is None  # a reuse-only space has no such genome
    rng = random.Random(3)
    population = [FORECASTING.random_genome(rng) for _ in range(40)]
    assert {s.forecast for g in population for s in g.segments if s.interval > 1} == {True, False}
    assert not any(s.forecast for g in (SPACE.random_genome(rng) for _ in range(40)) for s in g.segments)
    flipped = {FORECASTING.mutate(population[0], rng) for _ in range(100)}
    assert any(m.segments[k].forecast != population[0].segments[k].forecast for m in flipped for k in range(min(len(m.segments), len(population[0].segments))))


def test_a_forecast_search_starts_from_the_uniform_forecast_plans() -> None:
    """With --forecast the baselines hold DeepCache's uniform plans with forecast steps between (family forecast), and
    those that fit the segments are genomes of the space (parents of the evolution from its first child)."""
    from flexdiff.schedule import deepcache_uniform
    from flexdiff.search.config import SearchConfig
    from flexdiff.search.context import baseline_schedules

    ts = [1 - i / 20 for i in range(20)]  # decreasing sigmas
    plain = baseline_schedules(ts, "flow-euler", 3, SearchConfig(out=Path("x"), sampler="flow-euler", baseline_intervals=(2, 4)))
    both = baseline_schedules(ts, "flow-euler", 3, SearchConfig(out=Path("x"), sampler="flow-euler", baseline_intervals=(2, 4), forecast=True))
    assert {s.meta["family"] for s in both} - {s.meta["family"] for s in plain} == {"forecast"}
    plan = deepcache_uniform(ts, 2, 0, "flow-euler", forecast=True)
    assert plan.name == "forecast-N2-b0" and [str(s) for s in plan.steps[:3]] == ["full", "forecast:0", "full"]
    genome = GenomeSpace(20, (10,), 3, forecast=True).genome_of(plan)
    assert genome is not None and all(seg.forecast for seg in genome.segments)
    assert GenomeSpace(20, (10,), 3).genome_of(plan) is None  # not a point of a reuse-only space


def test_a_plan_baseline_off_the_segment_grid_projects_onto_its_nearest_genome() -> None:
    from flexdiff.schedule.baselines import deepcache_uniform

    for interval in (3, 4, 6, 7):  # T = 50: 1:3 and 1:6 do not divide it, 1:7 gives 8 full steps (no such segment count)
        plan = deepcache_uniform(TS, interval, branch=2, forecast=True)
        g = FORECASTING.nearest_genome(plan)
        fulls = sum(1 for s in plan.steps if s.kind == FULL)
        if fulls not in FORECASTING.segment_counts:
            assert g is None
            continue
        _valid(g, FORECASTING)
        steps = g.expand(TS).steps
        assert sum(1 for s in steps if s.kind == FULL) == fulls and {(s.kind, s.branch) for s in steps if s.kind != FULL} <= {(FORECAST, 2)}
        assert (g == FORECASTING.genome_of(plan)) == (50 % interval == 0)  # exact where the grid holds the plan
        assert sum(1 for s in steps if s.kind == NULL) <= 1  # every step of the plan is active, so (but for rounding) are the genome's
    assert SPACE.nearest_genome(deepcache_uniform(TS, 3, forecast=True)).segments[0].forecast is False  # no forecast gene: replay


def test_a_projected_seed_is_evaluated_as_it_is_the_first_time_it_is_drawn() -> None:
    from flexdiff.schedule.baselines import deepcache_uniform
    from flexdiff.search.strategies.evolution import EvolutionSampler, Member

    key = lambda g: g.expand(TS).key  # noqa: E731
    projected = SPACE.nearest_genome(deepcache_uniform(TS, 3, branch=3))  # DeepCache 1:3 on T = 50 (17 segments)
    sampler = EvolutionSampler(SPACE, key, max_macs=None, seed=0, initial=0, seeds=[(Member(str(projected), 10.0, 0.1, projected=True), "deepcache-N3-b3")])
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    proposed: list[Genome] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        genome = SPACE.suggest(trial)
        proposed.append(genome)
        trial.set_user_attr("key", key(genome))
        trial.set_user_attr("result", {"genome": str(genome)})
        return 10.0, 0.1 if genome == projected else 5.0

    study.optimize(objective, n_trials=4)
    assert proposed[0] == projected and projected not in proposed[1:]  # then only its children, never itself again


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_a_trial_stores_only_the_parameters_its_strategy_needs(strategy: str) -> None:
    """The evolution (``active_only``) is asked only its genome's own segments (each parameter is one storage write);
    a sampler modelling the fixed set (random, TPE, NSGA-II) is asked all of them. Either way the genome comes back
    whole from the stored parameters, through the Tagged wrapper the search puts around every strategy."""
    from flexdiff.search.strategies import make_sampler
    from flexdiff.search.study import Tagged

    key = lambda g: g.expand(TS).key  # noqa: E731
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=Tagged(make_sampler(strategy, SPACE, key, None, 0)))
    for _ in range(6):
        trial = study.ask()
        genome = SPACE.suggest(trial)
        n = len(genome.segments)
        segments = range(n) if strategy == "evolution" else range(SPACE.max_segments)
        assert set(trial.params) == {"segments", "spacing"} | {f"{p}{s}" for s in segments for p in ("branch", "active")}
        assert SPACE.from_params(trial.params) == genome
        trial.set_user_attr("key", key(genome))
        trial.set_user_attr("result", {"genome": str(genome)})
        study.tell(trial, (float(n), 1.0 / n))


def test_an_untagged_running_trial_holds_no_position_in_the_evolution() -> None:
    """A kill in the moment between Optuna creating a trial and Tagged tagging it leaves a RUNNING trial with no
    worker (failed only after the grace period). The resumed evolution must propose what an uninterrupted one does:
    its draws are seeded by position, and that trial must not count as one (the resume test met it once)."""
    from flexdiff.search.strategies import make_sampler
    from flexdiff.search.study import Tagged

    key = lambda g: g.expand(TS).key  # noqa: E731

    def proposals(orphan_at: int | None) -> list[str]:
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=Tagged(make_sampler("evolution", SPACE, key, None, 0)))
        out = []
        for i in range(12):
            if i == orphan_at:
                study._storage.create_new_trial(study._study_id)  # RUNNING, untagged: what such a kill leaves behind
            trial = study.ask()
            genome = SPACE.suggest(trial)
            trial.set_user_attr("key", key(genome))
            trial.set_user_attr("result", {"genome": str(genome)})
            study.tell(trial, (float(sum(s.interval for s in genome.segments)), 1.0 / len(genome.segments)))
            out.append(str(genome))
        return out

    assert proposals(3) == proposals(None)
