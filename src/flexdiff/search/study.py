"""The search on Optuna: every evaluated schedule is a trial; Optuna's storage is the single source of truth.

Two studies share one storage: ``<name>`` holds the searched genomes (the strategy's sampler sees only those, so
NSGA-II's search space stays fixed) and ``<name>:baselines`` the baselines (teacher, DDIM-k, DeepCache), evaluated
on the same noise against the same teacher reference. A trial's schedule *key* (steps + timesteps + sampler)
is claimed before evaluation: a key already complete is answered from memory (a baseline's plan proposed by the
strategy too, from the baseline study), a key another trial is evaluating is left to it, so no schedule is evaluated
twice — across restarts and across workers. Killed trials are failed by Optuna's heartbeat after a grace period (at
once, by a resumed run, when their process was one of this machine: :func:`fail_orphans`), and their schedules become
free again; ``--trials N`` is N evaluated (or pruned) schedules, however many workers share the study.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import Schedule
from flexdiff.utils.text import mask_password, shorten

if TYPE_CHECKING:
    from flexdiff.search.peers import PeerRun

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _not_a_trial_failure(record: logging.LogRecord) -> bool:
    """Optuna logs a failed trial with its traceback before re-raising the error; flexdiff reports that error itself,
    in one line (the CLI's error net: a full disk, Ctrl-C), so the log record is dropped."""
    return "failed with" not in record.getMessage()


logging.getLogger("optuna.study._optimize").addFilter(_not_a_trial_failure)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in practice

HEARTBEAT_SECONDS = 2
# A running trial whose heartbeat is this old is failed by the next worker that looks, and its schedule is free again.
# Long enough that a stalled worker (a suspended laptop, a slow shared storage) is not declared dead while it still
# evaluates; a killed baseline trial holds up the others at most this long on resume.
GRACE_SECONDS = 60
ALIVE = (TrialState.COMPLETE, TrialState.RUNNING)
#: a pruned trial keeps its schedule: proposing it again is a duplicate, never a second evaluation (search/fidelity.py)
OWNING = (*ALIVE, TrialState.PRUNED)
# The strategy proposed only already-evaluated schedules this many times in a row: the space holds nothing new for it.
EXHAUSTED_AFTER = 50
#: who claims a trial's schedule: this machine and process
WORKER = f"{socket.gethostname()}:{os.getpid()}"


#: the pip package that installs each database driver module SQLAlchemy may ask for (a missing one is named exactly)
DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "psycopg[binary]",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mysql": "mysql-connector-python",
    "mariadb": "mariadb",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
    "oracledb": "oracledb",
    "cx_Oracle": "cx_Oracle",
}


def check_storage_url(url: str) -> str:
    """The storage URL as it will be opened, checked without connecting (nothing is created: a dry run writes nothing):
    its form, no in-memory SQLite, a database SQLAlchemy knows, and its driver installed (else the one line names the
    pip package). ``postgresql://`` (the documented form) means SQLAlchemy's default PostgreSQL driver, psycopg 3 in
    SQLAlchemy 2.1; where only psycopg2 is installed (``psycopg2-binary``, the one the ``test`` extra ships) it is
    opened with that driver instead (``postgresql+psycopg2://``), the same database either way."""
    from sqlalchemy.engine import make_url

    shown = shorten(mask_password(url))
    form = "an Optuna storage URL such as sqlite:///study.db or postgresql://user:password@host/db"
    if "://" not in url:
        raise FlexdiffError(shown, form, "pass --storage URL (scheme://...)")
    if url.rstrip("/") == "sqlite:" or ":memory:" in url:
        raise FlexdiffError(
            shown,
            "a storage on disk or on a server (an in-memory SQLite database is not shared with the heartbeat, other workers or a resumed run)",
            "pass --storage sqlite:///FILE.db, or omit --storage for OUT/study.db",
        )
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except Exception:  # sqlalchemy's ArgumentError (no URL) or NoSuchModuleError (no such database): its message repeats the URL
        raise FlexdiffError(shown, form + " (sqlite, postgresql, mysql ...)", "fix --storage") from None
    if "@" in (parsed.host or ""):  # "user:p@ss@host": SQLAlchemy takes "ss@host" for the host, and the driver's error would show it
        raise FlexdiffError(shown, "a URL whose password has no unencoded '@' (it ends the password)", "percent-encode '@' in the password as %40")
    if parsed.drivername == "postgresql" and _importable("psycopg2") and not _importable("psycopg"):
        return _postgresql_with(url, "psycopg2")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or "").split(".")[0] or parsed.drivername
        if parsed.drivername == "postgresql":  # either driver opens it: the one flexdiff's test extra ships is named first
            fix = "pip install 'psycopg2-binary' (or 'psycopg[binary]')"
        else:
            fix = f"pip install '{DRIVER_PACKAGES.get(module, module)}'"
        raise FlexdiffError(shown, f"the {parsed.get_backend_name()} driver {module!r} installed", fix) from None
    return url


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _postgresql_with(url: str, driver: str) -> str:
    """``postgresql://...`` as ``postgresql+DRIVER://...``, the rest of the URL untouched (its password included)."""
    return f"postgresql+{driver}://" + url.split("://", 1)[1]


