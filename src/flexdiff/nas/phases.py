"""The five phases of ``flexdiff compress``; each one's outputs carry a key of everything that determines them, so a
rerun reuses what matches (see :mod:`flexdiff.nas.compress` for the order and the time budget)."""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flexdiff.data import load_images, save_grid
from flexdiff.either_loop import sample
from flexdiff.measuring.metrics import fid
from flexdiff.models.student import Architecture, BlockChoice, BlockSpec, block_module
from flexdiff.nas.blocks import block_inputs
from flexdiff.nas.clock import Run, seconds_per_step
from flexdiff.nas.config import DISTILL_SHARE, FID_STEPS, MARGIN_SECONDS
from flexdiff.nas.distill import score_candidates, train_supernet
from flexdiff.nas.local_search import Candidate, combine, pareto_front
from flexdiff.nas.record import Records, record_teacher
from flexdiff.nas.retrain import AlphaSchedule, Checkpoint, RetrainConfig, retrain
from flexdiff.nas.student import save_student
from flexdiff.nas.supernet import BlockSupernet, UnitCosts, unit_costs
from flexdiff.running.cost import full_step_macs, probe_input
from flexdiff.utils.hashing import digest, weights_hash
from flexdiff.utils.io import atomic_path, read_json_or_none, read_tensors, state_mismatch, write_json
from flexdiff.utils.progress import progress_bar


def _record_key(run: Run) -> str:
    c = run.config
    return digest("record", weights_hash(run.teacher.denoiser)[:16], c.data, len(run.images), float(run.images.sum()), c.seed, c.record_n, c.val_n)


def phase_record(run: Run) -> tuple[Records, str]:
    c, path = run.config, run.out / "records.safetensors"
    key = _record_key(run)
    if run.phase_done("record", key) and path.is_file():
        records, why = Records.read(path, key, c.record_n, c.val_n)
        if records is not None:
            return records, key
        print(f"warning: {path}: {why}; recording the teacher again", file=sys.stderr)
    started = time.monotonic()
    with progress_bar("1/5 recording teacher blocks", c.record_n + c.val_n, enabled=c.progress) as advance:
        records = record_teacher(run.teacher, run.images, c.record_n, c.val_n, c.seed, on_batch=advance)
    records.save(path, {"key": key})
    run.mark("record", key, time.monotonic() - started)
    return records, key


def _fid_reserve(run: Run) -> float:
    """Seconds the FID phase will take: teacher + student DDIM-50 sampling, timed from teacher calls."""
    c = run.config
    if not c.fid_n or c.reference_set is None:
        return 0.0
    batch = min(250, c.fid_n)
    x, t = probe_input(run.teacher, batch)  # t inside the model's timestep range (a 400-step model has no t = 500)
    call = seconds_per_step(lambda n: [run.teacher.eps(x, t) for _ in range(n)], steps=1)
    calls = FID_STEPS * math.ceil(c.fid_n / batch)
    return calls * call * (1.0 + 1.5 * c.macs_ratio) + 15.0  # student calls cost more per MAC (element-wise work)


def _distill_steps(run: Run, records: Records, supernets: dict[str, BlockSupernet], record_key: str) -> int:
    c = run.config

    def measure() -> int:
        reserve = _fid_reserve(run)
        budget = DISTILL_SHARE * max(run.deadline - time.monotonic() - reserve - MARGIN_SECONDS, 0.0)
        gen = torch.Generator().manual_seed(c.seed + 99)
        per_step = 0.0
        for spec in run.specs:  # a throwaway copy of each supernet: the probe must not change the trained weights
            probe = copy.deepcopy(supernets[spec.name])
            per_step += seconds_per_step(lambda n: train_supernet(probe, run.teacher.denoiser, records, n, gen, c.distill_lr, c.batch_size))
        run.state.setdefault("plan", {})["fid_reserve_seconds"] = round(reserve, 1)
        return max(int(budget / max(per_step, 1e-6)), 1)

    given = {"record": record_key, "minutes": c.minutes, "macs_ratio": c.macs_ratio, "fid_n": c.fid_n}
    return run.step_count("distill_steps", c.distill_steps, given, measure)


