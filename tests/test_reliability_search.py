"""Issue 28 on the search: reruns with another budget, budgets and dry runs before any work, names from the study as
file names and terminal text, bounded option ranges, and storage URLs (masked in every form, drivers named)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from search.test_search import search_args
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.errors import FlexdiffError
from flexdiff.search.study import check_storage_url, open_storage
from flexdiff.utils.text import mask_password, safe_file_stem

runner = CliRunner()


def _one_short_line(stderr: str, limit: int = 300) -> bool:
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and len(lines[0]) <= limit


# --- 3. reruns and budgets ------------------------------------------------------------------------------------------


def _budget_args(model_dir: Path, out: Path, speedup: str) -> list[str]:
    args = search_args(model_dir, out, 4, "--fidelity", "4", "--prune-margin", "0", "--no-report")  # rungs that stop (n=8: auto has none)
    args[args.index("--speedup") + 1] = speedup
    return args


@pytest.mark.slow
def test_a_rerun_for_another_budget_finds_what_a_fresh_run_finds(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A search into an existing OUT with another --speedup finds what the same search into a fresh OUT finds: the
    earlier budget's candidates (bred within it, stopped on the rungs as over it) decide nothing for the new one.
    (Before: the rerun resumed the 3x study, whose --trials were spent, and returned its front.)"""
    rerun, fresh = tmp_path / "rerun", tmp_path / "fresh"
    assert runner.invoke(app, _budget_args(tiny_model_dir, rerun, "3")).exit_code == 0
    for out in (rerun, fresh):
        result = runner.invoke(app, _budget_args(tiny_model_dir, out, "1.5"))
        assert result.exit_code == 0, result.output
    again, new = (json.loads((out / "results.json").read_text()) for out in (rerun, fresh))
    for key in ("searched", "baselines", "pruned", "pruned_baselines"):
        assert [(r["name"], r.get("rfid")) for r in again["trials"][key]] == [(r["name"], r.get("rfid")) for r in new["trials"][key]], key
    assert (again["best"]["name"], again["best"]["rfid"]) == (new["best"]["name"], new["best"]["rfid"])
    result = runner.invoke(app, _budget_args(tiny_model_dir, rerun, "3"))  # the earlier budget: its study resumes, nothing is evaluated again
    assert result.exit_code == 0 and "search (evolution)" not in result.stdout


@pytest.mark.slow
def test_max_macs_below_the_cheapest_schedule_is_refused_before_any_work(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, [*search_args(tiny_model_dir, out, 2), "--max-macs", "1"])
    assert result.exit_code == 2 and _one_short_line(result.stderr) and "--max-macs 1" in result.stderr, result.output
    assert not out.exists()  # before any work: no folder, no study, no teacher reference


