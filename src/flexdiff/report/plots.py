"""The report's matplotlib figures, each returned as PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly (no pyplot, no global backend
switch), with ``constrained`` layout so labels never overlap, units on every axis and one legend per figure.
Every function takes plain result rows (dicts of ``results.json``) and returns ``None`` when it has nothing to draw;
the caller then says so in the page.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator

from flexdiff.schedule import STEP_KINDS, Step
from flexdiff.utils.pareto import pareto_front

Row = dict[str, Any]

#: One marker and colour per schedule family, so a reader tells the baselines apart at a glance.
FAMILY_STYLE: dict[str, dict[str, Any]] = {
    "genome": {"marker": "o", "color": "tab:orange", "label": "searched (genome)"},
    "teacher": {"marker": "D", "color": "black", "label": "teacher"},
    "ddim": {"marker": "s", "color": "tab:blue", "label": "DDIM-k"},
    "deepcache": {"marker": "^", "color": "tab:green", "label": "DeepCache uniform"},
    "deepcache-nonuniform": {"marker": "v", "color": "tab:olive", "label": "DeepCache non-uniform"},
    "forecast": {"marker": "<", "color": "tab:red", "label": "uniform forecast (TaylorSeer-style)"},
    "ddim+dpmpp-2m": {"marker": "s", "color": "tab:purple", "label": "DDIM-k steps, DPM-Solver++(2M)"},  # a --solver search
    "deepcache+dpmpp-2m": {"marker": "^", "color": "tab:cyan", "label": "DeepCache steps, DPM-Solver++(2M)"},
    "ddim+ddim-2m": {"marker": "s", "color": "tab:brown", "label": "DDIM-k steps, DDIM-2M"},
    "deepcache+ddim-2m": {"marker": "^", "color": "tab:pink", "label": "DeepCache steps, DDIM-2M"},
}
_SPARE = [("P", "tab:purple"), ("X", "tab:brown"), ("h", "tab:pink"), ("<", "tab:cyan"), (">", "tab:gray"), ("p", "tab:red")]
CHOSEN = {"marker": "*", "s": 340, "facecolors": "none", "edgecolors": "red", "linewidths": 1.8, "zorder": 6}


def style(family: str) -> dict[str, Any]:
    """The family's marker; families this module does not know get a spare marker, stable by name."""
    if family not in FAMILY_STYLE:
        marker, color = _SPARE[sum(map(ord, family)) % len(_SPARE)]
        FAMILY_STYLE[family] = {"marker": marker, "color": color, "label": family}
    return FAMILY_STYLE[family]


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08)  # nothing clipped at the edges
    return buf.getvalue()


def _speedup_axis(ax: Any, label: str) -> None:
    """Speed-ups on a log2 axis labelled 1x, 2x, 4x ...: equal ratios look equally far apart."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_minor_locator(LogLocator(base=2, subs=(1.5,)))
    fmt = FuncFormatter(lambda v, _: f"{v:g}x")
    ax.xaxis.set_major_formatter(fmt)
    ax.xaxis.set_minor_formatter(fmt)
    ax.set_xlabel(label)
    ax.grid(True, which="both", alpha=0.25)


def _family_order(rows: Sequence[Row]) -> list[str]:
    fams = {_family(r) for r in rows}
    known = [f for f in FAMILY_STYLE if f in fams]
    return known + sorted(fams - set(known))


def _scatter(ax: Any, rows: Sequence[Row], x_key: str, y_key: str) -> None:
    for fam in _family_order(rows):
        pts = [(r[x_key], r[y_key]) for r in rows if _family(r) == fam and _num(r.get(x_key)) and _val(r.get(y_key))]
        if pts:
            st = style(fam)
            xs, ys = zip(*pts)
            ax.scatter(
                xs,
                ys,
                marker=st["marker"],
                color=st["color"],
                s=46 if fam != "genome" else 30,
                alpha=0.85 if fam != "genome" else 0.6,
                edgecolors="none" if st["marker"] not in ("x", "+") else None,
                zorder=4 if fam != "genome" else 3,
            )


def _num(v: Any) -> bool:
    """A positive finite number (speed-ups and times; ``None`` and NaN are absent values)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _val(v: Any) -> bool:
    """A finite number (rFID may be 0 for the teacher)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _family(r: Row) -> str:
    return str(r.get("family") or ("genome" if r.get("kind") == "searched" else r.get("kind")) or "other")


def _front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper-left front of (speed-up, quality) pairs: no other point is both faster and closer to the teacher."""
    return sorted(points[i] for i in pareto_front([(-x, y) for x, y in points]))