def phase_distill(run: Run, records: Records, record_key: str) -> tuple[dict[str, BlockSupernet], str, dict[str, list[float]]]:
    from safetensors.torch import save_file

    c = run.config
    unet = run.teacher.denoiser
    supernets = {s.name: BlockSupernet(block_module(unet, s), s) for s in run.specs}
    steps = _distill_steps(run, records, supernets, record_key)
    key = digest("distill", record_key, steps, c.distill_lr, c.batch_size, c.seed)
    folder = run.out / "blocks"
    folder.mkdir(exist_ok=True)
    entry = run.state.get("phases", {}).get("distill") or {}
    histories: dict[str, list[float]] = dict(entry.get("histories", {})) if entry.get("key") == key else {}
    seconds = _phase_seconds(run, "distill", key)
    for b, spec in enumerate(run.specs):
        path = folder / f"{spec.name}.safetensors"
        tensors, meta, why = read_tensors(path)
        if meta.get("key") == key:  # distilled by an earlier process: reused when whole
            why = state_mismatch(supernets[spec.name].state_dict(), tensors)
            if not why:
                supernets[spec.name].load_state_dict(tensors)
                supernets[spec.name].eval().requires_grad_(False)
                continue
        if path.is_file() and why:  # damaged, not merely made for other settings: never silent
            print(f"warning: {path}: {why}; distilling {spec.name} again", file=sys.stderr)
        started = time.monotonic()
        gen = torch.Generator().manual_seed((c.seed * 1000 + 17 + b) % 2**64)  # per block: a resumed block draws the same rows (any 64-bit --seed)
        with progress_bar(f"2/5 distilling {spec.name}", steps, enabled=c.progress) as advance:
            losses = train_supernet(
                supernets[spec.name], unet, records, steps, gen, c.distill_lr, c.batch_size, on_step=lambda s, loss: advance(1, f"loss {loss:.4f}")
            )
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in supernets[spec.name].state_dict().items()}, str(tmp), metadata={"key": key})
        histories[spec.name] = [round(sum(losses[i : i + 25]) / len(losses[i : i + 25]), 5) for i in range(0, len(losses), 25)]
        seconds += time.monotonic() - started
        run.mark("distill", key, seconds, done=False, histories=histories, steps=steps)
    run.mark("distill", key, seconds, histories=histories, steps=steps)
    return supernets, key, histories


def _phase_seconds(run: Run, name: str, key: str) -> float:
    entry = run.state.get("phases", {}).get(name) or {}
    return float(entry.get("seconds", 0.0)) if entry.get("key") == key else 0.0


def _costs(run: Run, records: Records, supernets: dict[str, BlockSupernet]) -> dict[str, UnitCosts]:
    unet = run.teacher.denoiser
    example = records.rows(slice(0, 1), run.teacher.device)
    return {s.name: unit_costs(supernets[s.name], block_module(unet, s), block_inputs(unet, s, example)) for s in run.specs}


def teacher_cost(model: Any) -> tuple[int, int]:
    """(MACs per sample of one full step, parameters) of a model."""
    return int(full_step_macs(model)), int(model.num_parameters)