@pytest.mark.slow
def test_a_dry_run_writes_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Not the run folder, and not the storage: opening a SQLite URL creates its file (a server's URL, its tables)."""
    db = tmp_path / "elsewhere" / "shared.db"
    db.parent.mkdir()
    result = runner.invoke(app, [*search_args(tiny_model_dir, tmp_path / "run", 2), "--storage", f"sqlite:///{db}", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "estimated wall time" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"] and not any(db.parent.iterdir())


# --- 5 (its search part). option ranges checked before they are expanded ----------------------------------------------


@pytest.mark.parametrize(
    "option, value, needle",
    [
        ("--segments", "1-10000000", "segment counts in [1, 6]"),  # 1.76 GB and an 88 MB error line before
        ("--segments", "3-2", "low first"),
        ("--fidelity", "2-100000000", "image counts in [2, 7]"),
        ("--baseline-branches", "0-100000000", "at most 10000 branches"),
        ("--spacings", "1," + "x" * 100_000, "--spacings 1,xxx"),
    ],
)
def test_option_ranges_are_checked_unexpanded_in_one_short_line(tiny_model_dir: Path, tmp_path: Path, option: str, value: str, needle: str) -> None:
    args = search_args(tiny_model_dir, tmp_path / "run", 2, "--dry-run")
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and _one_short_line(result.stderr) and needle in result.stderr, result.stderr[:500]


# --- 4. names from the study: file names and terminal text --------------------------------------------------------------

EVIL = "../../../x/PWNED\x1b[31m[bold]$\\x$"  # one name for every trial: their files must not overwrite each other


@pytest.mark.slow
def test_names_from_the_study_stay_inside_out_and_are_shown_escaped(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A trial's name in the storage (anyone with access to it can write one) becomes a file name only made safe (in
    OUT/schedules/, never a path out of it) and reaches the terminal with its control characters and rich markup
    escaped. (Before: ``x/PWNED.json`` was written outside OUT and the markup was swallowed.)"""
    out = tmp_path / "a" / "b" / "run"
    args = [*search_args(tiny_model_dir, out, 2), "--no-report"]
    assert runner.invoke(app, args).exit_code == 0
    with sqlite3.connect(out / "study.db") as db:  # every evaluated trial renamed, as a user of the storage could
        rows = db.execute("SELECT a.trial_user_attribute_id, a.value_json FROM trial_user_attributes a WHERE a.key = 'result'").fetchall()
        for attr, value in rows:
            result = json.loads(value)
            result["name"] = EVIL
            db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE trial_user_attribute_id = ?", (json.dumps(result), attr))
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    outside = [p for p in tmp_path.rglob("*") if out not in (p, *p.parents) and p not in out.parents]
    assert outside == [], outside
    results = json.loads((out / "results.json").read_text())
    files = [f for f in results["files"] if f != "best.json"]
    assert len(files) == len(results["pareto"]) and all((out / f).is_file() and (out / f).resolve().parent == (out / "schedules").resolve() for f in files)
    assert "\x1b" not in result.stdout and "\\x1b[31m[bold]$\\x$" in result.stdout  # shown as written, not as styling
    report = runner.invoke(app, ["report", str(out), "--n", "2"])
    assert report.exit_code == 0, report.output
    assert "could not be rendered" not in (out / "report.html").read_text()  # "$\x$" in a legend: text, not mathtext


def test_safe_file_stems_keep_ordinary_names_and_change_every_other_one() -> None:
    for name in ("ddim-25", "genome-b0i1_b1i2", "genome-b0i1f_b2i3@1.5", "ddim-13+dpmpp-2m", "first-block-cache-0.05"):
        assert safe_file_stem(name) == name
    changed = {safe_file_stem(n) for n in ("../x", "..", "", "a/b", "a\\b", "a\x00b", "a\x1bb", "/etc/passwd", ".hidden")}
    assert len(changed) == 9 and all("/" not in s and "\\" not in s and not s.startswith(".") and s.isprintable() for s in changed)


# --- 6. storage URLs ---------------------------------------------------------------------------------------------------

SECRET = "s3cr"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://flexdiff:{SECRET}@127.0.0.1:1/db",
        f"postgresql+psycopg2://flexdiff:{SECRET}%40x@127.0.0.1:1/db",
        f"postgresql://flexdiff:pa@{SECRET}@127.0.0.1:1/db",  # an unencoded @ in the password
        f"postgresql://flexdiff:pa/@{SECRET}@127.0.0.1:1/db",
        f"postgresql:/flexdiff:{SECRET}@127.0.0.1:1/db",  # one-slash typo
        f"postgresql:flexdiff:{SECRET}@127.0.0.1:1/db",
        f"postgresql://flexdiff@127.0.0.1:1/db?password={SECRET}",
        f"mysql://127.0.0.1:1/db?sslmode=x&PWD={SECRET}",
        f"host=127.0.0.1 password={SECRET} dbname=x",
    ],
)
def test_every_password_form_is_masked(url: str) -> None:
    assert SECRET not in mask_password(url) and "***" in mask_password(url)
    assert SECRET not in mask_password(f"--storage={url} and text after")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://flexdiff:pa@{SECRET}@127.0.0.1:1/db",
        f"postgresql:/flexdiff:{SECRET}@127.0.0.1:1/db",
        f"postgresql://flexdiff@127.0.0.1:1/db?password={SECRET}",
        f"nosuchdb://flexdiff:{SECRET}@127.0.0.1:1/db",
        f"mysql://flexdiff:{SECRET}@127.0.0.1:1/db",
    ],
)
def test_storage_errors_never_show_the_password(url: str, tmp_path: Path) -> None:
    """Refused in one line, before any work, with the password masked whatever the URL's form (the driver's own
    message included: an unencoded @ made it name the rest of the password as the host)."""
    result = runner.invoke(app, ["search", "--storage", url, "--trials", "1", "--steps", "10", "--speedup", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and _one_short_line(result.stderr) and SECRET not in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_the_documented_postgresql_form_opens_with_the_shipped_driver() -> None:
    """``postgresql://`` is SQLAlchemy 2.1's psycopg (3); the ``test`` extra ships psycopg2-binary: the URL is opened
    with the driver that is installed, so the failure is the (absent) server's, not a missing module's."""
    pytest.importorskip("psycopg2")
    with pytest.raises(FlexdiffError, match="reachable") as err:
        open_storage(f"postgresql://flexdiff:{SECRET}@127.0.0.1:1/db")
    assert SECRET not in str(err.value) and "ImportError" not in str(err.value) and "OperationalError" in str(err.value)


@pytest.mark.parametrize(
    "url, package",
    [
        ("postgresql://u@h/db", "psycopg2-binary"),
        ("postgresql+psycopg://u@h/db", "psycopg[binary]"),
        ("mysql://u@h/db", "mysqlclient"),
        ("mysql+pymysql://u@h/db", "PyMySQL"),
    ],
)
def test_a_missing_driver_names_the_package_to_install(url: str, package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("psycopg2", "psycopg", "MySQLdb", "pymysql"):
        monkeypatch.setitem(sys.modules, module, None)  # not installed (an import raises ImportError)
    with pytest.raises(FlexdiffError, match=rf"pip install '{package.replace('[', '.').replace(']', '.')}'"):
        check_storage_url(url)
