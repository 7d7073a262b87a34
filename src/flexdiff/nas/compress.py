"""``flexdiff compress``: the whole DiffNAS job from a teacher to a student model folder and ``results.json``.

Phases, each resumable (its outputs carry a key of everything that determines them; a rerun reuses what matches):

1. ``record``  — the teacher's block inputs/outputs on noised training images (``OUT/records.safetensors``)
2. ``distill`` — one supernet per block (``OUT/blocks/<block>.safetensors``; a killed run resumes at its block)
3. ``search``  — every candidate scored (``OUT/scores.json``), the budgeted combination (``OUT/search.json``)
4. ``retrain`` — the assembled student with the dynamic joint loss (``OUT/retrain/checkpoint.*`` every minute),
   saved to ``OUT/student/`` (a model folder every flexdiff command loads)
5. ``fid``     — teacher and student, DDIM-50, ``--fid-n`` images against the reference set (``OUT/fid.json``)

Time budget (``--minutes``, default 40): the FID phase is reserved first (timed from one teacher call), recording is
a fixed small cost, the block distillation gets ``DISTILL_SHARE`` of the rest, and retraining gets whatever remains
when it starts, minus a safety margin. Step counts are derived once from short timing probes and stored in
``OUT/state.json``, so a resumed run uses the same counts (and the same numbers); ``--distill-steps`` /
``--retrain-steps`` fix them explicitly for exact reproduction.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flexdiff.data import REAL_REFERENCE
from flexdiff.errors import FlexdiffError, output_folder
from flexdiff.nas.blocks import block_inputs, output_keys
from flexdiff.nas.distill import random_choice, score_candidates, train_supernet
from flexdiff.nas.local_search import Candidate, combine, pareto_front
from flexdiff.nas.record import Records, record_teacher
from flexdiff.nas.retrain import AlphaSchedule, Checkpoint, RetrainConfig, retrain
from flexdiff.nas.space import Architecture, BlockChoice, BlockSpec, block_module, block_specs, num_parameters
from flexdiff.nas.student import save_student
from flexdiff.nas.supernet import BlockSupernet, UnitCosts, smallest_student, unit_costs

#: Share of the training budget (``--minutes`` minus the FID reserve) given to block-wise distillation. Measured on
#: the built-in teacher (40-minute runs, seed 0): 0.25 -> student FID 49.19; 0.12 (more retraining steps, blocks
#: distilled for 908 instead of 2095 steps) -> 51.84, with a different block choice: better-trained supernets rank
#: the candidates better, which matters more than the extra retraining.
DISTILL_SHARE = 0.25
#: Seconds kept free at the end of the budget (saving the student, MACs, results).
MARGIN_SECONDS = 45.0
PHASES = ("record", "distill", "search", "retrain", "fid")
FID_STEPS = 50


@dataclass(frozen=True)
class CompressConfig:
    out: Path
    model: str = "builtin:digits"
    data: str = "builtin:digits-train"
    macs_ratio: float = 0.5
    params_ratio: float | None = None  # None: the same as macs_ratio
    minutes: float = 40.0
    seed: int = 0
    alpha: str = "dynamic"
    fid_n: int = 1000  # 0: skip FID
    reference: str | None = None  # None: the built-in model's held-out set, or no FID for other models
    features: str = "digits"
    record_n: int = 4096
    val_n: int = 256
    distill_steps: int | None = None  # per block; None: from the time budget
    retrain_steps: int | None = None  # None: from the time budget
    distill_lr: float = 5e-4
    retrain_lr: float = 5e-4
    batch_size: int = 64
    device: str = "auto"
    progress: bool = True
    command: tuple[str, ...] = ()

    @property
    def max_params_ratio(self) -> float:
        return self.macs_ratio if self.params_ratio is None else self.params_ratio

    @property
    def reference_set(self) -> str | None:
        return self.reference if self.reference is not None else REAL_REFERENCE.get(self.model)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["command"] = list(self.command)
        return data

    def check(self) -> None:
        """Every option checked before any work: bad input is one line, nothing is written."""
        if not (0.0 < self.macs_ratio <= 1.0) or math.isnan(self.macs_ratio):
            raise FlexdiffError(f"--macs-ratio {self.macs_ratio}", "a ratio in (0, 1] of the teacher's MACs", "e.g. --macs-ratio 0.5")
        if self.params_ratio is not None and not (0.0 < self.params_ratio <= 1.0):
            raise FlexdiffError(f"--params-ratio {self.params_ratio}", "a ratio in (0, 1] of the teacher's parameters", "e.g. --params-ratio 0.5, or drop it")
        if not (self.minutes > 0) or not math.isfinite(self.minutes * 60):
            raise FlexdiffError(f"--minutes {self.minutes}", "a positive time budget in minutes", "e.g. --minutes 40")
        if self.fid_n != 0 and self.fid_n < 2:
            raise FlexdiffError(f"--fid-n {self.fid_n}", "0 (no FID) or at least 2 images", "e.g. --fid-n 1000")
        if self.record_n < 1 or self.val_n < 1 or self.batch_size < 1:
            raise FlexdiffError(f"--record-n {self.record_n} / val {self.val_n} / batch {self.batch_size}", "positive counts", "pass positive numbers")
        for name, value in (("--distill-steps", self.distill_steps), ("--retrain-steps", self.retrain_steps)):
            if value is not None and value < 1:
                raise FlexdiffError(f"{name} {value}", "at least 1 step (or leave it out: derived from --minutes)", f"fix {name}")
        AlphaSchedule.parse(self.alpha)
        if self.out.exists() and not self.out.is_dir():
            raise FlexdiffError(self.out, "a run folder (it is a file)", "pass another --out")


def _key(*parts: Any) -> str:
    """A short digest of everything that determines a phase's output."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@dataclass