def phase_search(run: Run, records: Records, supernets: dict[str, BlockSupernet], distill_key: str) -> tuple[Architecture, dict[str, Any], str]:
    """Score every candidate (once per distillation), then combine the per-block fronts under the budget."""
    c = run.config
    unet = run.teacher.denoiser
    scores_path = run.out / "scores.json"
    scores = read_json_or_none(scores_path)
    started = time.monotonic()
    if not (isinstance(scores, dict) and scores.get("key") == distill_key):
        costs = _costs(run, records, supernets)
        total = sum(len(s.choices()) for s in run.specs)
        blocks: dict[str, list[dict[str, Any]]] = {}
        with progress_bar("3/5 scoring candidates", total, enabled=c.progress) as advance:
            for spec in run.specs:
                choices = spec.choices()
                losses = score_candidates(supernets[spec.name], unet, records, choices, on_choice=advance)
                blocks[spec.name] = [
                    {
                        "widths": list(ch.widths),
                        "attention": ch.attention,
                        "macs": costs[spec.name].macs(ch, spec),
                        "params": costs[spec.name].params(ch, spec),
                        "loss": round(loss, 6),
                    }
                    for ch, loss in zip(choices, losses)
                ]
        scores = {"key": distill_key, "blocks": blocks, "seconds": round(time.monotonic() - started, 2)}
        write_json(scores_path, scores)
    teacher_macs, teacher_params = teacher_cost(run.teacher)
    full = {s.name: next(r for r in scores["blocks"][s.name] if tuple(r["widths"]) == s.groups and r["attention"] == s.has_attention) for s in run.specs}
    stem_macs = teacher_macs - sum(r["macs"] for r in full.values())
    stem_params = teacher_params - sum(r["params"] for r in full.values())
    fronts = [pareto_front([Candidate(s.name, i, r["macs"], r["params"], r["loss"]) for i, r in enumerate(scores["blocks"][s.name])]) for s in run.specs]
    picked = combine(fronts, c.macs_ratio * teacher_macs - stem_macs, c.max_params_ratio * teacher_params - stem_params)
    arch = Architecture(
        tuple(
            (s.name, BlockChoice(tuple(scores["blocks"][s.name][p.index]["widths"]), scores["blocks"][s.name][p.index]["attention"]))
            for s, p in zip(run.specs, picked)
        )
    )
    rows = []
    for s, p in zip(run.specs, picked):
        r = scores["blocks"][s.name][p.index]
        rows.append(
            {
                "block": s.name,
                "choice": arch[s.name].label(s),
                "widths": r["widths"],
                "attention": r["attention"],
                "macs": r["macs"],
                "params": r["params"],
                "teacher_macs": full[s.name]["macs"],
                "teacher_params": full[s.name]["params"],
                "loss": r["loss"],
                "front_size": len(fronts[run.specs.index(s)]),
            }
        )
    summary = {
        "blocks": rows,
        "stem": {"macs": stem_macs, "params": stem_params},
        "teacher": {"macs": teacher_macs, "params": teacher_params},
        "predicted": {"macs": stem_macs + sum(r["macs"] for r in rows), "params": stem_params + sum(r["params"] for r in rows)},
        "summed_loss": round(sum(r["loss"] for r in rows), 6),
        "architecture": arch.to_json(),
    }
    key = digest("search", distill_key, c.macs_ratio, c.max_params_ratio)
    write_json(run.out / "search.json", {"key": key, **summary})
    run.mark("search", key, float(scores.get("seconds", 0.0)) + time.monotonic() - started)
    return arch, summary, key


def assemble(teacher_unet: nn.Module, specs: tuple[BlockSpec, ...], supernets: dict[str, BlockSupernet], arch: Architecture) -> nn.Module:
    """The student: the teacher's UNet with every block replaced by its chosen, distilled candidate."""
    student = copy.deepcopy(teacher_unet)
    for spec in specs:
        block = supernets[spec.name].extract(arch[spec.name], block_module(teacher_unet, spec))
        if spec.kind == "down":
            student.down_blocks[spec.index] = block
        elif spec.kind == "up":
            student.up_blocks[spec.index] = block
        else:
            student.mid_block = block
    return student


def _retrain_steps(run: Run, student: nn.Module, scales: dict[str, float], search_key: str, reserve: float) -> int:
    c = run.config

    def measure() -> int:
        probe = copy.deepcopy(student)  # a throwaway copy: the probe must not change the student

        def run_steps(n: int) -> None:
            probe_config = RetrainConfig(steps=n, alpha=AlphaSchedule.parse(c.alpha), lr=c.retrain_lr, batch_size=c.batch_size, seed=c.seed + 99)
            retrain(probe, run.teacher.denoiser, run.specs, run.teacher.noise, run.images, scales, probe_config, None, {})

        per_step = seconds_per_step(run_steps)
        budget = max(run.deadline - time.monotonic() - reserve - MARGIN_SECONDS, 0.0)
        return max(int(0.97 * budget / max(per_step, 1e-6)), 1)

    given = {"search": search_key, "minutes": c.minutes, "alpha": c.alpha, "fid_n": c.fid_n}
    return run.step_count("retrain_steps", c.retrain_steps, given, measure)


