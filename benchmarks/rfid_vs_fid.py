"""Does rFID rank schedules like FID against real data? Kendall tau over random genomes, and the time it saves.

rFID: --n images (the search's sample size) against the teacher's images from the same noise.
FID: --fid-n images against the held-out real digits. Both with the `digits` features.

    python benchmarks/rfid_vs_fid.py --schedules 30 --n 256 --fid-n 1000 --out benchmarks/results/rfid_vs_fid.json
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from common import write_result
from scipy.stats import kendalltau

import flexdiff
from flexdiff.backbones import unet_layout
from flexdiff.data import digits
from flexdiff.measuring.features import get_feature_network
from flexdiff.measuring.metrics import frechet_distance
from flexdiff.noise import initial_noise
from flexdiff.running.cost import measure_macs
from flexdiff.running.own_loop import generate, generate_scheduled, teacher_timesteps
from flexdiff.search.config import SearchConfig
from flexdiff.search.space import GenomeSpace
from flexdiff.utils.progress import progress_bar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--schedules", type=int, default=30)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--fid-n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rfid_vs_fid.json"))
    args = parser.parse_args()

    model = flexdiff.load_model(args.model, device="cpu")
    ts = teacher_timesteps(model, "ddim", args.steps)
    net = get_feature_network("digits")
    costs = measure_macs(model)
    space = GenomeSpace(len(ts), SearchConfig.segments, unet_layout(model.denoiser).num_branches)
    rng = random.Random(args.seed)
    genomes = []
    while len(genomes) < args.schedules:  # distinct random genomes
        g = space.random_genome(rng)
        if all(str(g) != str(h) for h in genomes):
            genomes.append(g)

    small, large = initial_noise(args.n, model.sample_shape, args.seed), initial_noise(args.fid_n, model.sample_shape, args.seed + 1)
    start = time.perf_counter()
    teacher_small = net(generate(model, small, ts, "ddim").clamp(-1, 1))
    teacher_seconds = time.perf_counter() - start
    real = net(digits("heldout")[0])
    rows = []
    with progress_bar("schedules", len(genomes)) as advance:
        for g in genomes:
            plan = g.expand(ts)
            t0 = time.perf_counter()
            r = frechet_distance(teacher_small, net(generate_scheduled(model, plan, small)))
            t1 = time.perf_counter()
            f = frechet_distance(real, net(generate_scheduled(model, plan, large)))
            t2 = time.perf_counter()
            rows.append(
                {
                    "genome": str(g),
                    "macs_speedup": round(costs.speedup(plan), 3),
                    "rfid": round(r, 4),
                    "fid": round(f, 4),
                    "rfid_seconds": round(t1 - t0, 2),
                    "fid_seconds": round(t2 - t1, 2),
                }
            )
            advance()
    tau, p_value = kendalltau([r["rfid"] for r in rows], [r["fid"] for r in rows])
    rfid_time = sum(r["rfid_seconds"] for r in rows)
    fid_time = sum(r["fid_seconds"] for r in rows)
    write_result(
        args.out,
        {
            "model": args.model,
            "teacher": f"ddim-{args.steps}",
            "n_rfid": args.n,
            "n_fid": args.fid_n,
            "n_real_reference": len(real),
            "seed": args.seed,
            "kendall_tau": round(float(tau), 4),
            "p_value": float(p_value),
            "acceptance_tau_min": 0.7,
            "rfid_eval_seconds_total": round(rfid_time, 1),
            "fid_eval_seconds_total": round(fid_time, 1),
            "teacher_reference_seconds_once": round(teacher_seconds, 1),
            "time_saved_fraction": round(1 - (rfid_time + teacher_seconds) / fid_time, 4),
            "schedules": rows,
        },
    )
    print(f"Kendall tau(rFID@{args.n}, FID@{args.fid_n}) = {tau:.3f}; evaluation time {rfid_time + teacher_seconds:.0f} s vs {fid_time:.0f} s")


if __name__ == "__main__":
    main()