class Run:
    """One compress run: the loaded teacher, the data, the run folder's state, and the clock."""

    config: CompressConfig
    teacher: Any  # DiffusionModel
    images: torch.Tensor
    specs: tuple[BlockSpec, ...]
    start: float = field(default_factory=time.monotonic)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.config.out

    @property
    def deadline(self) -> float:
        return self.start + self.config.minutes * 60.0

    def save_state(self) -> None:
        # the run's clock: a resumed process continues it (prepare starts its Run that much earlier), so --minutes stays the budget of the whole run
        self.state["elapsed_seconds"] = round(time.monotonic() - self.start, 2)
        _write_json(self.out / "state.json", self.state)

    def phase_done(self, name: str, key: str) -> bool:
        entry = self.state.setdefault("phases", {}).get(name)
        return bool(entry and entry.get("key") == key and entry.get("done"))

    def mark(self, name: str, key: str, seconds: float, done: bool = True, **extra: Any) -> None:
        self.state.setdefault("phases", {})[name] = {"key": key, "done": done, "seconds": round(seconds, 2), **extra}
        self.save_state()

    def planned(self, name: str, given: dict[str, Any]) -> int | None:
        """A step count resolved by an earlier process of this run for the same inputs (or None)."""
        entry = self.state.setdefault("plan", {}).get(name)
        return int(entry["value"]) if entry and entry.get("given") == given else None

    def plan(self, name: str, given: dict[str, Any], value: int) -> int:
        self.state.setdefault("plan", {})[name] = {"given": given, "value": int(value)}
        self.save_state()
        return int(value)

    def step_count(self, name: str, explicit: int | None, given: dict[str, Any], measure: Callable[[], int]) -> int:
        """The user's explicit count, else the one an earlier process planned for the same inputs, else ``measure()``
        (timing probes), stored so that a resumed run computes the same numbers."""
        if explicit is not None:
            return explicit
        planned = self.planned(name, given)
        return planned if planned is not None else self.plan(name, given, measure())