def phase_retrain(
    run: Run, records: Records, supernets: dict[str, BlockSupernet], arch: Architecture, search_key: str
) -> tuple[Path, list[dict[str, Any]], str, bool]:
    c = run.config
    scales = {k[6:]: float(v) for k, v in records.data.items() if k.startswith("scale.")}
    reserve = run.state.get("plan", {}).get("fid_reserve_seconds")
    reserve = _fid_reserve(run) if reserve is None else float(reserve)
    student = assemble(run.teacher.denoiser, run.specs, supernets, arch)
    steps = _retrain_steps(run, student, scales, search_key, reserve)
    alpha = AlphaSchedule.parse(c.alpha)
    key = digest("retrain", search_key, str(alpha), steps, c.retrain_lr, c.batch_size, c.seed)
    student_dir = run.out / "student"
    entry = run.state.get("phases", {}).get("retrain") or {}
    if run.phase_done("retrain", key) and (student_dir / "unet" / "flexdiff_student.json").is_file():
        return student_dir, entry.get("history", []), key, bool(entry.get("cut", False))
    started, before = time.monotonic(), _phase_seconds(run, "retrain", key)
    config = RetrainConfig(steps=steps, alpha=alpha, lr=c.retrain_lr, batch_size=c.batch_size, seed=c.seed)
    checkpoint = Checkpoint(run.out / "retrain")
    done_before = _checkpoint_step(checkpoint, key)
    with progress_bar("4/5 retraining student", steps, enabled=c.progress) as advance:
        advance(done_before)
        ema, history, cut = retrain(
            student,
            run.teacher.denoiser,
            run.specs,
            run.teacher.noise,
            run.images,
            scales,
            config,
            checkpoint,
            {"key": key},
            on_step=lambda s, row: advance(1, f"loss {row['loss']:.4f} alpha {row['alpha']:.2f}"),
            deadline=None if c.retrain_steps else run.deadline - reserve - MARGIN_SECONDS / 3,  # explicit --retrain-steps: exactly that many
            on_checkpoint=lambda step: run.mark("retrain", key, before + time.monotonic() - started, done=False, step=step, steps=steps),
        )
    card = {
        "teacher": c.model,
        "method": "DiffNAS block-wise distillation + dynamic joint loss (flexdiff compress)",
        "alpha": str(alpha),
        "retrain_steps": steps,
        "seed": c.seed,
    }
    save_student(ema.cpu(), arch, student_dir, run.teacher.scheduler_config, card)
    run.mark("retrain", key, before + time.monotonic() - started, history=history, cut=cut, steps=steps)
    return student_dir, history, key, cut


def _checkpoint_step(checkpoint: Checkpoint, key: str) -> int:
    meta = read_json_or_none(checkpoint.meta)
    return int(meta["step"]) if isinstance(meta, dict) and meta.get("fingerprint") == {"key": key} else 0


def phase_fid(run: Run, student: Any, retrain_key: str) -> dict[str, float | None]:
    """FID of the teacher and the student: DDIM-50 from the same seed, ``--fid-n`` images vs the reference set."""
    c = run.config
    reference = c.reference_set
    if not c.fid_n or reference is None:
        return {"teacher": None, "student": None}
    path = run.out / "fid.json"
    cached = read_json_or_none(path)
    cached = cached if isinstance(cached, dict) else {}
    teacher_key = digest("fid-teacher", weights_hash(run.teacher.denoiser)[:16], c.fid_n, reference, c.features, c.seed)
    student_key = digest("fid-student", retrain_key, c.fid_n, reference, c.features, c.seed)
    started = time.monotonic()
    ref = load_images(reference)
    result: dict[str, float | None] = {}
    for name, model, key in (("teacher", run.teacher, teacher_key), ("student", student, student_key)):
        if cached.get(name, {}).get("key") == key:
            result[name] = cached[name]["fid"]
            continue
        images = sample(model, c.fid_n, sampler="ddim", steps=FID_STEPS, seed=c.seed, batch_size=250, progress=c.progress)
        result[name] = round(fid(images, ref, c.features, model.device), 4)
        cached[name] = {"key": key, "fid": result[name]}
        write_json(path, cached)
        if name == "student":
            save_grid(run.out / "student_samples.png", images[:64])
    run.mark("fid", digest(teacher_key, student_key), time.monotonic() - started + _phase_seconds(run, "fid", digest(teacher_key, student_key)))
    return result


# --------------------------------------------------------------------------------------------------- the job
