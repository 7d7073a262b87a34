"""The report's sections, each from the run's results to an HTML body that says plainly what is absent.

Every builder tolerates missing keys: a run without validation, without a real-data reference, without a compress
run, or written by an older flexdiff still gets every section it can have and a note for each part it cannot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flexdiff import provenance
from flexdiff.errors import FlexdiffError
from flexdiff.report import grids, plots
from flexdiff.report.html import Section, absent, esc, img, para, table
from flexdiff.report.load import RunData
from flexdiff.schedule import STEP_KINDS, count_steps
from flexdiff.utils.text import mask_password

Row = dict[str, Any]
NO_SEARCH = "no schedule search in this folder (it is a compress run; a search of the student would be in its search/ folder)"


def fmt(value: Any, spec: str = ".3f", none: str = "–") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        return none
    return format(value, spec)


def _speed(value: Any) -> str:
    return fmt(value, ".2f") + ("x" if isinstance(value, (int, float)) else "")


def _config(results: Row) -> Row:
    config = results.get("config")
    return config if isinstance(config, dict) else {}


def _trials(results: Row) -> tuple[list[Row], list[Row]]:
    trials = results.get("trials") if isinstance(results.get("trials"), dict) else {}
    return [r for r in trials.get("baselines") or [] if isinstance(r, dict)], [r for r in trials.get("searched") or [] if isinstance(r, dict)]


def _validated(results: Row) -> list[Row]:
    return [r for r in results.get("validated") or [] if isinstance(r, dict)]


def _best(results: Row) -> Row | None:
    best = results.get("best")
    return best if isinstance(best, dict) else None


def summary(data: RunData) -> str:
    """The answer first: what was searched, what was chosen and at what cost and quality."""
    lines = [f"Run folder: <code>{esc(data.run_dir)}</code>"]
    r = data.search
    if r is not None:
        c, teacher, best = _config(r), r.get("teacher") or {}, _best(r)
        lines.append(
            f"Model <code>{esc(c.get('model', '?'))}</code>, sampler {esc(c.get('sampler', '?'))} with T = {esc(c.get('steps', '?'))} steps, "
            f"budget {esc(_speed(r.get('budget_speedup')))} MACs speed-up, seed {esc(c.get('seed', '?'))}, "
            f"{esc(len(_trials(r)[1]))} searched schedules and {esc(len(_trials(r)[0]))} baselines scored on {esc(c.get('n', '?'))} images each."
        )
        if best is not None:
            won = "a searched schedule" if best.get("kind") == "searched" else f"a baseline ({best.get('family')}): the search did not beat it at this budget"
            lines.append(
                f"<b>Chosen schedule</b>: <code>{esc(best.get('name'))}</code> — {esc(won)}. "
                f"{esc(_speed(best.get('macs_speedup')))} MACs and {esc(_speed(best.get('wall_speedup')))} wall-clock speed-up, "
                f"rFID {esc(fmt(best.get('rfid')))}, FID {esc(fmt(best.get('fid'), '.2f', 'not measured'))} "
                f"(teacher FID {esc(fmt(teacher.get('fid'), '.2f', 'not measured'))}), validated on {esc(c.get('validate_n', '?'))} images."
            )
        else:
            lines.append("<b>No validated schedule fits the budget</b>; see the Pareto front below for the closest ones.")
    if data.compress is not None:
        t, s = data.compress.get("teacher") or {}, data.compress.get("student") or {}
        fid_n = (data.compress.get("config") or {}).get("fid_n")
        lines.append(
            f"<b>Compress run</b>: student {esc(fmt(s.get('macs'), ',.0f'))} MACs / {esc(fmt(s.get('params'), ',.0f'))} parameters "
            f"against the teacher's {esc(fmt(t.get('macs'), ',.0f'))} / {esc(fmt(t.get('params'), ',.0f'))}; "
            f"FID {esc(fmt(s.get('fid'), '.2f', 'not measured'))} against the teacher's {esc(fmt(t.get('fid'), '.2f', 'not measured'))}"
            + (f" ({esc(fid_n)} images)." if fid_n else ".")
        )
    return '<div class="summary">' + "".join(f"<p>{line}</p>" for line in lines) + "</div>"


def pareto(data: RunData) -> str:
    r = data.search
    if r is None:
        return absent(NO_SEARCH)
    c, best = _config(r), _best(r)
    chosen = best.get("name") if best else None
    baselines, searched = _trials(r)
    parts = [
        para(
            "Speed-up over the teacher against quality. rFID compares each schedule's images with the teacher's from the same noise "
            "(0 = identical); FID compares them with real data. Every baseline family has its own marker; the red star is the chosen "
            "schedule; the dashed line is the budget.",
            "caption",
        )
    ]
    png = plots.pareto_search(baselines + searched, r.get("budget_speedup"), chosen, c.get("n"))
    parts.append(
        img(png, "Pareto front of every evaluated schedule")
        if png
        else absent("no evaluated schedules in results.json (trials.baselines and trials.searched are empty)")
    )
    validated = _validated(r)
    png = plots.pareto_validated(r.get("teacher"), validated, r.get("budget_speedup"), chosen, c.get("validate_n"))
    parts.append(
        img(png, "Validated schedules: speed-up against rFID and FID")
        if png
        else absent("no validated schedules in results.json, so no wall-clock speed-up or FID to plot")
    )
    teacher = r.get("teacher") or {}
    if validated and all(row.get("fid") is None for row in validated) and teacher.get("fid") is None:
        parts.append(absent("FID: this run has no real-data reference (the model is not a built-in one with a held-out set), so only rFID is shown"))
    if validated:
        rows = [[teacher.get("name", "teacher"), "teacher", "teacher", "1.00x", "1.00x", "0", "0", fmt(teacher.get("fid"), ".3f"), "–"]]
        rows += [
            [
                row.get("name"),
                row.get("kind"),
                row.get("family"),
                _speed(row.get("macs_speedup")),
                _speed(row.get("wall_speedup")),
                fmt(row.get("rfid")),
                fmt(row.get("paired")),
                fmt(row.get("fid")),
                fmt(row.get("search_rfid")),
            ]
            for row in sorted(validated, key=lambda x: -(x.get("macs") or 0))
        ]
        marks = [False] + [bool(chosen) and row.get("name") == chosen for row in sorted(validated, key=lambda x: -(x.get("macs") or 0))]
        parts.append(f"<h3>Validated on {esc(c.get('validate_n', '?'))} images</h3>")
        parts.append(
            table(
                ["schedule", "kind", "family", "MACs speed-up", "wall speed-up", "rFID", "paired", "FID", f"rFID in search ({c.get('n', '?')})"], rows, 3, marks
            )
        )
    return "\n".join(parts)


def image_grids(data: RunData, n: int, device: str, progress: bool) -> str:
    r = data.search
    if r is None:
        return absent(NO_SEARCH)
    rows, note = grids.pick_rows(r)
    if not rows:
        return absent(note or "no schedule to show")
    c = _config(r)
    try:
        panels = grids.generate_panels(c, rows, n, device, progress)
    except (FlexdiffError, OSError, RuntimeError) as exc:  # a model folder moved, deleted or unreadable here
        return absent(f"the image grids need the run's model {c.get('model')!r}, which could not be loaded or run here ({exc})")
    parts = [
        para(
            f"{n} images per row, generated now from the run's config (model {c.get('model')}, seed {c.get('seed')}): the same initial noise "
            "in every column, so the rows differ only by the schedule. Under each schedule, its per-pixel absolute difference to the teacher "
            "(brighter = further; one colour scale for the whole figure).",
            "caption",
        )
    ]
    if note:
        parts.append(absent(note))
    parts.append(img(grids.comparison_png(panels, int(c.get("seed", 0))), "Teacher, chosen schedule and baseline from the same noise, with difference maps"))
    validated = {v.get("name"): v for v in _validated(r)}
    searched = {t.get("name"): t for t in sum(_trials(r), [])}
    names = [
        [
            role,
            row.get("genome") or row.get("name"),
            _speed(row.get("macs_speedup")),
            fmt((validated.get(row.get("name")) or {}).get("rfid"), ".3f", "not validated"),
            fmt((searched.get(row.get("name")) or {}).get("rfid")),
        ]
        for role, row in rows
    ]
    parts.append(
        table(
            ["row", "schedule", "MACs speed-up", f"rFID, validation ({c.get('validate_n', '?')} images)", f"rFID, search ({c.get('n', '?')} images)"], names, 2
        )
    )
    return "\n".join(parts)


def strips(data: RunData) -> str:
    r = data.search
    if r is None:
        return absent(NO_SEARCH)
    best, validated = _best(r), _validated(r)
    chosen = [("chosen", best)] if best and best.get("steps") else []
    others = [("validated", row) for row in validated if row.get("steps") and not (best and row.get("name") == best.get("name"))]
    entries = chosen + others
    if not entries:
        return absent("no chosen or validated schedule with its steps in results.json")
    num_branches = len(r["partial_step_macs"]) if isinstance(r.get("partial_step_macs"), list) else None
    png = plots.schedule_strips([(grids.label(row, role), row["steps"]) for role, row in entries], num_branches)
    parts = [
        para(
            "Each cell is one of the teacher's T steps, noisiest first: full (the whole network; refreshes the cache), partial (only the layers "
            "shallower than the skip branch run; darker orange = deeper branch = more compute) or null (no network call; the sampler jumps "
            "over the timestep).",
            "caption",
        )
    ]
    if png:
        parts.append(img(png, "Schedule strips: step types of the chosen and validated schedules"))
    counts = [count_steps(row["steps"]) for _, row in entries]
    kinds = [k for k in STEP_KINDS.names() if any(k in c for c in counts)]
    rows = [[grids.label(row, role), row.get("genome") or row.get("name"), *(c.get(k, 0) for k in kinds)] for (role, row), c in zip(entries, counts)]
    parts.append(table(["strip", "schedule (a genome: branch:interval per segment)", *kinds], rows, 2))
    return "\n".join(parts)


def progress(data: RunData) -> str:
    r = data.search
    if r is None:
        return absent(NO_SEARCH)
    baselines, searched = _trials(r)
    if not searched:
        return absent("no searched trials in results.json (the search ran with --trials 0 or has not evaluated any schedule)")
    c = _config(r)
    parts = [
        para(
            f"{len(searched)} schedules searched with the {c.get('strategy', '?')} strategy. Solid: the lowest rFID found so far among "
            "schedules at least that fast (MACs); dotted, same colour: the best baseline at that budget, for comparison.",
            "caption",
        )
    ]
    png = plots.search_progress(searched, baselines, r.get("budget_speedup"))
    if png:
        parts.append(img(png, "Search progress: best rFID within each budget against trials evaluated"))
    rows = []
    order = {id(x): i + 1 for i, x in enumerate(sorted(searched, key=lambda x: x.get("trial", 0)))}
    for b in plots.budgets_for(r.get("budget_speedup")):
        s = [x for x in searched if (x.get("macs_speedup") or 0) >= b - 1e-9 and isinstance(x.get("rfid"), (int, float))]
        base = [x for x in baselines if x.get("family") != "teacher" and (x.get("macs_speedup") or 0) >= b - 1e-9 and isinstance(x.get("rfid"), (int, float))]
        bs = min(s, key=lambda x: x["rfid"]) if s else None
        bb = min(base, key=lambda x: x["rfid"]) if base else None
        rows.append(
            [
                f">= {b:.2f}x",
                fmt(bs["rfid"]) if bs else "none found",
                f"after {order[id(bs)]} trials" if bs else "–",
                fmt(bb["rfid"]) if bb else "none",
                bb.get("name") if bb else "–",
            ]
        )
    parts.append(table(["MACs budget", "best searched rFID", "found at", "best baseline rFID", "baseline"], rows, 1))
    return "\n".join(parts)


def _total_rows(c: Row) -> tuple[list[list[str]], list[str]]:
    teacher, student = c.get("teacher") if isinstance(c.get("teacher"), dict) else None, c.get("student") if isinstance(c.get("student"), dict) else None
    missing = [k for k, v in (("teacher", teacher), ("student", student)) if v is None]
    rows = []
    for key, title, spec in (("macs", "MACs per sample", ",.0f"), ("params", "parameters", ",.0f"), ("fid", "FID", ".3f")):
        t, s = (teacher or {}).get(key), (student or {}).get(key)
        ratio = fmt(s / t, ".3f") if isinstance(t, (int, float)) and isinstance(s, (int, float)) and t else "–"
        rows.append([title, fmt(t, spec, "not measured"), fmt(s, spec, "not measured"), ratio])
    return rows, missing


def compress(data: RunData) -> str:
    c = data.compress
    if c is None:
        return absent("no compress run in this folder (`flexdiff compress` writes its results.json here or in compress/)")
    parts = [para(f"From {data.compress_path}.", "caption")]
    missing: list[str] = []
    rows, miss = _total_rows(c)
    missing += miss
    parts += ["<h3>Totals</h3>", table(["", "teacher", "student", "student / teacher"], rows, 1)]
    blocks = [b for b in c.get("blocks") or [] if isinstance(b, dict)]
    if blocks:
        body = []
        for b in blocks:
            tm, sm, tp, sp = b.get("teacher_macs"), b.get("macs"), b.get("teacher_params"), b.get("params")
            body.append(
                [
                    b.get("block", "?"),
                    b.get("choice", "–"),
                    fmt(tm, ",.0f"),
                    fmt(sm, ",.0f"),
                    fmt(sm / tm, ".3f") if isinstance(sm, (int, float)) and isinstance(tm, (int, float)) and tm else "–",
                    fmt(tp, ",.0f"),
                    fmt(sp, ",.0f"),
                    fmt(b.get("loss"), ".4g"),
                ]
            )
        parts += [
            "<h3>Per-block choices</h3>",
            table(["block", "choice", "teacher MACs", "student MACs", "MACs ratio", "teacher params", "student params", "distillation loss"], body, 2),
        ]
    else:
        missing.append("blocks")
    retrain = c.get("retrain") if isinstance(c.get("retrain"), dict) else {}
    history = retrain.get("history") if isinstance(retrain.get("history"), list) else None
    png = plots.loss_curves(history) if history else None
    if png:
        parts += ["<h3>Retraining loss curves</h3>", img(png, "Retraining loss curves of the student")]
    else:
        missing.append("retrain.history")
    if missing:
        parts.append(absent(f"{', '.join(missing)} absent from {data.compress_path}"))
    return "\n".join(parts)


def _environment_html(env: Row | None, recorded: bool) -> str:
    if not isinstance(env, dict):
        env, recorded = provenance.environment(), False
    versions = env.get("versions") or {}
    machine = env.get("machine") or {}
    where = (
        f"recorded when the run wrote its results ({env.get('date', 'date unknown')})"
        if recorded
        else "the run did not record its environment; shown: the machine rendering this report"
    )
    rows = [[f"version: {k}", v or "not installed"] for k, v in versions.items()] + [[f"machine: {k}", "–" if v is None else v] for k, v in machine.items()]
    return para(where, "caption") + table(["", "value"], rows, 2)


def _run_provenance(title: str, results: Row, program: str) -> str:
    commands, recorded = provenance.command_text(results, program)
    parts = [f"<h3>{esc(title)}</h3>"]
    if commands:
        parts.append(
            para(
                "Command line(s), oldest first (a resumed run keeps the work of the earlier ones):"
                if recorded
                else "Command rebuilt from the run's config (the run did not record its command line):",
                "caption",
            )
        )
        parts.append("<pre>" + esc(mask_password("\n".join(commands))) + "</pre>")  # a results file from before a password form was masked
    else:
        parts.append(absent("the run recorded neither its command nor its config"))
    c = _config(results)
    if c:
        parts.append(
            para(
                f"Seed {c.get('seed', '?')}: it draws the initial noise of every image (image i is the same at any n) and drives every random choice of the run.",
                "caption",
            )
        )
        extra = (
            [["study name (resolved)", results.get("study")], ["storage URL (resolved)", mask_password(str(results.get("storage")))]]
            if results.get("study")
            else []
        )
        shown = {k: mask_password(v) if isinstance(v, str) else v for k, v in c.items()}  # --storage, whatever results.json kept
        parts.append(table(["config", "value"], [[k, v] for k, v in shown.items()] + extra, 2))
    parts.append(_environment_html(results.get("environment"), "environment" in results))
    return "\n".join(parts)


def provenance_section(data: RunData) -> str:
    parts = []
    if data.search is not None:
        parts.append(_run_provenance("Schedule search", data.search, "search"))
    if data.compress is not None:
        parts.append(_run_provenance("Compress run", data.compress, "compress"))
    versions = provenance.environment()["versions"]
    parts.append(para("Report rendered with " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".", "caption"))
    return "\n".join(parts)


def guarded(section_id: str, title: str, build: Callable[[], str]) -> Section:
    """One section; an unexpected error in it (a malformed results file) becomes a note, the other sections still render."""
    try:
        body = build()
    except FlexdiffError as exc:
        body = absent(str(exc))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as exc:
        body = absent(f"this section could not be rendered from the results ({exc.__class__.__name__}: {exc})")
    return Section(section_id, title, body)