def _legend(fig: Figure, rows: Sequence[Row], extra: Sequence[Any] = ()) -> None:
    handles = [Line2D([], [], ls="", marker=style(f)["marker"], color=style(f)["color"], markersize=7, label=style(f)["label"]) for f in _family_order(rows)]
    fig.legend(handles=[*handles, *extra], loc="outside right upper", fontsize=9, frameon=False)


def _budget_line(ax: Any, budget: float | None) -> Line2D | None:
    if not budget or budget <= 0:
        return None
    return ax.axvline(budget, color="0.35", ls="--", lw=1, label=f"budget {budget:.2f}x MACs")


def _chosen_handle(name: str) -> Line2D:
    return Line2D([], [], ls="", marker="*", markersize=15, markerfacecolor="none", markeredgecolor="red", label=f"chosen: {name}")


def _teacher_wall(rows: Sequence[Row]) -> float | None:
    walls = [r.get("wall_seconds") for r in rows if r.get("family") == "teacher"]
    return walls[0] if walls and _num(walls[0]) else None


def pareto_search(trials: Sequence[Row], budget: float | None, chosen: str | None, n: int | None) -> bytes | None:
    """Every evaluated schedule of the search (its ``n`` images): MACs and wall-clock speed-up against rFID.

    The wall-clock panel uses the wall time each trial measured during the search (teacher trial = 1x), which is
    noisier than the final validation but covers every point.
    """
    rows = [dict(r) for r in trials if _num(r.get("macs_speedup")) and _val(r.get("rfid"))]
    if not rows:
        return None
    t_wall = _teacher_wall(rows)
    for r in rows:
        r["wall_speedup"] = t_wall / r["wall_seconds"] if t_wall and _num(r.get("wall_seconds")) else None
    fig = Figure(figsize=(11.5, 4.3), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    size = f"{n} images" if n else "search images"
    extra: list[Any] = []
    for ax, key, label in (
        (axes[0], "macs_speedup", "MACs speed-up over the teacher (x)"),
        (axes[1], "wall_speedup", "wall-clock speed-up over the teacher (x), measured in the search"),
    ):
        _scatter(ax, rows, key, "rfid")
        front = _front([(r[key], r["rfid"]) for r in rows if _num(r.get(key))])
        if front:
            xs, ys = zip(*front)
            line = ax.step(xs, ys, where="post", color="0.5", lw=1, zorder=2, label="Pareto front (all schedules)")[0]
            if key == "macs_speedup":
                extra.append(line)
        pick = [r for r in rows if chosen and r.get("name") == chosen and _num(r.get(key))]
        if pick:
            ax.scatter([pick[0][key]], [pick[0]["rfid"]], **CHOSEN)
        _speedup_axis(ax, label)
        if key == "macs_speedup" and (b := _budget_line(ax, budget)) is not None:
            extra.append(b)
        if not any(_num(r.get(key)) for r in rows):
            ax.text(0.5, 0.5, "no wall-clock times recorded", transform=ax.transAxes, ha="center", va="center", color="0.4")
    axes[0].set_ylabel(f"rFID vs teacher ({size}; lower is closer)")
    fig.suptitle(f"Every schedule the search evaluated ({size} each)", fontsize=11)
    _legend(fig, rows, [*extra, *([_chosen_handle(chosen)] if chosen and any(r.get("name") == chosen for r in rows) else [])])
    return to_png(fig)


def pareto_validated(teacher: Row | None, validated: Sequence[Row], budget: float | None, chosen: str | None, n: int | None) -> bytes | None:
    """The validated schedules (``validate_n`` images): MACs and wall-clock speed-up against rFID and, if measured, FID."""
    rows = [dict(r) for r in validated if _num(r.get("macs_speedup"))]
    if not rows:
        return None
    if teacher is not None:
        rows.insert(
            0, {"family": "teacher", "name": teacher.get("name", "teacher"), "macs_speedup": 1.0, "wall_speedup": 1.0, "rfid": 0.0, "fid": teacher.get("fid")}
        )
    metrics = [("rfid", f"rFID vs teacher ({n} images)" if n else "rFID vs teacher")]
    if any(_val(r.get("fid")) for r in rows):
        metrics.append(("fid", f"FID vs real data ({n} images)" if n else "FID vs real data"))
    fig = Figure(figsize=(11.5, 3.9 * len(metrics) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(metrics), 2, sharex="col", squeeze=False))
    budget_handle = None
    for i, (metric, ylabel) in enumerate(metrics):
        for j, (key, xlabel) in enumerate(
            (("macs_speedup", "MACs speed-up over the teacher (x)"), ("wall_speedup", "wall-clock speed-up over the teacher (x), measured"))
        ):
            ax = axes[i, j]
            for fam in _family_order(rows):
                pts = [(r[key], r[metric]) for r in rows if _family(r) == fam and _num(r.get(key)) and _val(r.get(metric))]
                if pts:
                    st = style(fam)
                    xs, ys = zip(*pts)
                    ax.scatter(xs, ys, marker=st["marker"], color=st["color"], s=52, alpha=0.9, zorder=4)
            pick = [r for r in rows if chosen and r.get("name") == chosen and _num(r.get(key)) and _val(r.get(metric))]
            if pick:
                ax.scatter([pick[0][key]], [pick[0][metric]], **CHOSEN)
            _speedup_axis(ax, xlabel)
            if key == "macs_speedup":
                budget_handle = _budget_line(ax, budget) or budget_handle
            if j == 0:
                ax.set_ylabel(ylabel + "; lower is better")
            if i < len(metrics) - 1:
                ax.set_xlabel("")
    fig.suptitle(f"Validated schedules ({n} images each, the teacher at 1x)" if n else "Validated schedules", fontsize=11)
    extra = [h for h in (budget_handle,) if h is not None]
    _legend(fig, rows, [*extra, *([_chosen_handle(chosen)] if chosen and any(r.get("name") == chosen for r in rows) else [])])
    return to_png(fig)


def budgets_for(run_budget: float | None) -> list[float]:
    """The run's budget and 2x, 3x, 4x (the budgets the papers report), distinct and sorted."""
    values = {2.0, 3.0, 4.0} | ({round(run_budget, 4)} if run_budget and run_budget > 1 else set())
    return sorted(values)


def search_progress(searched: Sequence[Row], baselines: Sequence[Row], run_budget: float | None) -> bytes | None:
    """Best rFID within each budget against the number of searched schedules evaluated (trial order)."""
    rows = sorted([r for r in searched if _val(r.get("rfid")) and _num(r.get("macs_speedup"))], key=lambda r: r.get("trial", 0))
    if not rows:
        return None
    fig = Figure(figsize=(11.5, 4.3), layout="constrained")
    ax = fig.subplots()
    x = np.arange(1, len(rows) + 1)
    colours = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:brown"]
    handles = []
    for colour, b in zip(colours * 3, budgets_for(run_budget)):
        best, ys = math.inf, []
        for r in rows:
            if r["macs_speedup"] >= b - 1e-9:
                best = min(best, r["rfid"])
            ys.append(best if math.isfinite(best) else np.nan)
        tag = " (run budget)" if run_budget and abs(b - run_budget) < 1e-3 else ""
        handles.append(ax.step(x, ys, where="post", color=colour, lw=1.8, label=f"searched, >= {b:.2f}x MACs{tag}")[0])
        base = [
            r["rfid"]
            for r in baselines
            if r.get("family") != "teacher" and _num(r.get("macs_speedup")) and r["macs_speedup"] >= b - 1e-9 and _val(r.get("rfid"))
        ]
        if base:
            handles.append(ax.axhline(min(base), color=colour, ls=":", lw=1.3, label=f"best baseline, >= {b:.2f}x MACs"))
    ax.set_xlabel("searched schedules evaluated (trial order)")
    ax.set_ylabel("best rFID within the budget (lower is better)")
    ax.set_xlim(0.5, len(rows) + 0.5)
    ax.grid(True, alpha=0.25)
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False)
    fig.suptitle("Best rFID found so far at each budget", fontsize=11)
    return to_png(fig)


