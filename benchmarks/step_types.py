"""Step types on the built-in model: measured wall-clock speed-up vs MACs speed-up, and hook overhead.

For DeepCache uniform N = 2, 3, 5 at branch 0 and DDIM-10/20 (as schedules over the DDIM-50 teacher), 256 images:
the whole sampling loop is timed (median of --repeats, schedules interleaved so drift hits all alike) and compared
with the plain loop (no hooks). Also the quality of each against the teacher's images from the same noise (rFID)
and against held-out digits (FID), for context.

    python benchmarks/step_types.py --n 256 --repeats 5 --out benchmarks/results/step_types.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import write_result

import flexdiff
from flexdiff.data import digits
from flexdiff.measuring.features import get_feature_network
from flexdiff.measuring.metrics import frechet_distance
from flexdiff.running.cost import measure_latency, measure_macs
from flexdiff.running.own_loop import teacher_timesteps
from flexdiff.schedule import ddim_k, deepcache_uniform, full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/step_types.json"))
    args = parser.parse_args()

    model = flexdiff.load_model(args.model, device="cpu")
    ts = teacher_timesteps(model, "ddim", args.steps)
    costs = measure_macs(model)
    latency = measure_latency(model, batch_size=args.n)
    schedules = [full(ts)] + [deepcache_uniform(ts, n, 0) for n in (2, 3, 5)] + [ddim_k(ts, 20), ddim_k(ts, 10)]

    def run(plan):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        images = flexdiff.sample(model, args.n, steps=args.steps, seed=args.seed, schedule=plan)
        return time.perf_counter() - start, images

    walls: dict[str, list[float]] = {"plain": []}
    images = {}
    run(None)  # warm-up
    for r in range(args.repeats):
        for plan in [None, *schedules]:
            key = "plain" if plan is None else plan.name
            seconds, images[key] = run(plan)
            walls.setdefault(key, []).append(seconds)
            print(f"repeat {r}: {key:<18} {seconds:6.2f} s")

    net = get_feature_network("digits")
    feats_teacher = net(images["plain"])
    feats_heldout = net(digits("heldout")[0])
    plain = statistics.median(walls["plain"])
    rows = []
    for plan in schedules:
        wall = statistics.median(walls[plan.name])
        macs_speedup = costs.speedup(plan)
        wall_speedup = statistics.median(p / w for p, w in zip(walls["plain"], walls[plan.name]))  # paired per repeat
        feats = net(images[plan.name])
        rows.append(
            {
                "schedule": plan.name,
                "counts": plan.counts(),
                "macs_per_sample": costs.schedule(plan),
                "macs_speedup": round(macs_speedup, 3),
                "wall_seconds": round(wall, 3),
                "wall_seconds_all": [round(w, 3) for w in walls[plan.name]],
                "wall_speedup": round(wall_speedup, 3),
                "wall_vs_macs_gap": round(abs(wall_speedup / macs_speedup - 1), 4),
                "within_15pct": abs(wall_speedup / macs_speedup - 1) <= 0.15,
                "rfid_vs_teacher": round(frechet_distance(feats_teacher, feats), 3),
                "fid_vs_heldout": round(frechet_distance(feats_heldout, feats), 3),
            }
        )
    # paired per repeat (plain and all-full run back to back), so slow drift of the machine cancels
    overhead = statistics.median(f / p for f, p in zip(walls[schedules[0].name], walls["plain"])) - 1
    write_result(
        args.out,
        {
            "model": args.model,
            "n": args.n,
            "teacher": f"ddim-{args.steps}",
            "seed": args.seed,
            "repeats": args.repeats,
            "full_step_macs_per_sample": costs.full,
            "partial_step_macs_per_sample": list(costs.partial),
            "step_latency": latency.to_dict(),
            "plain_loop_wall_seconds": round(plain, 3),
            "plain_loop_wall_seconds_all": [round(w, 3) for w in walls["plain"]],
            "hook_overhead_all_full": round(overhead, 4),
            "hook_overhead_under_3pct": overhead < 0.03,
            "fid_teacher_vs_heldout": round(frechet_distance(feats_heldout, feats_teacher), 3),
            "schedules": rows,
        },
    )
    print(f"{'schedule':<18}{'MACs x':>8}{'wall x':>8}{'gap':>7}{'rFID':>8}{'FID':>8}")
    for row in rows:
        print(
            f"{row['schedule']:<18}{row['macs_speedup']:>8.2f}{row['wall_speedup']:>8.2f}{row['wall_vs_macs_gap']:>7.1%}{row['rfid_vs_teacher']:>8.2f}{row['fid_vs_heldout']:>8.2f}"
        )
    print(f"hook overhead on an all-full schedule: {overhead:+.2%}")


if __name__ == "__main__":
    main()
