"""Multi-fidelity evaluation (search/fidelity.py): rungs, the front pruner, pruned trials in the study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.errors import FlexdiffError
from flexdiff.running.own_loop import batch_bounds
from flexdiff.search.fidelity import FrontPruner, check_rungs
from flexdiff.search.study import pruned
from search.test_search import assert_no_schedule_evaluated_twice, search_args, studies


def test_batches_end_at_the_rungs() -> None:
    assert batch_bounds(10, None, (4, 8)) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(10, 3, (4,)) == [(0, 3), (3, 4), (4, 7), (7, 10)]
    assert batch_bounds(5, None) == [(0, 5)]


@pytest.mark.parametrize("bad", [(1,), (8,), (4, 2), (4, 4)])
def test_bad_rungs_are_one_line(bad: tuple[int, ...]) -> None:
    with pytest.raises(FlexdiffError, match="--fidelity"):
        check_rungs(bad, 8)


def _trial(study: optuna.Study, macs: float, step: int, value: float) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    trial.set_user_attr("macs", macs)
    study._storage.set_trial_intermediate_value(trial._trial_id, step, value)
    return study._storage.get_trial(trial._trial_id)


def test_the_front_pruner_stops_only_what_cannot_enter_the_front_within_a_budget() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    rows = [{"macs": 10.0, "paired_rungs": {"16": 1.0, "64": 1.0}}, {"macs": 50.0, "paired_rungs": {"16": 0.2, "64": 0.2}}]
    pareto = FrontPruner(0.1, rows)  # no budgets: the Pareto rule (something of no higher cost is better)
    assert pareto.prune(study, _trial(study, 20, 64, 1.2))  # the 10-MACs row is 20 % better; the margin at 64 images is 10 %
    assert not pareto.prune(study, _trial(study, 20, 64, 1.05))  # within the margin
    assert not pareto.prune(study, _trial(study, 20, 16, 1.15)) and pareto.prune(study, _trial(study, 20, 16, 1.25))  # 20 % at 16 images
    assert not pareto.prune(study, _trial(study, 40, 64, 0.5))  # only a costlier schedule is better
    assert not pareto.prune(study, _trial(study, 20, 32, 9.0))  # nothing was scored at that rung
    budgeted = FrontPruner(0.1, rows, budgets=(30.0, 60.0))
    assert budgeted.prune(study, _trial(study, 70, 64, 0.1))  # over every budget: of no use, however good
    assert budgeted.prune(study, _trial(study, 40, 64, 0.5))  # within 60 (its only budget) the 50-MACs row is better
    assert not budgeted.prune(study, _trial(study, 20, 64, 0.5))  # within 30 nothing is better by the margin


@pytest.mark.slow
def test_a_multi_fidelity_search_prunes_keeps_them_in_the_study_and_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = search_args(tiny_model_dir, out, 10, "--fidelity", "4", "--prune-margin", "0", "--no-report")
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    searched, stopped = results["trials"]["searched"], results["trials"]["pruned"]
    assert stopped and len(searched) + len(stopped) == 10  # pruned candidates count towards --trials
    assert all(r["pruned_at"] == 4 and "4" in r["rungs"] for r in stopped) and all("4" in r["rungs"] for r in searched)
    assert {r["name"] for r in results["validated"]}.isdisjoint({r["name"] for r in stopped})  # the front: complete trials only
    study, baselines = studies(out)
    assert len(pruned(study)) == len(stopped) and all(t.intermediate_values for t in pruned(study))  # Optuna's PRUNED, with intermediate values
    stopped_baselines = results["trials"]["pruned_baselines"]  # plan baselines meet each other on the rungs, the cheapest first
    assert stopped_baselines and {r["name"] for r in stopped_baselines}.isdisjoint({r["name"] for r in results["trials"]["baselines"]})
    assert len(pruned(baselines)) == len(stopped_baselines) and "full-6" in {r["name"] for r in results["trials"]["baselines"]}
    assert all(r["paired_rungs"]["4"] > 0 for r in stopped + stopped_baselines)
    assert_no_schedule_evaluated_twice(study)
    keys = [t.user_attrs["key"] for t in study.get_trials() if t.user_attrs.get("duplicate_of") is None and "result" in t.user_attrs]
    assert len(keys) == len(set(keys))  # a pruned schedule is never evaluated again
    before = len(study.get_trials()), len(baselines.get_trials())
    assert runner.invoke(app, args).exit_code == 0  # resumes: nothing new, no stopped baseline evaluated again
    assert tuple(len(s.get_trials()) for s in studies(out)) == before


@pytest.mark.slow
def test_reuse_changes_no_result_of_the_search(tiny_model_dir: Path, tmp_path: Path) -> None:
    """--reuse starts candidates from stored runs: every trial's scores are those of the search without it."""
    runner = CliRunner()
    rows = {}
    for name, extra in (("plain", ("--no-reuse",)), ("reuse", ())):  # reuse is the default
        result = runner.invoke(app, search_args(tiny_model_dir, tmp_path / name, 8, "--no-report", *extra))
        assert result.exit_code == 0, result.output
        results = json.loads((tmp_path / name / "results.json").read_text())
        rows[name] = [(r["name"], r["macs"], r["rfid"], r["paired"]) for r in results["trials"]["baselines"] + results["trials"]["searched"]]
        assert (results["reuse"] is None) == (name == "plain")
    assert results["reuse"]["saved_image_steps"] > 0  # candidates did start from stored runs
    assert rows["plain"] == rows["reuse"]


def test_dry_run_prints_the_estimate_and_writes_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, search_args(tiny_model_dir, out, 6, "--dry-run", "--fidelity", "4"))
    assert result.exit_code == 0, result.output
    assert "estimated wall time" in result.stdout and "reference" in result.stdout and "first rung" in result.stdout
    assert not out.exists()


@pytest.mark.slow
def test_an_infinite_margin_records_the_rungs_and_changes_nothing_else(tiny_model_dir: Path, tmp_path: Path) -> None:
    """--prune-margin inf: no candidate stopped, no batch cut (every score that of the search without --fidelity), the
    rungs recorded on every row (what benchmarks/search_cost.py replays the pruner over); the phases are timed."""
    runner = CliRunner()
    rows = {}
    for name, extra in (("plain", ()), ("recorded", ("--fidelity", "4", "--prune-margin", "inf"))):
        result = runner.invoke(app, search_args(tiny_model_dir, tmp_path / name, 6, "--no-report", *extra))
        assert result.exit_code == 0, result.output
        results = json.loads((tmp_path / name / "results.json").read_text())
        every = results["trials"]["baselines"] + results["trials"]["searched"]
        rows[name] = [(r["name"], r["macs"], r["rfid"], r["paired"]) for r in every]
        assert all(("rungs" in r) == (name == "recorded") for r in every)
        assert not results["trials"]["pruned"]
        assert set(results["phase_seconds"]) == {"setup", "reference", "baselines", "search", "validation"}
        assert all(v >= 0 for v in results["phase_seconds"].values())
    assert rows["plain"] == rows["recorded"]
