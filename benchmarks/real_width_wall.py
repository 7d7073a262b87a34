"""At real width, is the wall-clock speed-up of flexdiff's searched schedules close to their MACs speed-up?

The schedules were searched on the small built-in models (benchmarks/results/search_vs_peers.json: the built-in DiT,
flow-euler, T = 20; benchmarks/results/search_vs_baselines_ddim2m.json: the built-in UNet, ddim-2m, T = 50), where
small convolutions and the Python around them weigh more than at real width. Here their step mixes run on two
real-width models built from published configs with random weights (no download; cost does not depend on the
weights, so this says nothing about quality), fp32, batch 1 (no CFG):

- the Stable Diffusion v1.5 UNet (benchmarks/sd15_cost.py's config) at 256x256 px: latent 4x32x32, 77x768 text states,
  sampler ddim-2m, T = 50;
- the PixArt-Sigma XL/2 transformer (:data:`PIXART_SIGMA_CONFIG`) at 256x256 px: latent 4x32x32 = 256 image tokens,
  120 random T5-like caption tokens (4096-d), sampler dpmpp-2m (its pipeline's DPM-Solver++ 2M), T = 20. The DiT mixes
  were searched under flow-euler; the step kinds per position are kept, only the sampler's arithmetic differs.

**Branch mapping** (the built-ins have fewer blocks and branches than the real models): each partial / forecast step
keeps its place in the mix and moves to the real model's branch at the same relative depth. UNet: built-in branch b of
n skip branches -> real branch floor(b (n' - 1) / (n - 1) + 1/2) of n' (0 -> 0, deepest -> deepest). Transformer:
the built-in's (F, B) of L blocks -> the real (F', B') nearest (L1 distance; ties: the cheaper) to (F L'/L, B L'/L)
among the real layout's branches (deep models take coarse depths). Each searched genome's segments are re-expanded
with the mapped branches (:class:`flexdiff.schedule.Genome`), so a real mix is a genome of the real model. For context:
DeepCache uniform 1:3 at branch 0 (replay and forecast) and DDIM-k plans (k = T/2, T/3, T/4, T/5, full steps only).

**Timing.** Per step kind (full, partial at each branch used, forecast at each branch used, and the sampler's own
arithmetic per active step; a null step calls nothing and is dropped from the trajectory, so it costs 0) through the
same hooks and executor state as ``flexdiff sample``: one counting round (MACs by flexdiff's cost model,
FlopCounterMode; it also warms up), then ``--repeats`` rounds, each a full step (which fills the cache) followed by every
other kind in an order rotated per round, so drift and other jobs hit all kinds alike. Every round is recorded; min
(best-of-rounds, as timeit) and median are kept. For each mix: MACs speed-up (:class:`flexdiff.running.cost.StepCosts`), wall
speed-up predicted by summing the measured per-kind times over the mix (min and median), and wall / MACs. For the
searched mix of each ``--e2e`` budget, an end-to-end check: the whole sampling loop of the teacher (every step full, no
hooks) and of the mix (``flexdiff.either_loop.schedule_images``: what ``flexdiff sample --schedule`` runs), interleaved
per round, against the prediction. The same script runs on a GPU (``--device cuda``; timings synchronise).

    .venv/bin/python benchmarks/real_width_wall.py --repeats 3 --out benchmarks/results/real_width_wall.json  # ~17 min, idle 2-core CPU
    .venv/bin/python benchmarks/real_width_wall.py --device cuda --repeats 10 --out benchmarks/results/real_width_wall_gpu.json  # a lent GPU
    .venv/bin/python benchmarks/real_width_wall.py --tiny                                               # smoke test, seconds, /tmp

Expected time on this 2-core CPU (from sd15_cost.json: a full SD1.5 step at 512 px, 402 GMACs, ~10.5 s): at 256 px
the SD1.5 UNet is 90 GMACs a step (~2.5 s), PixArt-Sigma at 256 tokens 149 GMACs (~4 s). Per-kind rounds take ~0.5 min
per model; an end-to-end round ~3 min for SD1.5 (a 50-step teacher and the mix) and ~2 min for PixArt (20 steps): ~17 min
in all with ``--repeats 3``, model building included. Peak memory ~4 GB (one model at a time, fp32).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from common import write_result
from sd15_cost import SD15_SCHEDULER_CONFIG, SD15_UNET_CONFIG, SMOKE_CHANGES
from sd15_cost import conditioning as sd15_conditioning

import flexdiff
from flexdiff.backbones import Layout, TransformerBranch
from flexdiff.either_loop import schedule_images, teacher_images
from flexdiff.models import Conditioning, DiffusionModel, load_model
from flexdiff.noise import NoiseSchedule
from flexdiff.running.cost import StepCosts, count_macs, measure_macs
from flexdiff.running.executor import apply_schedule
from flexdiff.running.own_loop import teacher_timesteps
from flexdiff.samplers import get_sampler
from flexdiff.schedule import FULL, Genome, Schedule, Segment, Step, ddim_k, deepcache_uniform

#: PixArt-alpha/PixArt-Sigma-XL-2-1024-MS, transformer/config.json (diffusers format). Written from diffusers'
#: scripts/convert_pixart_sigma_to_diffusers.py, which builds this model with exactly these arguments for image_size
#: 1024 (interpolation_scale {256: 0.5, 512: 1, 1024: 2, 2048: 4}[1024] = 2; use_additional_conditions = its
#: --micro_condition flag, off for Sigma) and sample_size = 1024 // 8; the remaining fields are PixArtTransformer2DModel's
#: defaults, which the published file repeats (not checked against the hub file itself here: no download).
PIXART_SIGMA_CONFIG: dict[str, Any] = {
    "_class_name": "PixArtTransformer2DModel",
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 72,
    "attention_type": "default",
    "caption_channels": 4096,
    "cross_attention_dim": 1152,
    "dropout": 0.0,
    "in_channels": 4,
    "interpolation_scale": 2,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "norm_type": "ada_norm_single",
    "num_attention_heads": 16,
    "num_embeds_ada_norm": 1000,
    "num_layers": 28,
    "out_channels": 8,
    "patch_size": 2,
    "sample_size": 128,
    "upcast_attention": False,
    "use_additional_conditions": False,
}
#: its scheduler/scheduler_config.json: DPM-Solver++ over PixArt's DDPM training schedule (linear betas 1e-4 .. 0.02,
#: 1000 steps, epsilon prediction; the learned-sigma half of the output is dropped as the pipeline does). Only the noise
#: schedule is read here; the solver options of the published file are not needed and not written out.
PIXART_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "DPMSolverMultistepScheduler",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
}
PIXART_CAPTION_TOKENS = 120  # PixArt-Sigma's T5 max length is 300; 120 is a long prompt's worth
#: --tiny: the same families, narrow and shallow (12 blocks: still > 8, so the coarse (F, B) depths are exercised)
TINY_PIXART: dict[str, Any] = {
    "num_layers": 12,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 16,
    "caption_channels": 32,
    "sample_size": 16,
}
TINY_CAPTION_TOKENS = 8

LATENT_256PX = 32  # 256 px / the VAE's factor 8
RESULTS = Path(__file__).parent / "results"
MAPPING_RULE = {
    "unet": "built-in skip branch b of n -> real branch floor(b (n' - 1) / (n - 1) + 1/2) of n' (relative index among the skip branches)",
    "transformer": "built-in (F, B) of L blocks -> the real (F', B') among its layout's branches nearest in L1 distance to (F L'/L, B L'/L); ties: smaller F' + B'",
    "genome": "each searched genome is re-expanded on the real model's teacher grid with every segment's branch mapped (interval, forecast gene and spacing kept)",
}


@dataclass(frozen=True)
class RealModel:
    """One real-width model: how to build it, what conditions it, and where its searched schedules come from."""

    key: str
    title: str
    results: Path  # the search benchmark whose budgets' searched rows give the step mixes
    sampler: str
    build: Callable[[bool, str, int], tuple[DiffusionModel, dict[str, Any]]]  # (tiny, device, seed) -> model, its config
    condition: Callable[[DiffusionModel, bool, int], Conditioning]  # (model, tiny, seed) -> conditioning


def build_sd15(tiny: bool, device: str, seed: int) -> tuple[DiffusionModel, dict[str, Any]]:
    """SD v1.5's UNet from its published config, random weights, sample shape (4, 32, 32) (tiny: sd15_cost's smoke model)."""
    from diffusers import UNet2DConditionModel

    config = {**SD15_UNET_CONFIG, "sample_size": LATENT_256PX, **(SMOKE_CHANGES if tiny else {})}
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config).eval().requires_grad_(False)
    size = config["sample_size"]
    noise = NoiseSchedule.from_scheduler_config(SD15_SCHEDULER_CONFIG)
    return DiffusionModel(unet, noise, (4, size, size), "sd15-random-256px", scheduler_config=SD15_SCHEDULER_CONFIG), config


def build_pixart(tiny: bool, device: str, seed: int) -> tuple[DiffusionModel, dict[str, Any]]:
    """PixArt-Sigma XL/2 from its published config, random weights, at a (4, 32, 32) latent: 256 tokens of patch 2."""
    from diffusers import PixArtTransformer2DModel

    config = {**PIXART_SIGMA_CONFIG, **(TINY_PIXART if tiny else {})}
    size = config["sample_size"] if tiny else LATENT_256PX  # the published sample_size (1024 px) stays in the config
    torch.manual_seed(seed)
    with torch.device(device):
        module = PixArtTransformer2DModel.from_config(config).eval().requires_grad_(False)
    noise = NoiseSchedule.from_scheduler_config(PIXART_SCHEDULER_CONFIG)
    return DiffusionModel(module, noise, (4, size, size), "pixart-sigma-random-256px", scheduler_config=PIXART_SCHEDULER_CONFIG), config


def sd15_condition(model: DiffusionModel, tiny: bool, seed: int) -> Conditioning:
    """(1, 77, 768) random CLIP-like states (tiny: 77 x 64), no guidance: sd15_cost's conditioning."""
    return sd15_conditioning(model, False, seed)