def prepare(config: CompressConfig) -> Run:
    """Check every option, load the teacher and the data, check they fit; no file is written yet."""
    from flexdiff.data import load_images
    from flexdiff.features import get_feature_network
    from flexdiff.models import load_model

    config.check()
    teacher = load_model(config.model, config.device)
    specs = block_specs(teacher.unet)
    if teacher.conditioning is not None:
        raise FlexdiffError(config.model, "an unconditional pixel UNet2DModel", "compress supports unconditional pixel models")
    images = load_images(config.data)
    if tuple(images.shape[1:]) != tuple(teacher.sample_shape):
        raise FlexdiffError(f"--data {config.data}", f"images shaped {tuple(teacher.sample_shape)} like the model's samples (got {tuple(images.shape[1:])})", "pass training images of the model's size and channels")
    floor_macs, floor_params, teacher_macs, teacher_params = smallest_student(teacher.unet, specs, teacher.sample_shape)
    for option, what, ratio, floor, full in (("--macs-ratio", "MACs", config.macs_ratio, floor_macs, teacher_macs), ("--params-ratio", "parameters", config.max_params_ratio, floor_params, teacher_params)):
        if ratio * full < floor:
            raise FlexdiffError(f"{option} {ratio}", f"at least {floor / full:.3f}: the smallest student of the search space has {floor / full:.1%} of the teacher's {what}", f"raise {option}")
    if config.fid_n and config.reference_set is not None:
        load_images(config.reference_set)
        get_feature_network(config.features, "cpu")
    state = _read_json(config.out / "state.json") if (config.out / "state.json").is_file() else None
    state = state if isinstance(state, dict) else {}
    elapsed = float(state.get("elapsed_seconds", 0.0))  # time the earlier processes of this run already spent
    return Run(config, teacher, images, specs, start=time.monotonic() - elapsed, state=state)


# --------------------------------------------------------------------------------------------------- phases


def _record_key(run: Run) -> str:
    c = run.config
    return _key("record", _weights_key(run.teacher.unet), c.data, len(run.images), float(run.images.sum()), c.seed, c.record_n, c.val_n)


def _weights_key(unet: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(unet.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def phase_record(run: Run) -> tuple[Records, str]:
    from flexdiff.progress import progress_bar

    c, path = run.config, run.out / "records.safetensors"
    key = _record_key(run)
    if run.phase_done("record", key) and path.is_file():
        records, meta = Records.load(path)
        if meta.get("key") == key:
            return records, key
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
    x = torch.randn((batch, *run.teacher.sample_shape)).to(run.teacher.device)
    call = _seconds_per_step(lambda n: [run.teacher.eps(x, 500) for _ in range(n)], steps=1)
    calls = FID_STEPS * math.ceil(c.fid_n / batch)
    return calls * call * (1.0 + 1.5 * c.macs_ratio) + 15.0  # student calls cost more per MAC (element-wise work)


def _seconds_per_step(run_steps: Any, steps: int = 3, repeats: int = 3) -> float:
    """Seconds per step of ``run_steps(n)``: the fastest of ``repeats`` timings of ``steps`` steps, after one warm-up
    step (kernel selection, allocations).

    The minimum, because a moment of contention from another process (a test, an editor's indexer) on a 2-core machine
    once made a single timing 2.5x slow and cost a 40-minute run most of its distillation; set-up costs (optimiser, EMA
    copy) are still counted in, which errs on the safe side of the time budget.
    """
    run_steps(1)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run_steps(steps)
        timings.append((time.perf_counter() - started) / steps)
    return min(timings)


def _distill_steps(run: Run, records: Records, supernets: dict[str, BlockSupernet], record_key: str) -> int:
    c = run.config

    def measure() -> int:
        reserve = _fid_reserve(run)
        budget = DISTILL_SHARE * max(run.deadline - time.monotonic() - reserve - MARGIN_SECONDS, 0.0)
        gen = torch.Generator().manual_seed(c.seed + 99)
        per_step = 0.0
        for spec in run.specs:  # a throwaway copy of each supernet: the probe must not change the trained weights
            probe = copy.deepcopy(supernets[spec.name])
            per_step += _seconds_per_step(lambda n: train_supernet(probe, run.teacher.unet, records, n, gen, c.distill_lr, c.batch_size))
        run.state.setdefault("plan", {})["fid_reserve_seconds"] = round(reserve, 1)
        return max(int(budget / max(per_step, 1e-6)), 1)

    given = {"record": record_key, "minutes": c.minutes, "macs_ratio": c.macs_ratio, "fid_n": c.fid_n}
    return run.step_count("distill_steps", c.distill_steps, given, measure)


def phase_distill(run: Run, records: Records, record_key: str) -> tuple[dict[str, BlockSupernet], str, dict[str, list[float]]]:
    from safetensors.torch import load_file, save_file

    from flexdiff.progress import progress_bar

    c = run.config
    unet = run.teacher.unet
    supernets = {s.name: BlockSupernet(block_module(unet, s), s) for s in run.specs}
    steps = _distill_steps(run, records, supernets, record_key)
    key = _key("distill", record_key, steps, c.distill_lr, c.batch_size, c.seed)
    folder = run.out / "blocks"
    folder.mkdir(exist_ok=True)
    entry = run.state.get("phases", {}).get("distill") or {}
    histories: dict[str, list[float]] = dict(entry.get("histories", {})) if entry.get("key") == key else {}
    seconds = _phase_seconds(run, "distill", key)
    for b, spec in enumerate(run.specs):
        path = folder / f"{spec.name}.safetensors"
        if path.is_file() and _safetensors_meta(path).get("key") == key:  # trained by an earlier process
            supernets[spec.name].load_state_dict(load_file(str(path)))
            supernets[spec.name].eval().requires_grad_(False)
            continue
        started = time.monotonic()
        gen = torch.Generator().manual_seed((c.seed * 1000 + 17 + b) % 2**64)  # per block: a resumed block draws the same rows (any 64-bit --seed)
        with progress_bar(f"2/5 distilling {spec.name}", steps, enabled=c.progress) as advance:
            losses = train_supernet(supernets[spec.name], unet, records, steps, gen, c.distill_lr, c.batch_size, on_step=lambda s, loss: advance(1, f"loss {loss:.4f}"))
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in supernets[spec.name].state_dict().items()}, str(tmp), metadata={"key": key})
        tmp.replace(path)
        histories[spec.name] = [round(sum(losses[i:i + 25]) / len(losses[i:i + 25]), 5) for i in range(0, len(losses), 25)]
        seconds += time.monotonic() - started
        run.mark("distill", key, seconds, done=False, histories=histories, steps=steps)
    run.mark("distill", key, seconds, histories=histories, steps=steps)
    return supernets, key, histories


