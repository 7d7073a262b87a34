"""DiffNAS ablations on the built-in teacher: (a) dynamic vs constant alpha, (b) block-wise local search vs one global
ranking of whole sampled students, (c) the student plus a schedule searched for it.

All parts share one ``flexdiff compress`` run (``--run-dir/dynamic``: records, block supernets, local search,
retraining with ``--base-alpha``, by default the package's default schedule). The other arms reuse its recorded
features and trained supernets (copied, so the phase keys match and nothing is retrained) and differ in exactly one
thing, with the same seed and the same number of retraining steps:

- (a) one arm per schedule in ``--alphas`` (``alpha-<schedule>/``): the same student retrained with that ``--alpha``
  (e.g. ``constant:0.5``, ``dynamic:0.75,0.25``).
- (b) ``global``: the budgeted student chosen by ranking ``--global-samples`` whole students, sampled uniformly among
  those within the budget, by their end-to-end output distillation loss ||eps_student - eps_teacher||^2 on the
  recorded held-out rows (shared supernet weights), then retrained exactly like the local-search student. Ranking
  costs K forward passes of a whole network on the held-out rows, which is about the cost of scoring every
  candidate block by block; the training budget (distillation, retraining steps) is identical.
- (c) ``combined``: the Flexiffusion search on the dynamic student (``flexdiff.search.run.search``) at the schedule
  speed-up that makes the total ``teacher DDIM-50 MACs / (student schedule MACs)`` reach ``--total-speedup``; every
  validated schedule is reported with its total MACs reduction and FID against held-out digits.

    python benchmarks/compress_ablation.py --minutes 40 --out benchmarks/results/compress_ablation.json

Parts can be run one at a time (``--parts a``, ``--parts b,c``); each needs the base run, which is resumed. The
published figures (each in its own JSON): the ablations (a, b) on a 12-minute run (one torch thread), the combined part
(c) on the 40-minute acceptance run of ``flexdiff compress`` (its folder given as ``--base``):

    python benchmarks/compress_ablation.py --parts a,b --minutes 12 --base-alpha dynamic --alphas "constant:0.5 dynamic:0.75,0.25 dynamic:0.5,0" --run-dir runs/ablation12 --out benchmarks/results/compress_ablation.json
    python benchmarks/compress_ablation.py --parts c --minutes 40 --base-alpha constant:0.5 --base runs/compress_const40 --solver dpmpp-2m --trials 60 --run-dir runs/compress_const40 --out benchmarks/results/compress_combined.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from common import write_result

from flexdiff.models.student import Architecture, block_module
from flexdiff.nas.blocks import block_inputs
from flexdiff.nas.clock import Run, prepare
from flexdiff.nas.compress import compress
from flexdiff.nas.config import CompressConfig
from flexdiff.nas.phases import (
    assemble,
    phase_distill,
    phase_fid,
    phase_record,
    phase_retrain,
    phase_search,
    teacher_cost,
)
from flexdiff.nas.record import noised_rows
from flexdiff.nas.space import random_architecture
from flexdiff.nas.supernet import unit_costs

#: Files of a compress run that the other arms reuse (the phases before retraining).
SHARED = ("records.safetensors", "blocks", "scores.json", "search.json", "state.json", "fid.json")


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    t, s = results["teacher"], results["student"]
    return {
        "student_fid": s["fid"],
        "teacher_fid": t["fid"],
        "fid_ratio": round(s["fid"] / t["fid"], 4) if s["fid"] and t["fid"] else None,
        "macs_ratio": s["macs_ratio"],
        "params_ratio": s["params_ratio"],
        "blocks": [{k: b[k] for k in ("block", "choice", "loss")} for b in results["blocks"]],
        "retrain_steps": results["config"]["retrain_steps"],
        "final_loss": results["retrain"]["history"][-1] if results["retrain"]["history"] else None,
        "seconds": results["seconds"],
        "student_path": s["path"],
    }


def _arm(args: argparse.Namespace, name: str) -> Path:
    """A run folder for another arm, seeded with the shared phases of the base run."""
    folder = args.run_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    for item in SHARED:
        src, dst = args.base / item, folder / item
        if dst.exists():
            continue
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    return folder


def arm_folder(alpha: str) -> str:
    """``constant:0.5`` -> ``alpha-constant-0.5``; ``dynamic:0.75,0.25`` -> ``alpha-dynamic-0.75-0.25``."""
    return "alpha-" + alpha.replace(":", "-").replace(",", "-")


def part_a(args: argparse.Namespace, dynamic: dict[str, Any]) -> dict[str, Any]:
    cfg = dynamic["config"]
    arms = {}
    for alpha in args.alphas.split():
        config = CompressConfig(
            out=_arm(args, arm_folder(alpha)),
            minutes=args.minutes,
            seed=args.seed,
            alpha=alpha,
            fid_n=args.fid_n,
            macs_ratio=args.macs_ratio,
            distill_steps=cfg["distill_steps_per_block"],
            retrain_steps=cfg["retrain_steps"],
            device="cpu",
        )
        arms[alpha] = _summary(compress(config))
    return {"base_alpha": args.base_alpha, "base": _summary(dynamic), "arms": arms}


@torch.no_grad()
def _global_choice(run: Run, records: Any, supernets: dict[str, Any], samples: int, seed: int) -> tuple[Architecture, list[dict[str, Any]]]:
    """Rank ``samples`` random within-budget students by their output distillation loss (shared weights)."""
    unet, specs = run.teacher.denoiser, run.specs
    example = records.rows(slice(0, 1))
    costs = {s.name: unit_costs(supernets[s.name], block_module(unet, s), block_inputs(unet, s, example)) for s in specs}
    teacher_macs, teacher_params = teacher_cost(run.teacher)
    stem_macs = teacher_macs - sum(c.full_macs for c in costs.values())
    stem_params = teacher_params - sum(c.full_params for c in costs.values())
    c = run.config
    gen = torch.Generator().manual_seed(seed)
    x_t, t = noised_rows(run.teacher, run.images, records.n_train + records.n_val, c.seed)  # exactly the recorded rows
    x_t, t_val = x_t[records.val], t[records.val]  # the held-out rows, (n_val, C, H, W)
    eps_teacher = unet(x_t, t_val).sample
    ranked, tries = [], 0
    while len(ranked) < samples and tries < 200 * samples:
        tries += 1
        arch = random_architecture(specs, gen)
        macs = stem_macs + sum(costs[s.name].macs(arch[s.name], s) for s in specs)
        params = stem_params + sum(costs[s.name].params(arch[s.name], s) for s in specs)
        if macs > c.macs_ratio * teacher_macs or params > c.max_params_ratio * teacher_params:
            continue
        student = assemble(unet, specs, supernets, arch)
        loss = float(torch.mean((student(x_t, t_val).sample - eps_teacher) ** 2))
        ranked.append({"architecture": arch.to_json(), "macs": macs, "params": params, "output_loss": round(loss, 6)})
    best = min(ranked, key=lambda r: r["output_loss"])
    return Architecture.from_json(best["architecture"], specs), sorted(ranked, key=lambda r: r["output_loss"])


def part_b(args: argparse.Namespace, dynamic: dict[str, Any]) -> dict[str, Any]:
    cfg = dynamic["config"]
    config = CompressConfig(
        out=_arm(args, "global"),
        minutes=args.minutes,
        seed=args.seed,
        alpha=args.base_alpha,
        fid_n=args.fid_n,
        macs_ratio=args.macs_ratio,
        distill_steps=cfg["distill_steps_per_block"],
        retrain_steps=cfg["retrain_steps"],
        device="cpu",
    )
    run = prepare(config)
    records, record_key = phase_record(run)
    supernets, distill_key, _ = phase_distill(run, records, record_key)
    _, local_summary, _ = phase_search(run, records, supernets, distill_key)  # the local choice, for the table
    started = time.monotonic()
    arch, ranked = _global_choice(run, records, supernets, args.global_samples, args.seed)
    ranking_seconds = time.monotonic() - started
    student_dir, history, retrain_key, _ = phase_retrain(run, records, supernets, arch, search_key=f"global-{args.global_samples}-{args.seed}")
    from flexdiff.models import load_model

    student = load_model(student_dir, "cpu")
    macs, params = teacher_cost(student)
    fids = phase_fid(run, student, retrain_key)
    teacher_macs, teacher_params = teacher_cost(run.teacher)
    return {
        "local": _summary(dynamic),
        "global": {
            "student_fid": fids["student"],
            "teacher_fid": fids["teacher"],
            "macs_ratio": round(macs / teacher_macs, 4),
            "params_ratio": round(params / teacher_params, 4),
            "architecture": arch.to_json(),
            "ranking_seconds": round(ranking_seconds, 1),
            "samples": len(ranked),
            "top5": ranked[:5],
            "final_loss": history[-1] if history else None,
        },
        "local_search_scoring_seconds": json.loads((run.out / "scores.json").read_text()).get("seconds"),
        "local_summed_block_loss": local_summary["summed_loss"],
    }


def part_c(args: argparse.Namespace, dynamic: dict[str, Any]) -> dict[str, Any]:
    from flexdiff.search.config import SearchConfig
    from flexdiff.search.run import search

    student_dir = Path(dynamic["student"]["path"])
    ratio = dynamic["student"]["macs_ratio"]
    speedup = args.total_speedup * ratio  # schedule speed-up on the student that gives the total
    config = SearchConfig(
        objective="rfid",
        all_baselines=True,
        out=args.run_dir / ("combined" + (f"-{args.solver}" if args.solver else "")),
        model=str(student_dir),
        solver=args.solver,
        speedup=speedup,
        n=args.search_n,
        trials=args.trials,
        seed=args.seed,
        validate_n=args.fid_n,
        reference="builtin:digits-heldout",
        device="cpu",
    )
    config.out.mkdir(parents=True, exist_ok=True)
    results = search(config)
    teacher_macs = dynamic["teacher"]["macs"] * 50  # the teacher's DDIM-50: 50 full steps
    teacher_fid = dynamic["teacher"]["fid"]
    rows = []
    for row in results["validated"]:
        rows.append(
            {
                "name": row["name"],
                "kind": row["kind"],
                "family": row["family"],
                "sampler": row["sampler"],
                "student_macs": row["macs"],
                "total_speedup": round(teacher_macs / max(row["macs"], 1), 3),
                "fid": row["fid"],
                "fid_ratio": round(row["fid"] / teacher_fid, 4) if row["fid"] and teacher_fid else None,
                "rfid_vs_student": row["rfid"],
            }
        )
    # picked as the search picks (lowest validated rFID against the student's own DDIM-50), never by FID
    meeting = [r for r in rows if r["total_speedup"] >= args.total_speedup]
    searched = [r for r in meeting if r["kind"] == "searched"]
    best = min(searched, key=lambda r: r["rfid_vs_student"]) if searched else None
    best_baseline = min((r for r in meeting if r["kind"] == "baseline"), key=lambda r: r["rfid_vs_student"], default=None)
    return {
        "schedule_speedup_on_student": round(speedup, 3),
        "student_macs_ratio": ratio,
        "teacher_fid": teacher_fid,
        "rows": rows,
        "best": best,
        "best_baseline": best_baseline,
        "target": {"total_speedup": args.total_speedup, "fid_ratio_max": 1.1},
        "met": bool(best and best["fid_ratio"] is not None and best["fid_ratio"] <= 1.1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="a,b,c")
    parser.add_argument("--minutes", type=float, default=40.0, help="budget of the dynamic compress run (the other arms reuse its step counts)")
    parser.add_argument("--macs-ratio", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fid-n", type=int, default=1000)
    parser.add_argument("--base-alpha", default=CompressConfig.alpha, help="alpha schedule of the base compress run (and of the (b) arms)")
    parser.add_argument("--alphas", default="constant:0.5", help="(a) the other alpha schedules, space-separated, e.g. 'constant:0.5 dynamic:0.75,0.25'")
    parser.add_argument("--global-samples", type=int, default=100, help="(b) whole students ranked")
    parser.add_argument("--total-speedup", type=float, default=5.0, help="(c) target MACs reduction vs the teacher's DDIM-50")
    parser.add_argument("--trials", type=int, default=100, help="(c) searched schedules")
    parser.add_argument("--solver", default=None, help="(c) sampler of the searched schedules on the student's DDIM grid, e.g. dpmpp-2m (default: DDIM)")
    parser.add_argument("--search-n", type=int, default=256, help="(c) images per rFID in the search")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/compress_ablation"))
    parser.add_argument(
        "--base", type=Path, default=None, help="folder of the base compress run (default: RUN_DIR/dynamic), resumed with --minutes/--base-alpha/--seed"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compress_ablation.json"))
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    args.base = args.base or args.run_dir / "dynamic"
    dynamic = compress(
        CompressConfig(out=args.base, minutes=args.minutes, seed=args.seed, alpha=args.base_alpha, fid_n=args.fid_n, macs_ratio=args.macs_ratio, device="cpu")
    )
    payload: dict[str, Any] = {
        "base_run": str(args.base),
        "base_alpha": args.base_alpha,
        "minutes": args.minutes,
        "macs_ratio": args.macs_ratio,
        "seed": args.seed,
        "fid_n": args.fid_n,
    }
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for key in ("a_alpha", "b_search", "c_combined"):  # parts run earlier are kept
        if key in previous:
            payload[key] = previous[key]
    if "a" in parts:
        payload["a_alpha"] = part_a(args, dynamic)
    if "b" in parts:
        payload["b_search"] = part_b(args, dynamic)
    if "c" in parts:
        payload["c_combined"] = part_c(args, dynamic)
    write_result(args.out, payload)


if __name__ == "__main__":
    main()