def strip_colours(steps_of: Sequence[Sequence[str]], num_branches: int | None) -> tuple[list[list[int]], list[tuple[Any, str]]]:
    """Per strip the colour index of each step, and the (colour, legend text) of every index used: a kind without a
    branch is its own :attr:`StepKind.colour`; a kind with one takes its colormap's shade per branch (darker = deeper)."""
    parsed = [[Step.parse(s) for s in steps] for steps in steps_of]
    branches = max([num_branches or 0, 1] + [s.branch + 1 for steps in parsed for s in steps if s.branch is not None])
    used = {s for steps in parsed for s in steps}
    colours: dict[Step, int] = {}
    legend: list[tuple[Any, str]] = []
    for name, kind in STEP_KINDS.items():  # registry order: full, partial, null, forecast, then any registered later
        for b in range(branches) if kind.takes_branch else [None]:
            if Step(name, b) in used:
                colours[Step(name, b)] = len(legend)
                shade = colormaps[kind.colour](0.25 + 0.65 * b / max(branches - 1, 1)) if b is not None else kind.colour
                legend.append((shade, f"{kind.label or name}, branch {b}" if b is not None else kind.label or name))
    return [[colours[s] for s in steps] for steps in parsed], legend


def schedule_strips(strips: Sequence[tuple[str, Sequence[str]]], num_branches: int | None) -> bytes | None:
    """One row per schedule, one cell per teacher step, coloured by step kind (:func:`strip_colours`)."""
    strips = [(label, steps) for label, steps in strips if steps]
    if not strips:
        return None
    T = max(len(s) for _, s in strips)
    indices, legend = strip_colours([steps for _, steps in strips], num_branches)
    codes = np.full((len(strips), T), len(legend), dtype=int)  # past a short strip's end: white
    for i, row in enumerate(indices):
        codes[i, : len(row)] = row
    cmap = ListedColormap([colour for colour, _ in legend] + ["white"])
    fig = Figure(figsize=(11.5, 0.42 * len(strips) + 1.9), layout="constrained")
    ax = fig.subplots()
    ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(cmap.colors) - 0.5, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, T, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, len(strips), 1), minor=True)
    ax.grid(which="minor", color="white", lw=0.8)
    ax.tick_params(which="minor", length=0)
    step = 1 if T <= 20 else 5 if T <= 100 else 10
    ax.set_xticks(np.arange(0, T, step))
    ax.set_yticks(np.arange(len(strips)), [label for label, _ in strips], fontsize=9)
    ax.set_xlabel("teacher step (0 = noisiest; each cell is one of the T sampler steps)")
    handles = [Patch(facecolor=colour, edgecolor="0.6", label=text) for colour, text in legend]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=9, frameon=False)
    return to_png(fig)