def _phase_seconds(run: Run, name: str, key: str) -> float:
    entry = run.state.get("phases", {}).get(name) or {}
    return float(entry.get("seconds", 0.0)) if entry.get("key") == key else 0.0


def _safetensors_meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # a truncated file from a killed write is simply redone
        return {}


def _costs(run: Run, records: Records, supernets: dict[str, BlockSupernet]) -> dict[str, UnitCosts]:
    unet = run.teacher.unet
    example = records.rows(slice(0, 1), run.teacher.device)
    return {s.name: unit_costs(supernets[s.name], block_module(unet, s), block_inputs(unet, s, example)) for s in run.specs}


def teacher_cost(model: Any) -> tuple[int, int]:
    """(MACs per sample of one full step, parameters) of a model."""
    from flexdiff.cost import count_macs

    x = torch.zeros((1, *model.sample_shape), device=model.device)
    t = model.noise.num_train_timesteps // 2  # inside the model's range (MACs do not depend on t)
    return int(count_macs(lambda: model.eps(x, t))), int(model.num_parameters)


def phase_search(run: Run, records: Records, supernets: dict[str, BlockSupernet], distill_key: str) -> tuple[Architecture, dict[str, Any], str]:
    """Score every candidate (once per distillation), then combine the per-block fronts under the budget."""
    from flexdiff.progress import progress_bar

    c = run.config
    unet = run.teacher.unet
    scores_path = run.out / "scores.json"
    scores = _read_json(scores_path) if scores_path.is_file() else None
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
                    {"widths": list(ch.widths), "attention": ch.attention, "macs": costs[spec.name].macs(ch, spec), "params": costs[spec.name].params(ch, spec), "loss": round(loss, 6)}
                    for ch, loss in zip(choices, losses)
                ]
        scores = {"key": distill_key, "blocks": blocks, "seconds": round(time.monotonic() - started, 2)}
        _write_json(scores_path, scores)
    teacher_macs, teacher_params = teacher_cost(run.teacher)
    full = {s.name: next(r for r in scores["blocks"][s.name] if tuple(r["widths"]) == s.groups and r["attention"] == s.has_attention) for s in run.specs}
    stem_macs = teacher_macs - sum(r["macs"] for r in full.values())
    stem_params = teacher_params - sum(r["params"] for r in full.values())
    fronts = [pareto_front([Candidate(s.name, i, r["macs"], r["params"], r["loss"]) for i, r in enumerate(scores["blocks"][s.name])]) for s in run.specs]
    picked = combine(fronts, c.macs_ratio * teacher_macs - stem_macs, c.max_params_ratio * teacher_params - stem_params)
    arch = Architecture(tuple((s.name, BlockChoice(tuple(scores["blocks"][s.name][p.index]["widths"]), scores["blocks"][s.name][p.index]["attention"])) for s, p in zip(run.specs, picked)))
    rows = []
    for s, p in zip(run.specs, picked):
        r = scores["blocks"][s.name][p.index]
        rows.append({"block": s.name, "choice": arch[s.name].label(s), "widths": r["widths"], "attention": r["attention"], "macs": r["macs"], "params": r["params"], "teacher_macs": full[s.name]["macs"], "teacher_params": full[s.name]["params"], "loss": r["loss"], "front_size": len(fronts[run.specs.index(s)])})
    summary = {
        "blocks": rows, "stem": {"macs": stem_macs, "params": stem_params}, "teacher": {"macs": teacher_macs, "params": teacher_params},
        "predicted": {"macs": stem_macs + sum(r["macs"] for r in rows), "params": stem_params + sum(r["params"] for r in rows)},
        "summed_loss": round(sum(r["loss"] for r in rows), 6), "architecture": arch.to_json(),
    }
    key = _key("search", distill_key, c.macs_ratio, c.max_params_ratio)
    _write_json(run.out / "search.json", {"key": key, **summary})
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
            retrain(probe, run.teacher.unet, run.specs, run.teacher.noise, run.images, scales, probe_config, None, {})

        per_step = _seconds_per_step(run_steps)
        budget = max(run.deadline - time.monotonic() - reserve - MARGIN_SECONDS, 0.0)
        return max(int(0.97 * budget / max(per_step, 1e-6)), 1)

    given = {"search": search_key, "minutes": c.minutes, "alpha": c.alpha, "fid_n": c.fid_n}
    return run.step_count("retrain_steps", c.retrain_steps, given, measure)