def open_storage(url: str) -> RDBStorage:
    """Any Optuna RDB URL (sqlite:///file.db, postgresql://..., mysql://...), with heartbeats for crash recovery;
    checked first (:func:`check_storage_url`). Any message about it masks its password."""
    url = check_storage_url(url)
    try:
        return _retried(lambda: RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS))
    except Exception as exc:  # sqlalchemy raises many kinds; the user needs one line
        detail = mask_password(" ".join(str(exc).split()))  # masked whole, then cut: a cut first could split a password from its mask
        raise FlexdiffError(
            shorten(mask_password(url)), "a reachable Optuna RDB storage", f"check the URL and the server ({exc.__class__.__name__}: {shorten(detail, 120)})"
        ) from None


#: what a database says when another process created the same table or row a moment before (or holds its lock)
_RACE = ("already exists", "unique", "duplicate", "database is locked")


def _retried(make: Callable[[], Any], tries: int = 8) -> Any:
    """``make()``, tried again after a short random wait when it loses a creation race, up to ``tries`` times: workers
    started at the same instant on a new database race on creating its tables ("table ... already exists") and the
    study; the loser finds them made on its next try. Any other failure (an unreachable server) is raised at once."""
    for attempt in range(tries):
        try:
            return make()
        except Exception as exc:
            if attempt == tries - 1 or not any(words in str(exc).lower() for words in _RACE):
                raise
            time.sleep(0.05 + random.random() * 0.2 * (attempt + 1))


class Tagged(optuna.samplers.BaseSampler):
    """A strategy's sampler whose trials are tagged with their worker (``worker``: this machine and process) the moment
    they exist, before the strategy proposes anything: a trial killed at any point after is an orphan
    :func:`fail_orphans` can recognise. Everything else is the strategy's."""

    def __init__(self, sampler: optuna.samplers.BaseSampler) -> None:
        self.sampler = sampler
        self.active_only = getattr(sampler, "active_only", False)  # what GenomeSpace.suggest asks of the strategy

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, "worker", WORKER)
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


#: fingerprint entries added after studies were first stored: a study stored without one is resumed as it is (it was
#: made before the entry existed; its own setting of it is unknown)
LATER_KEYS = ("budgets",)


def open_study(storage: RDBStorage, name: str, sampler: optuna.samplers.BaseSampler | None, fingerprint: dict[str, Any]) -> optuna.Study:
    """Create or resume a 2-objective study (MACs, rFID); refuse one created for another setup. Its trials carry
    their worker (:class:`Tagged`)."""
    tagged = Tagged(sampler if sampler is not None else optuna.samplers.RandomSampler())
    study = _retried(lambda: optuna.create_study(storage=storage, study_name=name, directions=["minimize", "minimize"], sampler=tagged, load_if_exists=True))
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", fingerprint)
        return study
    differs = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k) and not (k in LATER_KEYS and k not in stored))
    if differs:
        raise FlexdiffError(
            f"study {name!r}",
            f"the setup it was created with (differs in {', '.join(differs)})",
            "use another --study or --out, or repeat the original options",
        )
    return study


