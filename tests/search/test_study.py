"""The study layer on its own: claiming schedule keys between concurrent trials, memoised baselines, an exhausted
space, storage URLs. A SQLite file stands in for the shared storage; "workers" are interleaved trials of one study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import Schedule, ddim_k
from flexdiff.search.study import (
    EXHAUSTED_AFTER,
    claim,
    evaluated,
    open_storage,
    open_study,
    run_search,
)

TS = list(range(900, -1, -100))  # 10 teacher steps


def _study(tmp_path: Path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    return open_study(storage, "s", optuna.samplers.RandomSampler(seed=0), {"test": 1})


@pytest.mark.parametrize("first", ["lower", "higher"])
def test_of_two_concurrent_claimants_at_most_one_evaluates(tmp_path: Path, first: str) -> None:
    """Two running trials claim one key, one after the other (each writes its key, then reads the others'): whichever
    number claims first, the second sees it and steps aside. (Yielding to lower numbers only let both evaluate when the
    higher number claimed first.)"""
    study = _study(tmp_path)
    low, high = study.ask(), study.ask()
    a, b = (low, high) if first == "lower" else (high, low)
    assert claim(study, a, "K") is None  # nobody else yet: a evaluates
    owner = claim(study, b, "K")
    assert owner is not None and owner.number == a.number  # b steps aside for the running a


def test_a_complete_key_is_memoised_and_other_keys_are_free(tmp_path: Path) -> None:
    study = _study(tmp_path)
    done = study.ask()
    assert claim(study, done, "K") is None
    done.set_user_attr("result", {})
    study.tell(done, [1.0, 2.0])
    later = study.ask()
    owner = claim(study, later, "K")
    assert owner is not None and owner.number == done.number and owner.state == optuna.trial.TrialState.COMPLETE
    assert claim(study, study.ask(), "other") is None


def _counting_evaluate(calls: list[str]):
    def evaluate(schedule: Schedule, trial: object = None) -> dict:
        calls.append(schedule.key)
        return {"macs": float(len(calls)), "rfid": 1.0 / len(calls)}

    return evaluate


def test_a_baseline_plan_proposed_by_the_strategy_is_answered_from_memory(tmp_path: Path) -> None:
    study = _study(tmp_path)
    plans = [ddim_k(TS, k) for k in (2, 3, 4)]
    known = {plans[0].key: (7.0, 0.5)}  # ddim-2 is a baseline already scored in the baseline study
    calls: list[str] = []
    proposals = iter(plans)
    run_search(study, 2, lambda trial: next(proposals), _counting_evaluate(calls), known=known)
    assert calls == [plans[1].key, plans[2].key]  # the baseline's plan was never evaluated again
    memo = [t for t in study.get_trials() if t.user_attrs.get("key") == plans[0].key]
    assert len(memo) == 1 and memo[0].values == [7.0, 0.5] and memo[0].user_attrs["duplicate_of"] == "baseline"
    assert {t.user_attrs["key"] for t in evaluated(study)} == {plans[1].key, plans[2].key}


@pytest.mark.slow
def test_a_strategy_with_nothing_new_to_propose_stops(tmp_path: Path) -> None:
    """A space smaller than --trials: the search stops after EXHAUSTED_AFTER repeats instead of running for ever."""
    study = _study(tmp_path)
    plans = [ddim_k(TS, 2), ddim_k(TS, 3)]
    calls: list[str] = []
    complete = run_search(study, 5, lambda trial: plans[trial.number % 2], _counting_evaluate(calls))
    assert complete is False and sorted(calls) == sorted(p.key for p in plans)
    assert len(study.get_trials()) == 2 + EXHAUSTED_AFTER
    assert run_search(study, 2, lambda trial: plans[0], _counting_evaluate(calls)) is True  # already has 2: nothing to do


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "study.db"])
def test_storage_urls_that_cannot_be_shared_are_refused(url: str) -> None:
    with pytest.raises(FlexdiffError) as info:
        open_storage(url)
    assert url in str(info.value) and "\n" not in str(info.value)


def test_a_trial_failed_as_stale_while_it_ran_is_dropped_and_the_search_goes_on(tmp_path: Path) -> None:
    """Another worker fails a trial whose heartbeat stopped (a stalled process); when the evaluation then returns,
    Optuna refuses its result. The worker warns and carries on instead of ending in a traceback."""
    study = _study(tmp_path)
    plans = [ddim_k(TS, k) for k in (2, 3, 4, 5)]
    calls: list[str] = []
    count = _counting_evaluate(calls)

    def evaluate(schedule: Schedule, trial: object = None) -> dict:
        if not calls:  # the first evaluation: another worker declares this trial dead meanwhile
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))[0]
            study._storage.set_trial_state_values(running._trial_id, optuna.trial.TrialState.FAIL)
        return count(schedule)

    with pytest.warns(RuntimeWarning, match="failed as stale"):
        assert run_search(study, 3, lambda trial: plans[trial.number], evaluate) is True
    assert [t.user_attrs["key"] for t in evaluated(study)] == [p.key for p in plans[1:]]


def test_a_trial_no_worker_tagged_is_failed_once_older_than_the_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between Optuna creating a trial and flexdiff tagging it leaves a RUNNING trial with no worker (and no
    heartbeat): left alone while it is young (a live worker is about to tag it), failed once past the grace period."""
    from flexdiff.search import study as study_module

    study = _study(tmp_path)
    untagged = study._storage.create_new_trial(study._study_id)  # created; never reached the Tagged sampler
    assert study_module.fail_orphans(study) == []
    monkeypatch.setattr(study_module, "GRACE_SECONDS", 0)
    assert study_module.fail_orphans(study) == [study._storage.get_trial(untagged).number]
    assert study._storage.get_trial(untagged).state == optuna.trial.TrialState.FAIL
