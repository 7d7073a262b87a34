"""The search end to end on a tiny model: artefacts, resume after SIGKILL, several workers, storage URLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.models import load_model
from flexdiff.running.own_loop import teacher_timesteps
from flexdiff.search.strategies import strategy_names
from flexdiff.search.study import evaluated

pytestmark = pytest.mark.slow  # end-to-end runs: `pytest -m "not slow"` leaves them out

FLEXDIFF = str(Path(sys.executable).with_name("flexdiff"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def search_args(model_dir: Path, out: Path, trials: int = 6, *extra: str) -> list[str]:
    return [
        "search",
        "--model",
        str(model_dir),
        "--steps",
        "6",
        "--n",
        "8",
        "--trials",
        str(trials),
        "--validate-n",
        "8",
        "--segments",
        "2,3",
        "--baseline-branches",
        "0",
        "--speedup",
        "2",
        "--seed",
        "0",
        "--out",
        str(out),
        *extra,
    ]


def studies(out: Path, storage: str | None = None) -> tuple[optuna.Study, optuna.Study]:
    storage = storage or f"sqlite:///{out / 'study.db'}"
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    base = next(n for n in names if n.endswith(":baselines"))
    return optuna.load_study(study_name=base.removesuffix(":baselines"), storage=storage), optuna.load_study(study_name=base, storage=storage)


def assert_no_schedule_evaluated_twice(study: optuna.Study) -> None:
    keys = [t.user_attrs["key"] for t in evaluated(study)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("strategy, spacings", [*((s, "1") for s in strategy_names()), ("evolution", "1,2")])  # every registered strategy
def test_search_writes_artefacts_and_resumes(tiny_model_dir: Path, tmp_path: Path, strategy: str, spacings: str) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, search_args(tiny_model_dir, out, 6, "--strategy", strategy, "--spacings", spacings, "--all-baselines"))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert len(results["trials"]["searched"]) == 6
    spaced = {"@" in r["genome"] for r in results["trials"]["searched"]}
    assert spaced == ({False, True} if spacings == "1,2" else {False})  # the spacing gene is searched only when asked
    families = {r["family"] for r in results["trials"]["baselines"]}  # DDIM-5 of 6 steps is above the budget: --all-baselines
    assert families == {"teacher", "ddim", "deepcache"}
    assert (out / "best.json").is_file() and list((out / "schedules").glob("*.json"))
    assert json.loads((out / "best.json").read_text())["meta"]["bound_to"]["branches"]  # the file records its model
    assert "teacher" in result.stdout and "best within budget" in result.stdout
    searched, baselines = studies(out)
    assert_no_schedule_evaluated_twice(searched)
    assert_no_schedule_evaluated_twice(baselines)
    # the same command again resumes: nothing new is evaluated
    before = len(searched.get_trials())
    assert runner.invoke(app, search_args(tiny_model_dir, out, 6, "--strategy", strategy, "--spacings", spacings, "--all-baselines")).exit_code == 0
    assert len(evaluated(studies(out)[0])) == 6 and len(studies(out)[0].get_trials()) == before
    # more trials extend the same study
    assert runner.invoke(app, search_args(tiny_model_dir, out, 9, "--strategy", strategy, "--spacings", spacings, "--all-baselines")).exit_code == 0
    assert len(evaluated(studies(out)[0])) == 9


def _finished_searched_trials(db: Path) -> int:
    """Completed trials of the searched study, read through a read-only SQLite connection: opening an Optuna storage
    here would create its tables and could race the search process creating them (a crash of the search that the test
    once met in CI)."""
    import sqlite3

    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as con:
            row = con.execute(
                "SELECT COUNT(*) FROM trials t JOIN studies s ON t.study_id = s.study_id WHERE s.study_name NOT LIKE '%:baselines' AND t.state = 'COMPLETE'"
            ).fetchone()
    except sqlite3.Error:  # tables not created yet, or locked for a moment
        return 0
    return int(row[0])


def test_sigkill_mid_run_loses_nothing_and_evaluates_nothing_twice(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = search_args(tiny_model_dir, out, 14)
    proc = subprocess.Popen([FLEXDIFF, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        done = _finished_searched_trials(out / "study.db")
        if done >= 3:
            break
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert alive, f"the search exited early with code {proc.returncode}"
    assert done >= 3, "the search never got going"
    searched = studies(out)[0]
    finished = {t.number: tuple(t.values) for t in evaluated(searched)}  # what had finished at the kill
    result = subprocess.run([FLEXDIFF, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    searched, baselines = studies(out)
    after = {t.number: tuple(t.values) for t in evaluated(searched)}
    assert all(after.get(number) == values for number, values in finished.items())  # no finished trial lost
    assert len(after) >= 14
    assert_no_schedule_evaluated_twice(searched)
    assert_no_schedule_evaluated_twice(baselines)


def _searched_sequence(out: Path) -> list[tuple[str, str, tuple[float, ...] | None]]:
    """The searched study's trials in order, failed ones left out: (state, schedule key, values). A trial that a kill
    caught between Optuna creating it and flexdiff tagging it (no worker, no schedule: it evaluated nothing and counts
    for nothing) is left out too: it stays RUNNING until Optuna's heartbeat would fail it."""
    study = studies(out)[0]
    return [
        (t.state.name, t.user_attrs.get("key"), tuple(t.values) if t.values else None)
        for t in study.get_trials()
        if t.state != optuna.trial.TrialState.FAIL and not (t.state == optuna.trial.TrialState.RUNNING and not t.user_attrs)
    ]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_a_resumed_search_makes_the_trials_of_an_uninterrupted_one(signum: int, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Single worker, killed (SIGKILL) or interrupted (Ctrl-C) mid-search, then the same command again: the in-flight
    schedule is evaluated first and every trial equals the uninterrupted run's, in order. Ctrl-C ends in exit 130
    and one line."""
    whole = tmp_path / "whole"
    assert subprocess.run([FLEXDIFF, *search_args(tiny_model_dir, whole, 8)], env=ENV, capture_output=True, timeout=600).returncode == 0
    out = tmp_path / "run"
    args = search_args(tiny_model_dir, out, 8)
    proc = subprocess.Popen([FLEXDIFF, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and _finished_searched_trials(out / "study.db") < 3:
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    if signum == signal.SIGINT:
        assert proc.returncode == 130 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), err[-2000:]
    result = subprocess.run([FLEXDIFF, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _searched_sequence(out) == _searched_sequence(whole)


def test_two_searches_started_at_once_on_a_new_folder_share_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two `flexdiff search` on the same new --out at the same instant: no failure (the storage's tables and the study
    are created once), no schedule evaluated twice, exactly --trials searched trials. Then the storage alone, 10 times
    over: two processes creating a new SQLite storage at once both succeed."""
    out = tmp_path / "run"
    procs = [
        subprocess.Popen([FLEXDIFF, *search_args(tiny_model_dir, out, 6, "--no-report")], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    searched, baselines = studies(out)
    assert len(evaluated(searched)) == 6
    assert_no_schedule_evaluated_twice(searched)
    assert_no_schedule_evaluated_twice(baselines)
    code = "import sys; from flexdiff.search.study import open_storage, open_study; open_study(open_storage(sys.argv[1]), 's', None, {})"
    for i in range(10):
        url = f"sqlite:///{tmp_path / f'race{i}.db'}"
        racers = [subprocess.Popen([sys.executable, "-c", code, url], env=ENV, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        assert [r.wait(timeout=120) for r in racers] == [0, 0], [r.stderr.read()[-1000:] for r in racers]


def test_two_workers_share_one_study(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run([FLEXDIFF, *search_args(tiny_model_dir, out, 10, "--workers", "2")], env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    searched, baselines = studies(out)
    assert len(evaluated(searched)) >= 10
    assert_no_schedule_evaluated_twice(searched)
    assert_no_schedule_evaluated_twice(baselines)
    assert len({t.user_attrs["key"] for t in evaluated(baselines)}) == len(json.loads((out / "results.json").read_text())["trials"]["baselines"])


#: every storage kind a search runs on: name -> URL for a test folder (None: not available on this machine)
STORAGES = {
    "sqlite": lambda tmp: f"sqlite:///{tmp / 'shared.db'}",
    "postgresql": lambda tmp: os.environ.get("FLEXDIFF_POSTGRES_URL"),  # .ci/run starts a server when it can
}


@pytest.mark.parametrize("kind", list(STORAGES))
def test_search_on_every_storage_kind(tiny_model_dir: Path, tmp_path: Path, kind: str) -> None:
    url = STORAGES[kind](tmp_path)
    if url is None:
        pytest.skip(f"no {kind} server: set FLEXDIFF_POSTGRES_URL (.ci/run starts one when it can)")
    study_name = f"{kind}-{os.getpid()}-{int(time.time())}"
    result = CliRunner().invoke(app, search_args(tiny_model_dir, tmp_path / "run", 4, "--storage", url, "--study", study_name))
    assert result.exit_code == 0, result.output
    searched = optuna.load_study(study_name=study_name, storage=url)
    assert len(evaluated(searched)) == 4


@pytest.mark.parametrize("solver", ["dpmpp-2m", "ddim-2m"])
def test_solver_runs_the_searched_schedules_and_a_second_set_of_baselines(tiny_model_dir: Path, tmp_path: Path, solver: str) -> None:
    """--solver: the teacher (reference, classic baselines) keeps --sampler; searched genomes and a copy of DDIM-k /
    DeepCache run the solver over the same teacher grid, and best.json carries it so `flexdiff sample` replays it.
    Copies the solver would run exactly as DDIM are left out (on 6 steps: DeepCache's plans under ddim-2m)."""
    out = tmp_path / "run"
    result = CliRunner().invoke(app, search_args(tiny_model_dir, out, 4, "--solver", solver, "--all-baselines"))  # DDIM-5 of 6 is over the budget
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    baselines = results["trials"]["baselines"]
    # under ddim-2m DeepCache's plans (no step dropped) run exactly as DDIM: not copied; DDIM-3, the budget's own
    # DDIM-k (6 // 2), drops steps where ddim-2m's correction differs: copied
    copies = {f"ddim+{solver}", f"deepcache+{solver}"} if solver == "dpmpp-2m" else {f"ddim+{solver}"}
    assert {r["family"] for r in baselines} == {"teacher", "ddim", "deepcache"} | copies
    assert {r["sampler"] for r in baselines if "+" not in r["family"]} == {"ddim"}
    assert {r["sampler"] for r in baselines if "+" in r["family"]} == ({solver} if copies else set())
    assert {r["sampler"] for r in results["trials"]["searched"]} == {solver}
    classic = {r["name"]: r["rfid"] for r in baselines}
    assert all(classic[name] != classic[name.removesuffix(f"+{solver}")] for name in classic if "+" in name)  # other images
    best = json.loads((out / "best.json").read_text())
    teacher_grid = teacher_timesteps(load_model(str(tiny_model_dir), "cpu"), "ddim", 6)
    assert best["sampler"] == results["best"]["sampler"] and best["timesteps"] == teacher_grid
    assert solver in studies(out)[0].study_name and results["teacher"]["name"] == "teacher (ddim-6)"
    replay = CliRunner().invoke(
        app, ["sample", "--model", str(tiny_model_dir), "--schedule", str(out / "best.json"), "--n", "2", "--out", str(tmp_path / "replay")]
    )
    assert replay.exit_code == 0, replay.output
    assert json.loads((tmp_path / "replay" / "run.json").read_text())["sampler"] == best["sampler"]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--strategy", "cmaes"], "cmaes"),
        (["--storage", "not-a-url"], "not-a-url"),
        (["--segments", "0,3"], "counts in"),
        (["--spacings", "1,x"], "--spacings 1,x"),
        (["--solver", "euler"], "euler"),
        (["--spacings", "1,-2"], "spacing=-2"),
        (["--speedup", "0.5"], "speed-up >= 1"),
        (["--features", "vgg"], "vgg"),
        (["--speedup", "nan"], "speed-up >= 1"),
        (["--validate-top", "0"], "--validate-top 0"),
        (["--storage", "sqlite://"], "in-memory"),
        (["--peers", "nope"], "'nope'"),
        (["--objective", "fid"], "--objective fid"),
        (["--peers", "taylorseer"], "--peers on"),  # diffusers' block caches need transformer blocks, not a UNet
    ],
)
def test_bad_search_input(tiny_model_dir: Path, tmp_path: Path, extra: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, search_args(tiny_model_dir, tmp_path / "run", 2, *extra))
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr


def test_a_paired_objective_search_minimises_the_paired_distance(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``--objective paired`` (few noises): the study's second objective is each row's paired distance, the study is
    its own (named for it), and best.json is the validated row with the lowest paired distance within the budget."""
    out = tmp_path / "run"
    result = CliRunner().invoke(app, search_args(tiny_model_dir, out, 4, "--objective", "paired", "--n", "4"))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    searched, baselines = studies(out)
    assert searched.study_name.endswith("b2x") and "-paired-" in searched.study_name
    for study in (searched, baselines):
        assert all(t.values[1] == pytest.approx(t.user_attrs["result"]["paired"]) for t in evaluated(study))
    within = [r for r in results["validated"] if r["macs"] <= results["budget_macs"]]
    assert results["best"]["name"] == min(within, key=lambda r: (r["paired"], r["macs"]))["name"]


def test_baselines_costlier_than_every_budget_are_not_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A baseline above the largest budget can be neither a pick nor a parent: skipped (the teacher's plan aside);
    ``--all-baselines`` scores them too, for context."""
    runs = {}
    for name, extra in (("default", ()), ("all", ("--all-baselines",))):
        out = tmp_path / name
        assert CliRunner().invoke(app, search_args(tiny_model_dir, out, 2, *extra)).exit_code == 0
        runs[name] = json.loads((out / "results.json").read_text())
    budget = runs["default"]["budget_macs"]
    assert all(r["macs"] <= budget for r in runs["default"]["trials"]["baselines"] if r["family"] != "teacher")
    above = [r["name"] for r in runs["all"]["trials"]["baselines"] if r["macs"] > budget and r["family"] != "teacher"]
    assert above and {r["name"] for r in runs["default"]["trials"]["baselines"]} == {r["name"] for r in runs["all"]["trials"]["baselines"]} - set(above)


def test_resuming_with_another_setup_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(app, search_args(tiny_model_dir, out, 2, "--study", "mine")).exit_code == 0
    result = runner.invoke(app, search_args(tiny_model_dir, out, 2, "--study", "mine", "--seed", "1"))  # the later --seed wins
    assert result.exit_code == 2 and "differs in" in result.stderr
    assert (out / "results.json").is_file()  # the earlier result is still there


def test_an_out_that_is_a_file_is_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.write_text("mine")
    result = CliRunner().invoke(app, search_args(tiny_model_dir, out, 2))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and str(out) in result.stderr
    assert out.read_text() == "mine"


def test_a_rerun_for_another_budget_leaves_no_stale_artefacts(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """results.json, best.json and schedules/ describe the latest run: a best for an earlier --speedup, or a schedule
    file of an earlier front, does not survive next to results that no longer contain it. (A budget below every
    schedule is refused up front since issue 28; the check is lifted here to reach a run with no best.)"""
    monkeypatch.setattr("flexdiff.search.context.check_budget", lambda config, full_step_macs: None)
    out = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(app, search_args(tiny_model_dir, out, 3)).exit_code == 0
    assert (out / "best.json").is_file()
    first = json.loads((out / "results.json").read_text())["files"]
    assert "best.json" in first and all((out / f).is_file() for f in first)  # the manifest lists what the run wrote
    (out / "schedules" / "mine.json").write_text("a user's file")  # not flexdiff's: never removed
    args = search_args(tiny_model_dir, out, 3, "--max-macs", "1")  # nothing is that cheap: no best within the budget
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["best"] is None and not (out / "best.json").exists()
    names = sorted(p.stem for p in (out / "schedules").glob("*.json"))
    assert names == sorted([*(r["name"] for r in results["pareto"]), "mine"])
    assert (out / "schedules" / "mine.json").read_text() == "a user's file"
    assert not list(tmp_path.glob(".run.*"))  # no staging folder left


def test_a_space_smaller_than_trials_stops_with_a_message(tiny_model_dir: Path, tmp_path: Path) -> None:
    """6 segments on 6 steps: every genome is the teacher's plan, a baseline. The search must not run for ever."""
    args = search_args(tiny_model_dir, tmp_path / "run", 10)
    args[args.index("--segments") + 1] = "6"
    args[args.index("--speedup") + 1] = "1"  # the only reachable budget: one full step per segment is the teacher
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "search stopped at 0 of 10 trials" in result.stdout
    assert json.loads((tmp_path / "run" / "results.json").read_text())["trials"]["searched"] == []


def test_schedule_file_names_stay_short_and_distinct() -> None:
    from flexdiff.search.artefacts import file_name

    assert file_name("ddim-25") == "ddim-25.json"
    long = ["genome-" + "_".join(["b0i1"] * 60) + tail for tail in ("", "_b1i2")]  # 60+ segments: over 255 bytes as is
    names = [file_name(n) for n in long]
    assert all(len(n) <= 125 for n in names) and names[0] != names[1]


def test_peers_are_baselines_of_the_same_study_and_table(tmp_path: Path) -> None:
    """--peers on a transformer: every setting of each peer's sweep is a trial of the baselines study (kind peer, no
    steps), its family's best within the budget is validated from the peer's own code, best.json stays a schedule, and
    a rerun evaluates none of them again."""
    out = tmp_path / "run"
    args = [
        "search",
        "--model",
        "builtin:digits-dit",
        "--steps",
        "6",
        "--n",
        "8",
        "--trials",
        "2",
        "--validate-n",
        "8",
        "--segments",
        "2,3",
        "--baseline-branches",
        "0",
        "--speedup",
        "1.5",
        "--seed",
        "0",
        "--peers",
        "taylorseer",
        "--no-report",
        "--out",
        str(out),
    ]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    peers = [r for r in results["trials"]["baselines"] if r["kind"] == "peer"]
    assert {r["family"] for r in peers} == {"taylorseer"} and len(peers) == 4 and all(r["steps"] is None and r["macs"] > 0 for r in peers)
    assert any(r["kind"] == "peer" for r in results["validated"])  # re-scored from its own code on the validation noise
    assert json.loads((out / "best.json").read_text())["steps"]  # a plan enable() can apply, also where a peer is best
    _, baselines = studies(out)
    before = len(baselines.get_trials())
    assert runner.invoke(app, args).exit_code == 0
    assert len(studies(out)[1].get_trials()) == before