def claim(study: optuna.Study, trial: Trial, key: str) -> FrozenTrial | None:
    """Mark ``trial`` as evaluating schedule ``key``. Returns the trial that owns the key instead, if any: a complete
    one (memoised) or any other running claimant. Every claimant writes its key before it reads the others', so of
    two concurrent claimants the later reader always sees the earlier one: at most one evaluates. (Both may step
    aside; the key is then free for a later trial. Yielding only to lower-numbered claimants would let a higher
    number that read first and a lower number that read second both go ahead.)"""
    trial.set_user_attr("key", key)
    trial.set_user_attr("worker", WORKER)  # fail_orphans (a trial asked without a Tagged sampler is tagged here)
    owner = None
    for other in study.get_trials(deepcopy=False, states=OWNING):
        if other.number == trial.number or other.user_attrs.get("key") != key or other.user_attrs.get("duplicate_of") is not None:
            continue
        if other.state == TrialState.PRUNED and "pruned_at" not in (other.user_attrs.get("result") or {}):
            continue  # stepped aside, not stopped by the pruner: the schedule is still free
        if other.state in (TrialState.COMPLETE, TrialState.PRUNED):
            return other
        owner = owner or other
    return owner


#: (schedule, its trial or None) -> result; with the trial it may raise ``TrialPruned`` (search/fidelity.py)
Evaluate = Callable[[Schedule, Trial | None], dict[str, Any]]


def describe(item: Schedule | PeerRun) -> dict[str, Any]:
    """What a trial row says of what it evaluated: a schedule's name, family, genome and steps; a caching peer's
    family and setting (``kind`` peer, no steps: it decides at run time what to skip)."""
    if not isinstance(item, Schedule):
        return {"kind": "peer", "name": item.name, "family": item.family, "setting": item.setting, "genome": None, "steps": None}
    return {"name": item.name, "family": item.meta.get("family", "custom"), "genome": item.meta.get("genome"), "steps": [str(s) for s in item.steps]}


def record(trial: Trial, item: Schedule | PeerRun, result: dict[str, Any]) -> tuple[float, float]:
    """Store what was evaluated and its measurements as one user attribute (one storage write per trial)."""
    trial.set_user_attr("result", {**describe(item), **result})
    return float(result["macs"]), float(result[result.get("objective", "rfid")])  # the search's objective (SearchConfig.objective)


def answer(trial: Trial, study: optuna.Study, schedule: Schedule, evaluate: Evaluate, known: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    """Evaluate ``schedule`` for ``trial`` unless it is ``known`` (a baseline's plan: its values, never a searched
    find) or another trial owns its key (then memoise or step aside)."""
    if schedule.key in known:
        trial.set_user_attr("key", schedule.key)
        trial.set_user_attr("duplicate_of", "baseline")
        return known[schedule.key]
    owner = claim(study, trial, schedule.key)
    if owner is not None:
        trial.set_user_attr("duplicate_of", owner.number)
        if owner.state == TrialState.COMPLETE:
            return float(owner.values[0]), float(owner.values[1])
        if owner.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"schedule {schedule.key} was pruned in trial {owner.number}")
        raise optuna.TrialPruned(f"schedule {schedule.key} is being evaluated by trial {owner.number}")
    return record(trial, schedule, evaluate(schedule, trial))


def optimize(
    study: optuna.Study, objective: Callable[[Trial], tuple[float, float]], callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()
) -> None:
    """``study.optimize``, carried on when a trial of this worker was failed as stale by another worker while it was
    still evaluating (no heartbeat for ``GRACE_SECONDS``: a suspended or starved process). Optuna then refuses to
    record the result ("Cannot tell a FAIL trial"); the schedule is free again for any worker, so the result is
    dropped and the work goes on instead of ending in a traceback."""
    while True:
        try:
            study.optimize(objective, callbacks=list(callbacks), catch=())
            return
        except ValueError as exc:
            if not str(exc).startswith("Cannot tell a FAIL trial"):
                raise
            warnings.warn(
                f"a trial of this worker was failed as stale by another worker while it ran (no heartbeat for {GRACE_SECONDS} s); its result is dropped",
                RuntimeWarning,
                stacklevel=2,
            )


