"""Quality of the built-in teacher: FID(teacher samples, held-out) against FID(train images, held-out) at equal n.

python benchmarks/teacher_quality.py --n 1000 --out benchmarks/results/teacher_quality.json
python benchmarks/teacher_quality.py --model builtin:digits-dit --sampler flow-euler --n 1000 --out benchmarks/results/teacher_quality_dit.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import write_result

import flexdiff
from flexdiff.data import digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_quality.json"))
    args = parser.parse_args()

    model = flexdiff.load_model(args.model, device="cpu")
    start = time.perf_counter()
    images = flexdiff.sample(model, args.n, sampler=args.sampler, steps=args.steps, seed=args.seed, batch_size=250, progress=True)
    wall = time.perf_counter() - start
    heldout = digits("heldout")[0]
    fid_teacher = flexdiff.fid(images, heldout)
    fid_real = flexdiff.fid(digits("train")[0][: args.n], heldout)
    write_result(
        args.out,
        {
            "model": args.model,
            "sampler": args.sampler,
            "steps": args.steps,
            "n": args.n,
            "seed": args.seed,
            "features": "digits",
            "n_reference": len(heldout),
            "sampling_wall_seconds": round(wall, 2),
            "fid_teacher_vs_heldout": round(fid_teacher, 3),
            "fid_train_vs_heldout": round(fid_real, 3),
            "ratio": round(fid_teacher / fid_real, 3),
            "acceptance_ratio_max": 1.3,
        },
    )
    print(f"FID teacher {fid_teacher:.2f}  real-vs-real {fid_real:.2f}  ratio {fid_teacher / fid_real:.3f}")


if __name__ == "__main__":
    main()