def phase_retrain(run: Run, records: Records, supernets: dict[str, BlockSupernet], arch: Architecture, search_key: str) -> tuple[Path, list[dict[str, Any]], str, bool]:
    from flexdiff.progress import progress_bar

    c = run.config
    scales = {k[6:]: float(v) for k, v in records.data.items() if k.startswith("scale.")}
    reserve = run.state.get("plan", {}).get("fid_reserve_seconds")
    reserve = _fid_reserve(run) if reserve is None else float(reserve)
    student = assemble(run.teacher.unet, run.specs, supernets, arch)
    steps = _retrain_steps(run, student, scales, search_key, reserve)
    alpha = AlphaSchedule.parse(c.alpha)
    key = _key("retrain", search_key, str(alpha), steps, c.retrain_lr, c.batch_size, c.seed)
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
            student, run.teacher.unet, run.specs, run.teacher.noise, run.images, scales, config, checkpoint, {"key": key},
            on_step=lambda s, row: advance(1, f"loss {row['loss']:.4f} alpha {row['alpha']:.2f}"),
            deadline=None if c.retrain_steps else run.deadline - reserve - MARGIN_SECONDS / 3,  # explicit --retrain-steps: exactly that many
            on_checkpoint=lambda step: run.mark("retrain", key, before + time.monotonic() - started, done=False, step=step, steps=steps),
        )
    card = {"teacher": c.model, "method": "DiffNAS block-wise distillation + dynamic joint loss (flexdiff compress)", "alpha": str(alpha), "retrain_steps": steps, "seed": c.seed}
    save_student(ema.cpu(), arch, student_dir, run.teacher.scheduler_config, card)
    run.mark("retrain", key, before + time.monotonic() - started, history=history, cut=cut, steps=steps)
    return student_dir, history, key, cut