def pixart_condition(model: DiffusionModel, tiny: bool, seed: int) -> Conditioning:
    """(1, 120, 4096) random T5-like caption states (tiny: 8 x 32), no guidance."""
    tokens = TINY_CAPTION_TOKENS if tiny else PIXART_CAPTION_TOKENS
    g = torch.Generator().manual_seed(seed)
    states = torch.randn((1, tokens, int(model.denoiser.config.caption_channels)), generator=g)
    return Conditioning(states.to(model.device))


MODELS: dict[str, RealModel] = {
    "sd15": RealModel(
        "sd15",
        "Stable Diffusion v1.5 UNet2DConditionModel (published config, random weights), 256x256 px",
        RESULTS / "search_vs_baselines_ddim2m.json",
        "ddim-2m",
        build_sd15,
        sd15_condition,
    ),
    "pixart": RealModel(
        "pixart",
        "PixArt-Sigma XL/2 PixArtTransformer2DModel (published config, random weights), 256x256 px",
        RESULTS / "search_vs_peers.json",
        "dpmpp-2m",
        build_pixart,
        pixart_condition,
    ),
}


# ---------------------------------------------------------------------------------------------- the step mixes


def searched_rows(path: Path) -> tuple[str, int, list[dict[str, Any]]]:
    """(built-in model spec, T, the searched row of every budget) of a search benchmark's JSON."""
    data = json.loads(path.read_text())
    rows = [{**b["searched_row"], "budget": b["budget"]} for b in data["budgets"] if b.get("searched_row")]
    return str(data["model"]), len(rows[0]["steps"]), rows  # T: one step per teacher timestep