def evaluated(study: optuna.Study) -> list[FrozenTrial]:
    """Complete trials that really evaluated their schedule (memoised duplicates left out)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _evaluated(t)]


def pruned(study: optuna.Study) -> list[FrozenTrial]:
    """Trials the multi-fidelity pruner stopped (search/fidelity.py); they count towards ``--trials``."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if _stopped(t)]


def _evaluated(t: FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and t.user_attrs.get("duplicate_of") is None


def _stopped(t: FrozenTrial) -> bool:
    return t.state == TrialState.PRUNED and "pruned_at" in (t.user_attrs.get("result") or {})


def _in_flight(t: FrozenTrial, own: int | None) -> bool:
    """A running trial (other than number ``own``) evaluating a schedule it claimed: it will count towards ``--trials``."""
    return (
        t.state == TrialState.RUNNING
        and t.number != own
        and t.user_attrs.get("key") is not None
        and t.user_attrs.get("duplicate_of") is None
        and not t.user_attrs.get("idle")
    )


class Interrupt:
    """Ctrl-C during a search, made a clean stop: the first one lets the evaluation in flight finish and be recorded,
    then the search stops (the CLI exits 130), so nothing is lost and a resumed run goes on exactly where it stopped;
    a second one stops at once. Without it, the signal lands anywhere in Optuna's bookkeeping."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def armed(self) -> Iterator[None]:
        """Within the block the first SIGINT only sets :attr:`requested` (main thread only: elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: object) -> None:
            if self.requested:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.requested = True
            print("interrupt: finishing the evaluation in flight, then stopping (Ctrl-C again to stop at once)", file=sys.stderr)

        self.requested = False
        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def check(self) -> None:
        """After a phase: a requested stop ends the command here, as Ctrl-C does (the CLI: one line, exit 130)."""
        if self.requested:
            raise KeyboardInterrupt


#: the search's interrupt (one per process: signals are)
INTERRUPT = Interrupt()


def fail_orphans(study: optuna.Study) -> list[int]:
    """Fail the running trials whose worker was a process of this machine that no longer exists (a SIGKILL): their
    schedules are free at once, for the resumed run to evaluate first, instead of after the heartbeat's grace period.
    Also a trial no worker ever tagged once it is older than the grace period: a kill in the moment between Optuna
    creating a trial and :class:`Tagged` tagging it leaves one, with no heartbeat for Optuna to fail it by, while a
    live worker tags its trial within milliseconds. Returns their numbers."""
    failed = []
    now = datetime.datetime.now()  # Optuna stamps datetime_start with the local naive time
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        stale = untagged(t) and t.datetime_start is not None and (now - t.datetime_start).total_seconds() > GRACE_SECONDS
        if stale or (host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))):
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            failed.append(t.number)
    return failed


def untagged(t: FrozenTrial) -> bool:
    """A running trial no worker has tagged (:class:`Tagged` does it first thing): one in its first milliseconds, or
    one a kill caught in them. It has evaluated nothing, and it is no position in a strategy's sequence."""
    return t.state == TrialState.RUNNING and "worker" not in t.user_attrs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def done(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that are done with their schedule, in one read of the storage: evaluated in full (:func:`evaluated`)
    or stopped by the pruner (:func:`pruned`)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)) if _evaluated(t) or _stopped(t)]


def spent(study: optuna.Study) -> int:
    """Candidates the search has spent its ``--trials`` on: evaluated in full, or stopped by the pruner."""
    return len(done(study))


def committed(study: optuna.Study, trial: Trial | None = None) -> int:
    """:func:`spent` plus the evaluations in flight (other than ``trial``'s), in one read of the storage: the
    count a worker checks against ``--trials`` before and after each claim."""
    own = trial.number if trial is not None else None
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if _evaluated(t) or _stopped(t) or _in_flight(t, own))


