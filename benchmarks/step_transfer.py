"""One search for every step count, measured: a schedule searched at T0 steps, re-expanded at other step counts
(``flexdiff.schedule.for_steps``: segments of the searched length in steps, round(S T / T0) of them, each with the
searched plan's active share over its part of the trajectory: the MACs share is kept), against a
search run at each T and against the best baseline of that search (DDIM-k, DeepCache), on a built-in teacher.

At every T of ``--steps``: a full search at T (the demo's settings: 256 images, 120 trials, budget 1/3, the default
rungs and reuse, ``--solver``; its own final validation skipped); its pick within the budget by search rFID among the
searched schedules, and among the baselines; the T0 search's pick moved to T. The three are re-scored on
``--validate-n`` images of the T-step teacher that no search saw (the validation's fresh rows of the seed's stream):
rFID against the teacher's images from the same noise, FID against the held-out digits, the MACs speed-up.

``--peers`` (a transformer teacher): the caching peers (:mod:`flexdiff.search.peers`: diffusers' FirstBlockCache,
TaylorSeer, PyramidAttentionBroadcast, MagCache, cache-dit's DBCache) at every setting of their sweep, run from their own
code at each T on the first ``--peer-n`` noises of the seed's stream (a study of their own, beside the search's: the
searches are reused as they are); the peer setting within the budget with the lowest paired distance there is the
``best_peer``, re-scored on the same fresh images as the rest.

    python benchmarks/step_transfer.py --out benchmarks/results/step_transfer.json        # the UNet, T0 = 50
    python benchmarks/step_transfer.py --model builtin:digits-dit --sampler flow-euler --solver "" --searched-at 20 \
        --peers all --out benchmarks/results/step_transfer_dit.json                        # the DiT, T0 = 20
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import write_result

from flexdiff.schedule import for_steps
from flexdiff.search.artefacts import schedule_of_row
from flexdiff.search.config import SearchConfig, default_segments
from flexdiff.search.context import build_context
from flexdiff.search.peers import PEERS, peer_runs
from flexdiff.search.run import search, trial_rows
from flexdiff.search.validation import validate


def pick(rows: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    """The row with the lowest search rFID within ``budget`` MACs (the teacher's plan aside)."""
    within = [r for r in rows if r["macs"] <= budget and r.get("family") != "teacher" and r.get("steps")]
    return min(within, key=lambda r: (r["rfid"], r["macs"])) if within else None


def run_search(base: SearchConfig, steps: int, root: Path) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]], float]:
    """The search at ``steps`` (reused when its run folder holds one: rerunning resumes the same study); its context
    at the validation size, its baseline and searched rows, and its wall seconds."""
    config = replace(base, steps=steps, segments=default_segments(steps), out=root / f"T{steps}")
    start = time.perf_counter()
    search(config)
    wall = time.perf_counter() - start
    ctx = build_context(replace(config, progress=False))
    baselines, searched = trial_rows(ctx)
    return ctx, baselines, searched, wall


def peer_rows(base: SearchConfig, steps: int, root: Path, peers: tuple[str, ...], n: int) -> list[dict[str, Any]]:
    """Every peer setting at ``steps``, scored on the seed's first ``n`` noises: a baselines-only study (no trials, no
    rungs) in its own run folder, so the search at ``steps`` is reused untouched; rerunning resumes it."""
    config = replace(base, steps=steps, segments=default_segments(steps), out=root / f"T{steps}-peers", n=n, trials=0, peers=peers, fidelity=())
    search(config)
    baselines, _ = trial_rows(build_context(replace(config, progress=False), reference=False))
    return [r for r in baselines if r["kind"] == "peer"]