#: numbers in a retraining history row that are not losses (alpha gets its own axis)
NOT_LOSSES = ("step", "alpha", "lr", "learning_rate", "epoch", "seconds", "time")


def loss_curves(history: Sequence[Row]) -> bytes | None:
    """Retraining losses against the optimiser step; ``alpha`` (the dynamic loss weight) on a second axis."""
    rows = [r for r in history if isinstance(r, dict)]
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in NOT_LOSSES and all(_val(r.get(k)) or r.get(k) is None for r in rows)]
    keys = [k for k in keys if any(_val(r.get(k)) for r in rows)]  # the joint loss and its terms (feature, output, data ...)
    if not rows or not keys:
        return None
    x = [r["step"] if _val(r.get("step")) else i for i, r in enumerate(rows)]
    fig = Figure(figsize=(11.5, 4.0), layout="constrained")
    ax = fig.subplots()
    handles = []
    for k in keys:
        ys = [r.get(k) if _val(r.get(k)) else np.nan for r in rows]
        handles.append(ax.plot(x, ys, lw=2.0 if k == "loss" else 1.2, label=k)[0])
    values = [r.get(k) for r in rows for k in keys if _val(r.get(k))]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("retraining step")
    ax.set_ylabel("loss (log scale)" if ax.get_yscale() == "log" else "loss")
    ax.grid(True, alpha=0.25)
    if any(_val(r.get("alpha")) for r in rows):
        ax2 = ax.twinx()
        handles.append(ax2.plot(x, [r["alpha"] if _val(r.get("alpha")) else np.nan for r in rows], color="0.3", ls="--", lw=1.2, label="alpha")[0])
        ax2.set_ylabel("alpha (dynamic weight of the joint loss)")
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False)
    fig.suptitle("Retraining of the assembled student", fontsize=11)
    return to_png(fig)