def builtin_branches(spec: str) -> tuple[Layout, list[float]]:
    """The built-in model's layout and each branch's partial-step MACs as a share of a full step (seconds, CPU)."""
    model = load_model(spec, device="cpu")
    costs = measure_macs(model)
    return model.layout, [p / costs.full for p in costs.partial]


def map_branch(b: int, builtin: Layout, real: Layout) -> int:
    """The real branch at the same relative depth as built-in branch ``b`` (:data:`MAPPING_RULE`)."""
    branch = builtin.branches[b]
    if isinstance(branch, TransformerBranch):
        scale = len(real.units) / len(builtin.units)
        front, back = branch.front * scale, branch.back * scale
        return min(real.branches, key=lambda r: (abs(r.front - front) + abs(r.back - back), r.front + r.back)).index  # type: ignore[attr-defined]
    return math.floor(b * (real.num_branches - 1) / max(builtin.num_branches - 1, 1) + 0.5)


def mapped_genome(text: str, mapping: dict[int, int]) -> Genome:
    """The searched genome with every segment's branch moved to the real model's (intervals, forecast, spacing kept)."""
    genome = Genome.parse(text)
    return Genome(tuple(Segment(mapping[s.branch], s.interval, s.forecast) for s in genome.segments), genome.spacing)