def run_baselines(
    study: optuna.Study, baselines: Sequence[Schedule | PeerRun], evaluate: Callable[[Any, Trial], dict[str, Any]], on_done: Callable[[], None] | None = None
) -> None:
    """Evaluate every baseline (a schedule, or a caching peer at one setting) once in ``study``, in the given order
    (several workers share the list; waits for others' in-flight ones). ``evaluate(baseline, trial)`` may stop a plan
    baseline off the front on the rungs (``TrialPruned``; search/fidelity.py): it is done, as pruned."""
    todo = {s.key: s for s in baselines}
    fail_orphans(study)

    def finished() -> set[str]:
        return {t.user_attrs.get("key") for t in done(study)}

    def objective(trial: Trial) -> tuple[float, float]:
        keys = finished()
        for key, schedule in todo.items():
            if key in keys:
                continue
            if claim(study, trial, key) is None:
                try:
                    values = record(trial, schedule, evaluate(schedule, trial))
                except optuna.TrialPruned:
                    if on_done is not None:
                        on_done()  # stopped off the front: done too
                    raise
                if on_done is not None:
                    on_done()
                return values
        trial.set_user_attr("idle", True)
        study.stop()
        raise optuna.TrialPruned("no baseline left to claim")

    while True:
        if finished() >= set(todo) or INTERRUPT.requested:
            return
        optimize(study, objective, [lambda study_, trial: study_.stop() if INTERRUPT.requested else None])
        remaining = set(todo) - finished()
        if remaining:  # claimed by other (possibly dead) workers: wait for them, or for the heartbeat to fail them
            optuna.storages.fail_stale_trials(study)
            time.sleep(1 + random.random())  # jitter: workers that stepped aside together do not retry in lockstep


def run_search(
    study: optuna.Study,
    trials: int,
    propose: Callable[[Trial], Schedule],
    evaluate: Evaluate,
    on_done: Callable[[], None] | None = None,
    known: Mapping[str, tuple[float, float]] | None = None,
) -> bool:
    """Run the strategy until ``trials`` schedules have been evaluated (or pruned) in the study (resumes where it stopped).

    ``known``: schedule key -> (MACs, rFID) of the evaluated baselines, answered from memory. Returns False when it
    stopped early because the strategy proposed ``EXHAUSTED_AFTER`` already-evaluated schedules in a row (a space
    smaller than ``trials`` would otherwise be searched for ever), True otherwise."""
    repeats = 0

    def objective(trial: Trial) -> tuple[float, float]:
        if committed(study, trial) >= trials:  # other workers' evaluations fill --trials: none beyond it
            trial.set_user_attr("idle", True)
            study.stop()
            raise optuna.TrialPruned("--trials reached by the evaluations in flight")
        return answer(trial, study, propose(trial), within_trials, known or {})

    def within_trials(schedule: Schedule, trial: Trial) -> dict[str, Any]:
        """Claimed, about to evaluate: checked again now that this claim is visible to the other workers (each writes
        its claim before it reads the others'), so of claims made at once that would overfill --trials at least the
        later reader steps aside (its schedule stays free) and tries again after a random pause."""
        if committed(study, trial) >= trials:
            trial.set_user_attr("idle", True)
            time.sleep(random.random() * 0.5)
            raise optuna.TrialPruned("--trials filled by evaluations claimed at the same moment")
        return evaluate(schedule, trial)

    def stop(study_: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal repeats
        if trial.state == TrialState.COMPLETE or _stopped(trial):
            new = trial.user_attrs.get("duplicate_of") is None
            repeats = 0 if new else repeats + 1
            if new and on_done is not None:
                on_done()
        elif trial.state == TrialState.PRUNED and trial.user_attrs.get("duplicate_of") is not None:
            repeats += 1  # a pruned schedule proposed again
        if spent(study_) >= trials or repeats >= EXHAUSTED_AFTER or INTERRUPT.requested:
            study_.stop()

    fail_orphans(study)
    if spent(study) < trials:
        optimize(study, objective, [stop])
    return repeats < EXHAUSTED_AFTER
