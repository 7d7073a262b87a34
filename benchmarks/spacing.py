"""Does moving the segment boundaries help? DDIM-k with its k full steps at segment starts of spacing power p.

``Genome.segment_lengths(T, k, p)``: segment s starts at floor(T (1 - (1 - s/k)^p)); p = 1 is DDIM-k itself (equal
segments), p > 1 packs the steps towards t = 0, p < 1 towards the noisy end. Each schedule is sampled from the same
1000 noises and scored by FID against the held-out digits (and rFID against the teacher's DDIM-50 images). Decides
the default of ``flexdiff search --spacings``.

    python benchmarks/spacing.py --ks 10,16 --powers 0.65,0.8,1,1.25,1.5,2 --n 1000 --out benchmarks/results/spacing.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import write_result

from flexdiff.data import load_images
from flexdiff.measuring.features import get_feature_network
from flexdiff.measuring.metrics import frechet_distance
from flexdiff.models import load_model
from flexdiff.running.own_loop import generate, generate_scheduled, teacher_timesteps
from flexdiff.schedule import Genome, Segment
from flexdiff.utils.progress import progress_bar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--ks", default="10,16")
    parser.add_argument("--powers", default="0.65,0.8,1,1.25,1.5,2")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/spacing.json"))
    args = parser.parse_args()
    ks, powers = [int(k) for k in args.ks.split(",")], [float(p) for p in args.powers.split(",")]

    model = load_model(args.model, "cpu")
    timesteps = teacher_timesteps(model, "ddim", 50)
    net = get_feature_network("digits", "cpu")
    real = net(load_images("builtin:digits-heldout"))
    noise = model.initial_noise(args.n, args.seed)
    teacher = net(generate(model, noise, timesteps, "ddim").clamp(-1, 1))
    rows = []
    with progress_bar("spaced DDIM-k", len(ks) * len(powers)) as advance:
        for k in ks:
            for p in powers:
                schedule = Genome((Segment(0, 1),) * k, p).expand(timesteps)
                start = time.perf_counter()
                feats = net(generate_scheduled(model, schedule, noise))
                rows.append(
                    {
                        "k": k,
                        "spacing": p,
                        "active": schedule.active_indices,
                        "fid": round(frechet_distance(real, feats), 4),
                        "rfid": round(frechet_distance(teacher, feats), 4),
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                )
                advance()
    best = {k: min((r for r in rows if r["k"] == k), key=lambda r: r["fid"])["spacing"] for k in ks}
    write_result(
        args.out,
        {
            "model": args.model,
            "n": args.n,
            "seed": args.seed,
            "teacher_fid": round(frechet_distance(real, teacher), 4),
            "rows": rows,
            "best_spacing_by_fid": best,
        },
    )
    for r in rows:
        print(f"DDIM-{r['k']} p={r['spacing']:g}: FID {r['fid']:.2f} rFID {r['rfid']:.2f}")


if __name__ == "__main__":
    main()