def real_plans(rows: list[dict[str, Any]], mapping: dict[int, int], ts: list[float], sampler: str) -> list[tuple[Schedule, dict[str, Any]]]:
    """The searched mixes on the real model, then DeepCache 1:3 at branch 0 (replay, forecast) and DDIM-k for context."""
    plans: list[tuple[Schedule, dict[str, Any]]] = []
    for row in rows:
        builtin = Genome.parse(row["genome"]).expand(list(range(len(ts), 0, -1)))  # its step kinds (timesteps unused)
        info = {
            "family": "searched",
            "budget": row["budget"],
            "builtin": {k: row[k] for k in ("name", "genome", "macs_speedup", "wall_speedup", "rfid", "fid") if k in row},
            "builtin_genome_matches_recorded_steps": [str(s) for s in builtin.steps] == row["steps"],
        }
        plans.append((mapped_genome(row["genome"], mapping).expand(ts, sampler), info))
    T = len(ts)
    plans.append((deepcache_uniform(ts, 3, 0, sampler), {"family": "deepcache"}))
    plans.append((deepcache_uniform(ts, 3, 0, sampler, forecast=True), {"family": "forecast"}))
    plans += [(ddim_k(ts, max(1, round(T / f)), sampler), {"family": "ddim"}) for f in (2, 3, 4, 5)]
    return plans


def partial_kinds(plans: list[Schedule]) -> list[Step]:
    """The distinct network-calling steps other than ``full`` the plans use (the kinds to time), sorted."""
    return sorted({s for p in plans for s in p.steps if s.info.calls_network and not s.info.fills_cache})


# ---------------------------------------------------------------------------------------------- timing


