"""Hook overhead, measured per network call: the hooked full step against the plain call, interleaved.

The whole-loop timing of ``step_types.py`` compares two 10-20 s loops timed minutes apart, so on a shared VM its
"hook overhead" moves by several percent between runs. Here each round times ``--calls`` plain calls, then the same
calls through an all-full schedule's hooks, on the same batch; the median over rounds (the first dropped as warm-up)
cancels drift (the hooked calls always run second in a round, so any warm-up favours them; on a quiet machine
the median is the overhead, on a shared VM its spread says how much of it is noise).

    python benchmarks/hook_overhead.py --rounds 12 --out benchmarks/results/hook_overhead.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import write_result

import flexdiff
from flexdiff.schedule import full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:digits")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hook_overhead.json"))
    args = parser.parse_args()

    model = flexdiff.load_model(args.model, "cpu")
    ts = flexdiff.teacher_timesteps(model, "ddim", 50)[: args.calls]
    x = torch.randn((args.batch, *model.sample_shape), generator=torch.Generator().manual_seed(0))
    plain, hooked = [], []
    for r in range(args.rounds):
        start = time.perf_counter()
        for t in ts:
            model.eps(x, t)
        plain.append(time.perf_counter() - start)
        with flexdiff.apply_schedule(model, full(ts)) as run:
            denoise = run.start()
            start = time.perf_counter()
            for i, t in enumerate(ts):
                denoise(x, t, i)
            hooked.append(time.perf_counter() - start)
        print(f"round {r}: plain {plain[-1]:.3f} s, hooked {hooked[-1]:.3f} s")
    ratios = [h / p for p, h in zip(plain[1:], hooked[1:])]
    overhead = statistics.median(ratios) - 1
    print(f"hook overhead per call (median of {len(ratios)} paired rounds): {overhead:+.2%}")
    write_result(
        args.out,
        {
            "model": args.model,
            "batch": args.batch,
            "calls_per_round": args.calls,
            "rounds": args.rounds,
            "plain_seconds": [round(v, 4) for v in plain],
            "hooked_seconds": [round(v, 4) for v in hooked],
            "hook_overhead_median": round(overhead, 4),
            "hook_overhead_min": round(min(ratios) - 1, 4),
            "hook_overhead_max": round(max(ratios) - 1, 4),
        },
    )


if __name__ == "__main__":
    main()
