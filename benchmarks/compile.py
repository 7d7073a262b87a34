"""``torch.compile`` under an enabled schedule, at Stable Diffusion v1.5's real scale: eager vs compiled wall-clock of
a full step and of partial steps at three branches, compile time, graph counts and graph breaks.

The SD v1.5 UNet2DConditionModel is built from its published config (``sd15_cost.SD15_UNET_CONFIG``) with random
weights (cost does not depend on them). One 4x64x64 latent with 77x768 text states, batch 1. The schedule is
``full, partial(b0), partial(b1), partial(b2)`` (branch 0 the shallowest, b1 the middle one, b2 the deepest), run
through flexdiff's executor exactly as ``flexdiff sample`` runs it: the executor sets each step's hook state, the
model's ``eps`` calls the (compiled) UNet. Compiled = ``torch.compile(unet)`` (inductor unless ``--backend``) before
the schedule is applied, the order ``docs/pipelines.md`` documents. Round 1 compiles (its time per step is the
compile time of that step type's graph); the rounds after it are timed, best of rounds (min, as timeit reports).
Compiled output is compared with eager output (max abs difference of eps; inductor reorders float ops, so not 0).

    cd benchmarks && python compile.py --out results/compile.json          # CPU: about 25 min on the 2-core VM
    cd benchmarks && python compile.py --smoke --out /tmp/compile.json     # 1/10 of the channels: seconds
    python benchmarks/compile.py --device cuda --out benchmarks/results/compile_gpu.json   # where a GPU is lent
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Any

import torch
from common import write_result
from sd15_cost import SD15_UNET_CONFIG, build_model, conditioning

from flexdiff.running.executor import apply_schedule, step_types
from flexdiff.schedule import FULL, PARTIAL, Schedule, Step


def run_round(model: Any, run: Any, x: torch.Tensor, t: int, device: str) -> tuple[list[float], list[torch.Tensor]]:
    """Each step of the schedule once: (seconds per step, eps per step)."""
    seconds, outputs = [], []
    for index in range(run.schedule.T):
        gc.collect()
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run.set_step(index)
        eps = model.eps(x, t)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        outputs.append(eps.detach().float().cpu())
    return seconds, outputs


def measure(model: Any, plan: Schedule, x: torch.Tensor, t: int, rounds: int, device: str) -> dict[str, Any]:
    per_round, outputs = [], None
    with apply_schedule(model, plan) as run:
        run.state.cache.clear()
        for _ in range(rounds):
            seconds, outputs = run_round(model, run, x, t, device)
            per_round.append(seconds)
    return {
        "first_round_seconds": [round(s, 4) for s in per_round[0]],
        "best_seconds": [round(min(r[i] for r in per_round[1:]), 4) for i in range(plan.T)],
        "outputs": outputs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/compile.json"))
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the 4 steps; the first compiles / warms up")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="1/10 of the channels at 16x16 latents (numbers meaningless)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch._dynamo
    from torch._dynamo.utils import counters

    started = time.perf_counter()
    model = build_model(args.seed, smoke=args.smoke, device=args.device)
    model.conditioning = conditioning(model, guided=False, seed=args.seed)
    layout = model.layout
    branches = [0, layout.num_branches // 2, layout.num_branches - 1]
    plan = Schedule((Step(FULL), *(Step(PARTIAL, b) for b in branches)), (500, 400, 300, 200), "ddim", "full+3-partials")
    x = torch.randn((1, *model.sample_shape), generator=torch.Generator().manual_seed(args.seed)).to(args.device)
    t = 500
    eager = measure(model, plan, x, t, args.rounds, args.device)
    torch._dynamo.reset()
    counters.clear()
    unet = model.denoiser
    model.denoiser = torch.compile(unet, backend=args.backend)
    compiled = measure(model, plan, x, t, args.rounds, args.device)
    graphs, breaks = int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))
    labels = ["full", *(f"partial b{b} ({layout.branches[b].label})" for b in branches)]
    steps = []
    for i, label in enumerate(labels):
        e, c = eager["best_seconds"][i], compiled["best_seconds"][i]
        steps.append(
            {
                "step": label,
                "eager_seconds": e,
                "compiled_seconds": c,
                "compile_speedup": round(e / c, 3),
                "compile_seconds": round(compiled["first_round_seconds"][i] - c, 2),
                "max_abs_diff_vs_eager": float((compiled["outputs"][i] - eager["outputs"][i]).abs().max()),
                "eager_vs_full": round(e / eager["best_seconds"][0], 3),
                "compiled_vs_full": round(c / compiled["best_seconds"][0], 3),
            }
        )
    payload = {
        "model": "Stable Diffusion v1.5 UNet2DConditionModel (published config, random weights)" + (" -- SMOKE: 1/10 channels, 16x16" if args.smoke else ""),
        "unet_config": SD15_UNET_CONFIG,
        "latent_shape": list(model.sample_shape),
        "batch": 1,
        "backend": args.backend,
        "device": args.device,
        "schedule": plan.to_dict(),
        "step_types": len(step_types(plan)),
        "unique_graphs": graphs,
        "graph_breaks": breaks,
        "one_graph_per_step_type": graphs == len(step_types(plan)),
        "rounds": args.rounds,
        "steps": steps,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    for s in steps:
        print(
            f"{s['step']:>28}: eager {s['eager_seconds']:.3f} s, compiled {s['compiled_seconds']:.3f} s ({s['compile_speedup']:.2f}x), compile {s['compile_seconds']:.0f} s, diff {s['max_abs_diff_vs_eager']:.1e}"
        )
    print(f"graphs {graphs} for {len(step_types(plan))} step types, graph breaks {breaks}")
    write_result(args.out, payload)


if __name__ == "__main__":
    main()