def stopwatch(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """``timed(fn)``: seconds of one call of ``fn`` (garbage collected before; the GPU synchronised around it)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn: Callable[[], object]) -> float:
        gc.collect()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    return timed


def summary(values: list[float]) -> dict[str, Any]:
    return {"seconds_min": round(min(values), 6), "seconds_median": round(statistics.median(values), 6), "seconds_all": [round(v, 6) for v in values]}


@torch.no_grad()
def time_kinds(model: DiffusionModel, kinds: list[Step], ts: list[float], sampler: str, repeats: int) -> tuple[dict[str, int], list[dict[str, float]]]:
    """MACs of each kind (the counting round), then ``repeats`` rounds of seconds per kind: ``full`` first (it fills
    the cache the others reuse), the other kinds in an order rotated per round, and ``sampler_step`` (the sampler's
    arithmetic per active step, over the teacher grid with a free network)."""
    timed = stopwatch(model.device)
    probe = Schedule((Step(FULL), Step(FULL), *kinds), tuple(ts[: 2 + len(kinds)]), sampler, "probe")  # a step per kind
    x = model.initial_noise(1, seed=0).to(model.device)  # (1, 4, 32, 32)
    t = ts[len(ts) // 2]
    eps = torch.randn_like(x)  # what the free network answers the sampler with
    loop = get_sampler(sampler)
    with apply_schedule(model, probe) as run:
        run.new_run()

        def call(index: int) -> Callable[[], object]:
            return lambda: (run.set_step(index), model.eps(x, t))  # as the executor's denoise does

        call(0)()  # a first cache-filling step: forecast steps extrapolate from the last two
        macs = {"full": count_macs(call(1))} | {str(k): count_macs(call(2 + j)) for j, k in enumerate(kinds)}
        rounds = []
        for r in range(repeats):
            row = {"full": timed(call(1))}
            order = list(range(len(kinds)))
            for j in order[r % max(len(kinds), 1) :] + order[: r % max(len(kinds), 1)]:
                row[str(kinds[j])] = timed(call(2 + j))
            row["sampler_step"] = timed(lambda: loop(lambda xt, tt, i: eps, x, ts, model.noise, grid=ts)) / len(ts)
            rounds.append(row)
            print(f"  round {r}: " + " ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return macs, rounds


def predicted_seconds(plan: Schedule, seconds: dict[str, float]) -> float:
    """A mix's loop time from per-kind times: its network calls plus the sampler's arithmetic per active step."""
    calls = [seconds[str(s)] for s in plan.steps if s.info.calls_network]  # str(Step(FULL)) == "full"
    return sum(calls) + len(calls) * seconds["sampler_step"]


@torch.no_grad()
def end_to_end(model: DiffusionModel, plan: Schedule, ts: list[float], repeats: int) -> list[dict[str, float]]:
    """Per round: the teacher's whole loop (every step full, no hooks: ``flexdiff sample`` without a schedule) and the
    mix's (``schedule_images``, hooks on: ``flexdiff sample --schedule``), their order alternating per round."""
    timed = stopwatch(model.device)
    noise = model.initial_noise(1, seed=0)  # (1, 4, 32, 32) on the CPU, as flexdiff.sample draws it
    runs = {"teacher": lambda: teacher_images(model, noise, ts, plan.sampler), "schedule": lambda: schedule_images(model, plan, noise)}
    rounds = []
    for r in range(repeats):
        order = ["teacher", "schedule"] if r % 2 == 0 else ["schedule", "teacher"]
        row = {name: timed(runs[name]) for name in order}
        rounds.append(row)
        print(f"  end-to-end {plan.name[:40]} round {r}: teacher {row['teacher']:.2f} s, schedule {row['schedule']:.2f} s", flush=True)
    return rounds


# ---------------------------------------------------------------------------------------------- one model


def kind_rows(kinds: list[Step], macs: dict[str, int], rounds: list[dict[str, float]], layout: Layout) -> list[dict[str, Any]]:
    """Per kind: MACs and seconds (min, median, every round), and wall share against MACs share of a full step."""
    rows = []
    for key in ["full", *map(str, kinds)]:
        step = Step.parse(key)
        values = [r[key] for r in rounds]
        row = {
            "kind": key,
            "branch_label": layout.branches[step.branch].label if step.branch is not None else None,
            "macs": macs[key],
            "macs_share": round(macs[key] / macs["full"], 5),
            **summary(values),
        }
        row["wall_share_min"] = round(min(values) / min(r["full"] for r in rounds), 5)
        row["wall_share_paired_median"] = round(statistics.median(r[key] / r["full"] for r in rounds), 5)
        rows.append(row)
    return rows


def mix_row(plan: Schedule, info: dict[str, Any], costs: StepCosts, best: dict[str, float], median: dict[str, float]) -> dict[str, Any]:
    """A mix's MACs speed-up and its wall speed-up predicted from per-kind times (min and median), and their ratio."""
    teacher = Schedule(tuple(Step(FULL) for _ in plan.steps), plan.timesteps, plan.sampler, "teacher")
    macs = costs.speedup(plan)
    wall_min = predicted_seconds(teacher, best) / predicted_seconds(plan, best)
    wall_median = predicted_seconds(teacher, median) / predicted_seconds(plan, median)
    return {
        "name": plan.name,
        **info,
        "genome": plan.meta.get("genome"),
        "steps": [str(s) for s in plan.steps],
        "counts": plan.counts(),
        "macs_speedup": round(macs, 4),
        "predicted_wall_speedup_min": round(wall_min, 4),
        "predicted_wall_speedup_median": round(wall_median, 4),
        "wall_over_macs": round(wall_min / macs, 4),
        "wall_over_macs_median": round(wall_median / macs, 4),
        "predicted_seconds_min": round(predicted_seconds(plan, best), 4),
        "teacher_predicted_seconds_min": round(predicted_seconds(teacher, best), 4),
    }


def e2e_row(plan: Schedule, rounds: list[dict[str, float]], predicted: dict[str, Any]) -> dict[str, Any]:
    """Measured whole-loop speed-up (best-of-rounds and paired median) against the per-kind prediction."""
    measured = min(r["teacher"] for r in rounds) / min(r["schedule"] for r in rounds)
    return {
        "name": plan.name,
        "rounds": [{k: round(v, 4) for k, v in r.items()} for r in rounds],
        "teacher_seconds_min": round(min(r["teacher"] for r in rounds), 4),
        "schedule_seconds_min": round(min(r["schedule"] for r in rounds), 4),
        "teacher_predicted_seconds_min": predicted["teacher_predicted_seconds_min"],
        "schedule_predicted_seconds_min": predicted["predicted_seconds_min"],
        "measured_wall_speedup": round(measured, 4),
        "measured_wall_speedup_paired_median": round(statistics.median(r["teacher"] / r["schedule"] for r in rounds), 4),
        "predicted_wall_speedup": predicted["predicted_wall_speedup_min"],
        "measured_over_predicted": round(measured / predicted["predicted_wall_speedup_min"], 4),
        "macs_speedup": predicted["macs_speedup"],
        "measured_wall_over_macs": round(measured / predicted["macs_speedup"], 4),
    }


def run_model(spec: RealModel, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    builtin_spec, T, rows = searched_rows(spec.results)
    builtin, builtin_shares = builtin_branches(builtin_spec)
    model, config = spec.build(args.tiny, args.device, args.seed)
    model.conditioning = spec.condition(model, args.tiny, args.seed)
    layout = model.layout
    built = time.perf_counter() - started
    print(f"{spec.key}: {model.num_parameters:,} parameters, {len(layout.units)} units, {layout.num_branches} branches; built in {built:.0f} s", flush=True)

    used = sorted({seg.branch for row in rows for seg in Genome.parse(row["genome"]).segments})  # built-in branches the searched mixes use
    mapping = {b: map_branch(b, builtin, layout) for b in used}
    ts = teacher_timesteps(model, spec.sampler, T)
    plans = real_plans(rows, mapping, ts, spec.sampler)
    kinds = partial_kinds([p for p, _ in plans])
    macs, rounds = time_kinds(model, kinds, ts, spec.sampler, args.repeats)

    partial = {s.branch: macs[str(s)] for s in kinds if s.branch is not None}
    costs = StepCosts(macs["full"], tuple(partial.get(b, 0) for b in range(layout.num_branches)))  # only the used branches are counted
    best = {k: min(r[k] for r in rounds) for k in rounds[0]}
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    mixes = [mix_row(plan, info, costs, best, median) for plan, info in plans]

    checks = []
    for plan, info in plans:
        if info.get("budget") in args.e2e:
            checks.append(e2e_row(plan, end_to_end(model, plan, ts, args.repeats), next(m for m in mixes if m["name"] == plan.name)))

    out = {
        "model": spec.title,
        "class": type(model.denoiser).__name__,
        "config": config,
        "parameters": model.num_parameters,
        "latent_shape": list(model.sample_shape),
        "text_states": list(model.conditioning.cond.shape[1:]),
        "batch": 1,
        "guidance": "none (batch 1)",
        "dtype": "float32",
        "sampler": spec.sampler,
        "T": T,
        "teacher_timesteps": ts,
        "searched_on": {"model": builtin_spec, "results": str(spec.results.relative_to(RESULTS.parent.parent))},
        "branch_mapping": [
            {
                "builtin_branch": b,
                "builtin_label": builtin.branches[b].label,
                "builtin_macs_share": round(builtin_shares[b], 4),
                "real_branch": mapping[b],
                "real_label": layout.branches[mapping[b]].label,
                "real_macs_share": round(partial[mapping[b]] / macs["full"], 4) if mapping[b] in partial else None,
            }
            for b in used
        ],
        "full_step_gmacs": round(macs["full"] / 1e9, 3),
        "kinds": kind_rows(kinds, macs, rounds, layout),
        "sampler_step": summary([r["sampler_step"] for r in rounds]),
        "null_step_seconds": 0.0,
        "rounds": [{k: round(v, 6) for k, v in r.items()} for r in rounds],
        "mixes": mixes,
        "end_to_end": checks,
        "build_seconds": round(built, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print_model(out)
    return out


def print_model(out: dict[str, Any]) -> None:
    print(f"{out['class']}: full step {out['full_step_gmacs']} GMACs, {out['kinds'][0]['seconds_min']:.3f} s (min)")
    for k in out["kinds"][1:]:
        print(f"    {k['kind']:12s} {k['branch_label'] or '':18s} MACs {k['macs_share']:7.2%}  wall {k['wall_share_min']:7.2%}")
    print(f"    {'mix':70s} {'MACs x':>7s} {'wall x':>7s} {'wall/MACs':>9s}")
    for m in out["mixes"]:
        print(
            f"    {(m.get('budget') or '') + ' ' + m['name'][:64]:70s} {m['macs_speedup']:7.2f} {m['predicted_wall_speedup_min']:7.2f} {m['wall_over_macs']:9.3f}"
        )
    for c in out["end_to_end"]:
        print(
            f"    end-to-end {c['name'][:50]}: measured {c['measured_wall_speedup']:.2f}x, predicted {c['predicted_wall_speedup']:.2f}x, MACs {c['macs_speedup']:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sd15,pixart", help="comma list of: " + ", ".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per kind, and end-to-end rounds (after one counting / warm-up round)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda when a GPU is lent")
    parser.add_argument("--e2e", default="1/3", help="budgets whose searched mix also runs end to end against the teacher (comma list, e.g. 1/2,1/3; 'none')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_width_wall.json"))
    parser.add_argument(
        "--tiny", action="store_true", help="narrow, shallow models: checks the script in seconds (numbers meaningless; writes to /tmp unless --out is given)"
    )
    args = parser.parse_args()
    args.e2e = set() if args.e2e == "none" else set(args.e2e.split(","))
    if args.tiny and args.out == parser.get_default("out"):
        args.out = Path("/tmp/real_width_wall_tiny.json")
    import diffusers

    started = time.perf_counter()
    results = {}
    for key in args.models.split(","):
        results[key] = run_model(MODELS[key], args)
        gc.collect()
    write_result(
        args.out,
        {
            "question": "at real width, is the wall-clock speed-up of the searched schedules' step mixes close to their MACs speed-up?",
            "tiny": args.tiny,
            "device": str(torch.device(args.device)),
            "repeats": args.repeats,
            "seed": args.seed,
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "flexdiff": flexdiff.__version__},
            "mapping_rule": MAPPING_RULE,
            "timing": "per kind: min (best of rounds) and median over interleaved rounds; predicted mix seconds = sum of its steps' per-kind seconds "
            "+ the sampler's arithmetic per active step; a null step is dropped from the trajectory (0 s)",
            "models": results,
            "summary": {
                k: [
                    {
                        "mix": m["name"],
                        "family": m["family"],
                        "budget": m.get("budget"),
                        "macs_speedup": m["macs_speedup"],
                        "predicted_wall_speedup": m["predicted_wall_speedup_min"],
                        "wall_over_macs": m["wall_over_macs"],
                    }
                    for m in v["mixes"]
                ]
                for k, v in results.items()
            },
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
