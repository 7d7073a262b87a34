"""Stable Diffusion v1.5 at its real scale: MACs and CPU wall-clock of a full step and of a partial step at every branch.

The SD v1.5 UNet2DConditionModel is built from its published config (written out below) with random weights — no
download; cost does not depend on the weights, so this says nothing about quality. Input: one 4x64x64 latent (512x512
images) with 77x768 text encoder states; also batch 2 = one image under classifier-free guidance (uncond + cond in
one UNet call). MACs are counted with flexdiff's cost model (FlopCounterMode + the CPU fused-attention formula) per
op family, so the difference to the published 338.8 GMACs can be located. Wall-clock: in each round one full step
(which also fills the cache of every branch: deep sets are nested) then a partial step at each branch, through the
same hooks and executor state as `flexdiff sample`; the first round counts MACs and warms up. Partial / full wall
time is the best-of-rounds ratio (min / min, as timeit reports: robust to other jobs taking the CPU in bursts; the
paired per-round median is recorded beside it) and is compared with the MACs ratio. Finally: the MACs and predicted
wall-clock speed-ups the schedule space reaches over a DDIM-50 teacher (DeepCache N = 2..10 at every branch, DDIM-k).

    cd benchmarks && python sd15_cost.py --repeats 2 --out results/sd15_cost.json   # ~8 min on an idle 2-core CPU
    cd benchmarks && python sd15_cost.py --macs-only                                 # MACs only, meta device, seconds
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from common import write_result
from torch.utils.flop_counter import FlopCounterMode

from flexdiff.models import Conditioning, DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.running.cost import (  # the cost model's FLOP formulas (CPU fused attention)
    _CUSTOM,
    StepCosts,
)
from flexdiff.running.executor import apply_schedule
from flexdiff.samplers import sampler_info, uniform_timesteps
from flexdiff.schedule import FULL, Schedule, Step, ddim_k, deepcache_uniform

#: runwayml/stable-diffusion-v1-5, unet/config.json (diffusers format), as published.
SD15_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
#: scheduler/scheduler_config.json of the same pipeline (its noise schedule: scaled_linear betas).
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
}
PUBLISHED_GMACS = 338.8  # per UNet call at 64x64 latents, batch 1 (as cited by DeepCache / Flexiffusion)
# The published figure comes from module-based counters (Conv2d and Linear layers); they do not see the attention
# products Q K^T and softmax(Q K^T) V, which are functional ops. FlopCounterMode counts them (about 63 GMACs here, almost
# all in the 4096-token self-attention at 64x64), so both totals are reported.
PUBLISHED_PARAMS = 859_520_964


#: --smoke: the same architecture, 1/10 of the channels at 16x16 latents, to check this script in seconds (numbers meaningless).
SMOKE_CHANGES: dict[str, Any] = {"block_out_channels": [32, 64, 128, 128], "sample_size": 16, "cross_attention_dim": 64}


def build_model(seed: int, smoke: bool = False, device: str = "cpu") -> DiffusionModel:
    """The UNet with random weights; ``device="meta"`` builds shapes only (MACs in seconds, no 3.4 GB of weights)."""
    from diffusers import UNet2DConditionModel

    config = {**SD15_UNET_CONFIG, **(SMOKE_CHANGES if smoke else {})}
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config).eval().requires_grad_(False)
    size = config["sample_size"]
    return DiffusionModel(
        unet, NoiseSchedule.from_scheduler_config(SD15_SCHEDULER_CONFIG), (4, size, size), "sd15-random", scheduler_config=SD15_SCHEDULER_CONFIG
    )


def conditioning(model: DiffusionModel, guided: bool, seed: int) -> Conditioning:
    """Random 77-token text encoder states (the UNet's cost does not depend on their values)."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, 77, int(model.denoiser.config.cross_attention_dim))
    cond, uncond = (torch.randn(shape, generator=g).to(model.device) for _ in range(2))
    return Conditioning(cond, uncond if guided else None, guidance_scale=7.5 if guided else 1.0)


def op_family(op: Any) -> str:
    """Group FlopCounterMode's ops: convolutions, fused attention, matrix products (linear layers, projections)."""
    name = str(op).split(".")[-1]
    if "convolution" in name:
        return "convolution"
    if "attention" in name:
        return "attention products (fused sdpa)"
    if name in ("bmm", "baddbmm"):  # the unfused attention path: Q K^T and softmax(.) V
        return "attention products (bmm)"
    if name in ("mm", "addmm"):
        return "linear layers (mm)"
    return name


def round_of_steps(model: DiffusionModel, x: torch.Tensor, t: int, branches: list[int], measure) -> tuple[Any, list[Any]]:  # noqa: ANN001
    """One full step (recording branch 0's deep units, a superset of every branch's), then a partial step per branch."""
    probe = Schedule((Step(FULL),), (t,), "ddim", "probe")
    with apply_schedule(model, probe) as run:
        deep0 = run.layout.branches[0].deep

        def full() -> None:
            run.state.enter_full(deep0)
            model.eps(x, t)

        def partial(b: int):  # noqa: ANN202
            def step() -> None:
                run.state.enter_partial(run.layout.branches[b])  # as the executor does (hollow replay on)
                model.eps(x, t)

            return step

        full_result = measure(full)
        return full_result, [measure(partial(b)) for b in branches]


def timed(fn) -> float:  # noqa: ANN001
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_batch(model: DiffusionModel, guided: bool, branches: list[int], repeats: int, seed: int, count: bool) -> dict[str, Any]:
    model.conditioning = conditioning(model, guided, seed)
    x = torch.randn((1, *model.sample_shape), generator=torch.Generator().manual_seed(seed)).to(model.device)
    t = 500
    out: dict[str, Any] = {"unet_batch": 2 if guided else 1, "branches": branches}
    with torch.no_grad():
        start = time.perf_counter()
        if count:  # the first round counts MACs (and warms up)
            families: dict[str, int] = defaultdict(int)

            def counted(fn) -> int:  # noqa: ANN001
                with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
                    fn()
                if not families:  # the round's first step is the full step
                    for op, flops in counter.get_flop_counts()["Global"].items():
                        families[op_family(op)] += flops // 2
                return counter.get_total_flops() // 2

            full_macs, partial_macs = round_of_steps(model, x, t, branches, counted)
            out["macs_by_op_family_full_step"] = dict(families)
        else:  # warm-up at this batch size: a full step runs every layer at the new shapes
            round_of_steps(model, x, t, [], timed)
            full_macs, partial_macs = None, None
        out["warmup_seconds"] = round(time.perf_counter() - start, 2)
        rounds = []
        for r in range(repeats):
            full_s, partial_s = round_of_steps(model, x, t, branches, timed)
            rounds.append((full_s, partial_s))
            print(f"  batch {out['unet_batch']} round {r}: full {full_s:.2f} s, partial " + " ".join(f"{p:.2f}" for p in partial_s), flush=True)
    if full_macs is not None:
        out["full_macs"], out["partial_macs"] = int(full_macs), [int(m) for m in partial_macs]
    if not rounds:
        return out
    out["full_seconds_all"] = [round(f, 4) for f, _ in rounds]
    out["full_seconds"] = round(statistics.median(f for f, _ in rounds), 4)
    out["partial_seconds"] = [round(statistics.median(p[i] for _, p in rounds), 4) for i in range(len(branches))]
    out["partial_seconds_min"] = [round(min(p[i] for _, p in rounds), 4) for i in range(len(branches))]
    out["full_seconds_min"] = round(min(f for f, _ in rounds), 4)
    # two estimates of partial / full: paired within a round (median over rounds), and best-of-rounds (min / min: what
    # timeit reports; robust to other jobs stealing the CPU in bursts). On an idle machine they agree.
    out["wall_ratio_paired_median"] = [round(statistics.median(p[i] / f for f, p in rounds), 4) for i in range(len(branches))]
    out["wall_ratio"] = [round(out["partial_seconds_min"][i] / out["full_seconds_min"], 4) for i in range(len(branches))]
    return out


def reachable(costs: StepCosts, full_s: float, partial_s: list[float], steps: int) -> list[dict[str, Any]]:
    """MACs and predicted wall speed-ups over the DDIM-`steps` teacher of DeepCache N=2..10 (every branch) and DDIM-k."""
    ts = uniform_timesteps(1000, steps, sampler_info("ddim").spacing)

    def wall(plan: Schedule) -> float:
        seconds = sum(full_s if s.info.fills_cache else partial_s[s.branch] if s.info.replays else 0.0 for s in plan.steps)
        return full_s * plan.T / seconds

    plans = [deepcache_uniform(ts, n, b) for n in range(2, 11) for b in range(len(costs.partial))] + [ddim_k(ts, k) for k in (5, 10, 17, 25)]
    return [{"schedule": p.name, "counts": p.counts(), "macs_speedup": round(costs.speedup(p), 3), "predicted_wall_speedup": round(wall(p), 3)} for p in plans]


def macs_only(args: argparse.Namespace) -> None:
    """MACs of the full step and every partial step on the meta device (attention takes the bmm path there: same MACs)."""
    from flexdiff.backbones import unet_layout

    model = build_model(args.seed, args.smoke, device="meta")
    layout = unet_layout(model.denoiser)
    counted = measure_batch(model, False, list(range(layout.num_branches)), 0, args.seed, count=True)
    full, families = counted["full_macs"], counted["macs_by_op_family_full_step"]
    modules_only = sum(v for k, v in families.items() if not k.startswith("attention products"))
    out = args.out.with_name(args.out.stem + "-macs.json")
    write_result(
        out,
        {
            "model": "Stable Diffusion v1.5 UNet2DConditionModel (published config, meta device: shapes only)",
            "parameters": model.num_parameters,
            "full_step_gmacs": round(full / 1e9, 3),
            "published_gmacs": PUBLISHED_GMACS,
            "full_step_vs_published": round(full / 1e9 / PUBLISHED_GMACS - 1, 4),
            "full_step_gmacs_by_op_family": {k: round(v / 1e9, 3) for k, v in families.items()},
            "full_step_gmacs_conv_and_linear_only": round(modules_only / 1e9, 3),
            "conv_and_linear_only_vs_published": round(modules_only / 1e9 / PUBLISHED_GMACS - 1, 4),
            "branches": [
                {
                    "branch": b.index,
                    "skip": b.label,
                    "partial_macs": counted["partial_macs"][b.index],
                    "macs_ratio": round(counted["partial_macs"][b.index] / full, 4),
                }
                for b in layout.branches
            ],
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # defaults sized for about 8 minutes on an idle 2-core CPU (a full step: ~10 s at batch 1, ~18 s at batch 2)
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds per batch size (after one counting / warm-up round)")
    parser.add_argument("--cfg-branches", default="0,2,4,6,8,11", help="branches timed at batch 2 (CFG); 'all' for every branch")
    parser.add_argument("--steps", type=int, default=50, help="teacher steps for the reachable speed-ups")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sd15_cost.json"))
    parser.add_argument("--smoke", action="store_true", help="a 1/10-width, 16x16 model: checks the script in seconds (writes to /tmp)")
    parser.add_argument("--macs-only", action="store_true", help="count MACs on the meta device (seconds; no timing), write OUT with -macs")
    args = parser.parse_args()
    if args.macs_only:
        return macs_only(args)
    if args.smoke:
        args.out = Path("/tmp/sd15_cost_smoke.json")
    started = time.perf_counter()

    from flexdiff.backbones import unet_layout

    model = build_model(args.seed, args.smoke)
    layout = unet_layout(model.denoiser)
    all_branches = list(range(layout.num_branches))
    params = model.num_parameters
    print(f"SD v1.5 UNet: {params:,} parameters, {layout.num_branches} branches; built in {time.perf_counter() - started:.0f} s", flush=True)

    single = measure_batch(model, False, all_branches, args.repeats, args.seed, count=True)
    cfg_branches = all_branches if args.cfg_branches == "all" else [int(b) for b in args.cfg_branches.split(",")]
    guided = measure_batch(model, True, cfg_branches, args.repeats, args.seed, count=False)

    full_macs, partial_macs = single["full_macs"], single["partial_macs"]
    costs = StepCosts(full_macs, tuple(partial_macs))
    macs_ratio = [p / full_macs for p in partial_macs]
    rows = []
    for b in all_branches:
        row = {
            "branch": b,
            "skip": layout.branches[b].label,
            "partial_macs": partial_macs[b],
            "macs_ratio": round(macs_ratio[b], 4),
            "batch1_partial_seconds": single["partial_seconds_min"][b],
            "batch1_wall_ratio": single["wall_ratio"][b],
            "batch1_wall_vs_macs": round(single["wall_ratio"][b] / macs_ratio[b] - 1, 4),
        }
        if b in cfg_branches:
            i = cfg_branches.index(b)
            row.update(
                batch2_partial_seconds=guided["partial_seconds_min"][i],
                batch2_wall_ratio=guided["wall_ratio"][i],
                batch2_wall_vs_macs=round(guided["wall_ratio"][i] / macs_ratio[b] - 1, 4),
            )
        row["within_15pct"] = all(abs(row[k]) <= 0.15 for k in ("batch1_wall_vs_macs", "batch2_wall_vs_macs") if k in row)
        rows.append(row)
    full_gmacs = full_macs / 1e9
    families = {k: round(v / 1e9, 3) for k, v in sorted(single["macs_by_op_family_full_step"].items(), key=lambda kv: -kv[1])}
    modules_only = sum(v for k, v in single["macs_by_op_family_full_step"].items() if not k.startswith("attention products")) / 1e9
    write_result(
        args.out,
        {
            "model": "Stable Diffusion v1.5 UNet2DConditionModel (published config, random weights)",
            "unet_config": SD15_UNET_CONFIG,
            "latent_shape": [4, 64, 64],
            "encoder_states": [77, 768],
            "parameters": params,
            "published_parameters": PUBLISHED_PARAMS,
            "full_step_gmacs": round(full_gmacs, 3),
            "published_gmacs": PUBLISHED_GMACS,
            "full_step_vs_published": round(full_gmacs / PUBLISHED_GMACS - 1, 4),
            "full_step_gmacs_by_op_family": families,
            "full_step_gmacs_conv_and_linear_only": round(modules_only, 3),
            "conv_and_linear_only_vs_published": round(modules_only / PUBLISHED_GMACS - 1, 4),
            "full_step_gmacs_cfg_batch2": round(2 * full_gmacs, 3),
            "batch1": {k: v for k, v in single.items() if k not in ("macs_by_op_family_full_step",)},
            "batch2_cfg": guided,
            "branches": rows,
            "all_within_15pct": all(r["within_15pct"] for r in rows),
            "reachable_speedups_batch1": reachable(costs, single["full_seconds_min"], single["partial_seconds_min"], args.steps),
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )
    print(f"full step: {full_gmacs:.1f} GMACs (published {PUBLISHED_GMACS}: {full_gmacs / PUBLISHED_GMACS - 1:+.1%}); by op family: {families}")
    print(f"conv + linear only (what module-based counters see): {modules_only:.1f} GMACs ({modules_only / PUBLISHED_GMACS - 1:+.2%} vs published)")
    print(f"full step wall: {single['full_seconds_min']:.2f} s (batch 1), {guided['full_seconds_min']:.2f} s (batch 2, CFG)")
    print(f"{'branch':>6} {'skip':<18}{'GMACs':>8}{'MACs %':>8}{'wall % b1':>10}{'gap b1':>8}{'wall % b2':>10}{'gap b2':>8}")
    for r in rows:
        b2 = f"{r['batch2_wall_ratio']:>10.1%}{r['batch2_wall_vs_macs']:>+8.1%}" if "batch2_wall_ratio" in r else ""
        print(
            f"{r['branch']:>6} {r['skip']:<18}{r['partial_macs'] / 1e9:>8.1f}{r['macs_ratio']:>8.1%}{r['batch1_wall_ratio']:>10.1%}{r['batch1_wall_vs_macs']:>+8.1%}{b2}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