def _checkpoint_step(checkpoint: Checkpoint, key: str) -> int:
    meta = _read_json(checkpoint.meta) if checkpoint.meta.is_file() else None
    return int(meta["step"]) if isinstance(meta, dict) and meta.get("fingerprint") == {"key": key} else 0


def phase_fid(run: Run, student: Any, retrain_key: str) -> dict[str, float | None]:
    """FID of the teacher and the student: DDIM-50 from the same seed, ``--fid-n`` images vs the reference set."""
    from flexdiff.data import load_images, save_grid
    from flexdiff.metrics import fid
    from flexdiff.sampling import sample

    c = run.config
    reference = c.reference_set
    if not c.fid_n or reference is None:
        return {"teacher": None, "student": None}
    path = run.out / "fid.json"
    cached = _read_json(path) if path.is_file() else None
    cached = cached if isinstance(cached, dict) else {}
    teacher_key = _key("fid-teacher", _weights_key(run.teacher.unet), c.fid_n, reference, c.features, c.seed)
    student_key = _key("fid-student", retrain_key, c.fid_n, reference, c.features, c.seed)
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
        _write_json(path, cached)
        if name == "student":
            save_grid(run.out / "student_samples.png", images[:64])
    run.mark("fid", _key(teacher_key, student_key), time.monotonic() - started + _phase_seconds(run, "fid", _key(teacher_key, student_key)))
    return result


# --------------------------------------------------------------------------------------------------- the job


def compress(config: CompressConfig, run: Run | None = None) -> dict[str, Any]:
    """Run (or resume) every phase; returns the ``results.json`` content (also written to ``OUT/results.json``)."""
    from flexdiff.models import load_model

    run = run or prepare(config)
    c = run.config
    output_folder(c.out)
    run.state["config"] = c.to_json()
    run.save_state()
    records, record_key = phase_record(run)
    supernets, distill_key, histories = phase_distill(run, records, record_key)
    arch, summary, search_key = phase_search(run, records, supernets, distill_key)
    student_dir, history, retrain_key, cut = phase_retrain(run, records, supernets, arch, search_key)
    student = load_model(student_dir, run.teacher.device)  # the saved folder, loaded like any model
    student_macs, student_params = teacher_cost(student)
    fids = phase_fid(run, student, retrain_key)
    phases = run.state.get("phases", {})
    results = {
        "kind": "compress",
        "config": {k: v for k, v in c.to_json().items() if k not in ("progress", "command")} | {"distill_steps_per_block": phases.get("distill", {}).get("steps"), "retrain_steps": phases.get("retrain", {}).get("steps"), "params_ratio": c.max_params_ratio, "reference": c.reference_set},
        "command": list(c.command),
        "blocks": [{k: r[k] for k in ("block", "choice", "macs", "params", "teacher_macs", "teacher_params", "loss", "widths", "attention")} for r in summary["blocks"]],
        "stem": summary["stem"],
        "teacher": {"macs": summary["teacher"]["macs"], "params": summary["teacher"]["params"], "fid": fids["teacher"]},
        "student": {
            "macs": student_macs, "params": student_params, "fid": fids["student"], "path": str(student_dir),
            "macs_ratio": round(student_macs / summary["teacher"]["macs"], 4), "params_ratio": round(student_params / summary["teacher"]["params"], 4),
            "predicted_macs": summary["predicted"]["macs"], "predicted_params": summary["predicted"]["params"],
        },
        "search": {"summed_loss": summary["summed_loss"], "front_sizes": {r["block"]: r["front_size"] for r in summary["blocks"]}},
        "distill": {"history": histories},
        "retrain": {"history": history, "alpha": str(AlphaSchedule.parse(c.alpha)), "cut_by_deadline": cut},
        "seconds": {p: phases.get(p, {}).get("seconds") for p in PHASES} | {"this_process": round(time.monotonic() - run.start, 1)},
    }
    _write_json(c.out / "results.json", results)
    return results