def best_peer(rows: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    """The peer setting with the lowest paired distance within ``budget`` MACs (a mean over images: comparable at any
    ``--peer-n``, where rFID on few images is biased)."""
    within = [r for r in rows if r["macs"] <= budget]
    return min(within, key=lambda r: (r["paired"], r["macs"])) if within else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--solver", default="ddim-2m", type=lambda s: s or None, help="the candidates' solver ('' for the sampler's own)")
    parser.add_argument("--searched-at", type=int, default=50, help="T0: the step count the transferred schedule is searched at")
    parser.add_argument("--steps", default="20,30,50,100", help="the step counts it is applied at")
    parser.add_argument("--validate-n", type=int, default=1000)
    parser.add_argument("--peers", default="", help="caching peers scored at each T: 'all' or a comma-separated list (a transformer teacher)")
    parser.add_argument("--peer-n", type=int, default=64, help="noises each peer setting is scored on to choose the best within the budget")
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/flexdiff-step-transfer"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/step_transfer.json"))
    args = parser.parse_args()

    base = SearchConfig(
        objective="rfid",
        out=args.run_dir,
        model=args.model,
        sampler=args.sampler,
        solver=args.solver,
        n=256,
        trials=120,
        speedup=3.0,
        baseline_branches=(0,),
        fidelity=(16, 64),
        reuse=True,
        validate_n=2,
        validate_top=1,
        features="digits",
        seed=0,
    )
    steps = sorted({int(s) for s in args.steps.split(",")} | {args.searched_at})
    searches = {T: run_search(base, T, args.run_dir) for T in steps}
    peers = tuple(PEERS.names()) if args.peers == "all" else tuple(p for p in args.peers.split(",") if p)
    peer_table = {T: peer_rows(base, T, args.run_dir, peers, args.peer_n) for T in steps} if peers else {}
    ctx0, _, searched0, _ = searches[args.searched_at]
    origin = pick(searched0, ctx0.max_macs)
    if origin is None:
        raise SystemExit(f"the search at T = {args.searched_at} has no searched schedule within its budget")
    plan0 = schedule_of_row(origin, ctx0.timesteps, origin.get("sampler", base.sampler))
    table = []
    for T in steps:
        ctx, baselines, searched, wall = searches[T]
        ctx = replace(ctx, config=replace(ctx.config, validate_n=args.validate_n, progress=True), peers=peer_runs(T, peers) if peers else [])
        moved = for_steps(plan0, ctx.timesteps)
        macs = ctx.costs.schedule(moved)
        rows = {
            "transferred": {
                "kind": "transferred",
                "name": f"{plan0.name} @T{T}",
                "family": "genome",
                "genome": moved.meta["genome"],
                "steps": [str(s) for s in moved.steps],
                "sampler": moved.sampler,
                "macs": macs,
                "macs_speedup": round(ctx.costs.full * T / macs, 4),
                "rfid": None,
            },
            "searched_here": pick(searched, ctx.max_macs),
            "best_baseline": pick(baselines, ctx.max_macs),
            "best_peer": best_peer(peer_table[T], ctx.max_macs) if peers else None,
        }
        rows = {k: v for k, v in rows.items() if v is not None}
        teacher, validated = validate(ctx, [dict(row, name=key) for key, row in rows.items()])
        scored = {row["name"]: row for row in validated}
        entry = {
            "T": T,
            "search_wall_seconds": round(wall, 1),
            "teacher_fid": teacher["fid"],
            "noise_images": teacher["noise_images"],
            **{
                key: {
                    "name": rows[key]["name"],
                    "genome": rows[key].get("genome"),
                    **({"peer_n_paired": rows[key]["paired"]} if key == "best_peer" else {}),
                    "macs_speedup": scored[key]["macs_speedup"],
                    "rfid": scored[key]["rfid"],
                    "fid": scored[key]["fid"],
                    "psnr": scored[key]["psnr"],
                    "ssim": scored[key]["ssim"],
                }
                for key in rows
            },
        }
        for rival in ("best_baseline", "best_peer"):
            entry[f"transfer_beats_{rival.removeprefix('best_')}_rfid"] = rival in rows and entry["transferred"]["rfid"] < entry[rival]["rfid"]
        table.append(entry)
        print(f"T = {T}: " + "; ".join(f"{k} {entry[k]['macs_speedup']:.2f}x rFID {entry[k]['rfid']:.3f} FID {entry[k]['fid']:.2f}" for k in rows))
    write_result(
        args.out,
        {
            "model": args.model,
            "sampler": args.sampler,
            "solver": args.solver,
            "searched_at": args.searched_at,
            "origin": origin["name"],
            "origin_genome": origin.get("genome"),
            "search_settings": {
                "n": base.n,
                "trials": base.trials,
                "speedup": base.speedup,
                "rungs": list(base.fidelity),
                "reuse": base.reuse,
                "baseline_branches": list(base.baseline_branches),
            },
            "validate_n": args.validate_n,
            **({"peers": list(peers), "peer_n": args.peer_n} if peers else {}),
            "steps": table,
        },
    )


if __name__ == "__main__":
    main()
