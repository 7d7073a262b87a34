"""Shared helpers of the benchmark scripts: machine facts and atomic JSON output."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def write_result(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` plus the command line, date and machine, atomically."""
    payload = {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **payload}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


BUDGETS = (2, 3, 4, 5)  # fractions of the teacher's MACs every search benchmark compares at


def budget_plan(
    searched: list[dict[str, Any]], baselines: list[dict[str, Any]], teacher_macs: float, candidates: int
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Stage 1 (search-size rFID): per budget 1/f the ``candidates`` searched schedules with the lowest rFID within it,
    and per baseline family the best ``candidates`` of equal or higher cost within the budget plus the cheapest above
    it. Returns the plan and every picked row by name (to re-score with more images; picks are then made by that
    rFID, never by FID: real data only measures the outcome)."""
    picks: dict[str, dict[str, Any]] = {}
    plan: list[dict[str, Any]] = []
    families = sorted({r["family"] for r in baselines} - {"teacher"})
    for fraction in BUDGETS:
        budget = teacher_macs / fraction
        within = sorted([r for r in searched if r["macs"] <= budget], key=lambda r: (r["rfid"], r["macs"]))[:candidates]
        if not within:
            plan.append({"budget": f"1/{fraction}", "searched": None})
            continue
        entry: dict[str, Any] = {"budget": f"1/{fraction}", "budget_macs": budget, "candidates": [r["name"] for r in within], "baselines": {}}
        picks.update({r["name"]: r for r in within})
        cheapest = min(r["macs"] for r in within)
        for family in families:
            fam = [r for r in baselines if r["family"] == family and r["macs"] >= cheapest]
            window = sorted([r for r in fam if r["macs"] <= budget], key=lambda r: r["rfid"])[:candidates]
            above = [r for r in fam if r["macs"] > budget]
            chosen = window + ([min(above, key=lambda r: r["macs"])] if above else [])
            entry["baselines"][family] = [r["name"] for r in chosen]
            picks.update({r["name"]: r for r in chosen})
        plan.append(entry)
    return plan, picks


def budget_summary(
    plan: list[dict[str, Any]], scored: dict[str, dict[str, Any]], verdicts: dict[str, tuple[str, ...] | None] | None = None
) -> list[dict[str, Any]]:
    """Stage 2: per budget the searched schedule with the lowest validated rFID, against each family's best of equal
    or higher cost (within the budget, else its cheapest above: ``within_budget`` False), with FID and rFID margins.
    ``verdicts``: name -> families (None: every family compared); ``name`` (True/False): the searched schedule wins on
    both against each of them; ``name_at_budget``: against those of them with a setting at the budget (the families
    that cannot reach it are left out, as the acceptance's "at 1/k of the teacher's MACs" reads)."""
    verdicts = verdicts or {"beats_baselines": None}
    summary = []
    for entry in plan:
        if entry.get("searched", "") is None:
            summary.append(entry)
            continue
        s = min((scored[n] for n in entry["candidates"]), key=lambda r: (r["rfid"], r["macs"]))
        result = {**entry, "searched": s["name"], "searched_row": s, "comparisons": {}}
        for family, names in entry["baselines"].items():
            fam = [scored[n] for n in names if scored[n]["macs"] >= s["macs"]]
            window = [r for r in fam if r["macs"] <= entry["budget_macs"]]
            b = min(window, key=lambda r: r["rfid"]) if window else (min(fam, key=lambda r: r["macs"]) if fam else None)
            if b is None:
                continue
            result["comparisons"][family] = {
                "baseline": b,
                "fid_margin": round(b["fid"] - s["fid"], 4),
                "rfid_margin": round(b["rfid"] - s["rfid"], 5),
                "searched_wins": b["fid"] > s["fid"] and b["rfid"] > s["rfid"],
                "within_budget": b["macs"] <= entry["budget_macs"],
            }
        for key, required in verdicts.items():
            compared = [c for f, c in result["comparisons"].items() if required is None or f in required]
            result[key] = all(c["searched_wins"] for c in compared)
            result[key + "_at_budget"] = all(c["searched_wins"] for c in compared if c["within_budget"])
        summary.append(result)
    return summary


def headline(rows: list[dict[str, Any]], teacher: dict[str, Any], macs: float = 3.0, wall: float = 2.7) -> dict[str, Any] | None:
    """The searched schedule with the lowest validated rFID among those with >= ``macs`` MACs and >= ``wall``
    wall-clock speed-up, and its FID against the teacher's (the acceptance figure: within 5 %)."""
    fast = [r for r in rows if r["kind"] == "searched" and r["macs_speedup"] >= macs and r["wall_speedup"] >= wall]
    if not fast:
        return None
    h = min(fast, key=lambda r: r["rfid"])
    return {
        "schedule": h["name"],
        "macs_speedup": h["macs_speedup"],
        "wall_speedup": h["wall_speedup"],
        "rfid": h["rfid"],
        "fid": h["fid"],
        "teacher_fid": teacher["fid"],
        "fid_ratio": round(h["fid"] / teacher["fid"], 4),
        "within_5_percent": h["fid"] <= 1.05 * teacher["fid"],
    }


def int_ranges(text: str) -> tuple[int, ...]:
    """ "2-8,10" -> (2, 3, 4, 5, 6, 7, 8, 10) (the benchmarks' list options)."""
    out: list[int] = []
    for part in text.split(","):
        low, dash, high = part.partition("-")
        out += range(int(low), int(high) + 1) if dash else [int(part)]
    return tuple(out)


def print_budgets(summary: list[dict[str, Any]], teacher: dict[str, Any]) -> None:
    """Per budget: the searched schedule, then each family's compared baseline with the FID and rFID margins."""
    print(f"teacher FID {teacher['fid']}")
    for r in summary:
        if r.get("searched") is None:
            print(f"{r['budget']}: no searched schedule within budget")
            continue
        s = r["searched_row"]
        print(f"{r['budget']}: {s['name']} {s['macs_speedup']:.2f}x wall {s['wall_speedup']:.2f}x FID {s['fid']:.2f} rFID {s['rfid']:.3f}")
        for family, c in r["comparisons"].items():
            b = c["baseline"]
            where = "" if c.get("within_budget", True) else "  (above the budget: the family's cheapest setting)"
            print(
                f"    {family:28s} {b['name']:36s} {b['macs_speedup']:.2f}x FID {b['fid']:.2f} ({c['fid_margin']:+.2f}) rFID {b['rfid']:.3f} ({c['rfid_margin']:+.3f}){where}"
            )
