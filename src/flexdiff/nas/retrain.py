"""Phase 4: retraining the assembled student with DiffNAS's dynamic joint loss.

At retraining progress ``s = step / steps`` in [0, 1], on a batch of ``x_t`` from training images (DDPM forward
process, uniform t) the loss is::

    alpha(s) * (1/B) sum_blocks relative_loss(student block outputs, teacher block outputs)
      + (1 - alpha(s)) * ( ||eps_student - eps_teacher||^2 + ||eps_student - eps||^2 )

Block outputs are taken along the student's own forward pass (each block sees the student's previous blocks), so the
feature term gives every block a direct, short-path objective while the whole network is trained end to end; the
second term is output distillation to the teacher's noise prediction (a low-variance target) plus the plain denoising
loss (which keeps the student tied to the data, not only to the teacher). The block term is normalised per output by
the teacher's output power (the same normaliser as the block-wise search, so retraining continues the objective the
blocks were chosen on). It is averaged over the B blocks rather than summed: a relative loss is a mean squared error
divided by the target's power, and eps has unit power, so the averaged block term and the eps terms are on one scale
and alpha alone sets their balance (with a plain sum the block term would weigh B = 7 times more at equal error).

``alpha`` schedules (``--alpha``):

- ``dynamic`` (default): cosine from 1 to 0, ``alpha(s) = (1 + cos(pi s)) / 2``. Early on the student mostly keeps
  matching the teacher block by block (the objective its blocks were distilled with, so retraining starts where the
  supernet left off); it ends on the output losses alone, which are what sampling quality depends on.
- ``dynamic:START,END``: cosine from ``START`` to ``END``, ``alpha(s) = END + (START - END) (1 + cos(pi s)) / 2``.
- ``constant:X``: ``alpha = X`` throughout (the ablation).

Optimiser: AdamW, linear warm-up then cosine decay to zero; the student's EMA weights (decay warmed up like the
teacher's recipe) are what is saved. Checkpoints (student, EMA, optimiser, RNG state, history) go to safetensors +
JSON every ``checkpoint_seconds`` so a killed retraining resumes from its last checkpoint with the same numbers.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flexdiff.errors import FlexdiffError
from flexdiff.models.student import BlockSpec
from flexdiff.nas.blocks import capture, output_keys, relative_loss
from flexdiff.noise import NoiseSchedule
from flexdiff.utils.io import atomic_path, read_json_or_none, read_tensors, state_mismatch
from flexdiff.utils.training import ema_update, warmup_cosine


@dataclass(frozen=True)
class AlphaSchedule:
    """``alpha(s)`` for retraining progress ``s`` in [0, 1]: ``dynamic[:START,END]`` (cosine START -> END, default
    1 -> 0) or ``constant:X``."""

    kind: str  # dynamic | constant
    start: float = 1.0  # constant: alpha throughout
    end: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "AlphaSchedule":
        kind, colon, numbers = text.partition(":")
        try:
            values = [float(x) for x in numbers.split(",")] if numbers else []
        except ValueError:
            values = [float("nan")]
        if all(0.0 <= v <= 1.0 for v in values):  # NaN fails too
            if kind == "dynamic" and not colon:
                return cls("dynamic")
            if kind == "dynamic" and len(values) == 2 and values[0] >= values[1]:
                return cls("dynamic", values[0], values[1])
            if kind == "constant" and len(values) == 1:
                return cls("constant", values[0], values[0])
        raise FlexdiffError(
            f"--alpha {text}", "dynamic, dynamic:START,END (1 >= START >= END >= 0) or constant:X (X in [0, 1])", "e.g. --alpha dynamic or --alpha constant:0.5"
        )

    def __call__(self, s: float) -> float:
        if self.kind == "constant":
            return self.start
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * min(max(s, 0.0), 1.0)))

    def __str__(self) -> str:
        if self.kind == "constant":
            return f"constant:{self.start:g}"
        return "dynamic" if (self.start, self.end) == (1.0, 0.0) else f"dynamic:{self.start:g},{self.end:g}"


@dataclass(frozen=True)
class RetrainConfig:
    steps: int
    alpha: AlphaSchedule
    lr: float = 5e-4
    warmup_steps: int = 100
    batch_size: int = 64
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 25
    checkpoint_seconds: float = 60.0


class Checkpoint:
    """Retraining state on disk: ``checkpoint.safetensors`` (tensors) + ``checkpoint.json`` (step, history), atomic."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tensors, self.meta = folder / "checkpoint.safetensors", folder / "checkpoint.json"

    def exists(self) -> bool:
        return self.tensors.is_file() and self.meta.is_file()

    def save(
        self,
        student: nn.Module,
        ema: nn.Module,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        step: int,
        history: list[dict[str, Any]],
        fingerprint: dict[str, Any],
    ) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"student.{k}": v.detach().contiguous() for k, v in student.state_dict().items()}
        tensors.update({f"ema.{k}": v.detach().contiguous() for k, v in ema.state_dict().items()})
        state = opt.state_dict()
        for i, s in state["state"].items():
            for name, value in s.items():
                tensors[f"opt.{i}.{name}"] = value.detach().reshape(-1).contiguous() if value.ndim == 0 else value.detach().contiguous()
        tensors["rng"] = gen.get_state()
        tensors["step"] = torch.tensor([step])  # matched against the JSON: a kill between the two writes is detected
        meta = {"step": step, "history": history, "fingerprint": fingerprint, "param_groups": state["param_groups"]}
        with atomic_path(self.meta) as tmp_meta, atomic_path(self.tensors) as tmp:  # renamed at the end, the tensors first
            save_file(tensors, str(tmp))
            tmp_meta.write_text(json.dumps(meta) + "\n")

    def load(
        self, student: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, fingerprint: dict[str, Any]
    ) -> tuple[tuple[int, list[dict[str, Any]]] | None, str]:
        """Restore into the given objects: ``((step, history), "")``; ``(None, "")`` when there is no checkpoint of this
        very retraining (or a kill fell between its two writes); ``(None, why)`` when it is damaged (unreadable,
        tensors of other names or shapes). Everything is checked before anything is restored, so a refused
        checkpoint leaves the objects as they were and retraining starts from step 0."""
        if not self.exists():
            return None, ""
        meta = read_json_or_none(self.meta)
        if not isinstance(meta, dict) or meta.get("fingerprint") != fingerprint:
            return None, ""
        tensors, _, why = read_tensors(self.tensors)
        if why:
            return None, why
        if "step" not in tensors or tensors["step"].numel() != 1 or int(tensors["step"][0]) != meta.get("step"):
            return None, ""
        student_state = {k[8:]: v for k, v in tensors.items() if k.startswith("student.")}
        ema_state = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        params = [p for group in opt.param_groups for p in group["params"]]
        state: dict[str, Any] = {"state": {}, "param_groups": meta.get("param_groups")}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state["state"].setdefault(int(i) if i.isdigit() else -1, {})[name] = v.reshape(()) if name == "step" else v
        moments = {f"opt.{i}.{name}": (v, params[i]) for i, s in state["state"].items() if 0 <= i < len(params) for name, v in s.items() if name != "step"}
        why = (
            state_mismatch(student.state_dict(), student_state)
            or state_mismatch(ema.state_dict(), ema_state)
            or (
                "optimiser state of other parameters"
                if any(not 0 <= i < len(params) for i in state["state"])
                or any(v.shape != p.shape for v, p in moments.values())
                or not _same_groups(state["param_groups"], opt)
                else ""
            )
            or ("history that is not a list" if not isinstance(meta.get("history"), list) else "")
            or ("random state of another size" if "rng" not in tensors or tensors["rng"].shape != gen.get_state().shape else "")
        )
        if why:
            return None, why
        student.load_state_dict(student_state)
        ema.load_state_dict(ema_state)
        opt.load_state_dict(state)
        gen.set_state(tensors["rng"])
        return (int(meta["step"]), list(meta["history"])), ""


def _same_groups(groups: Any, opt: torch.optim.Optimizer) -> bool:
    """Saved ``param_groups`` that ``opt.load_state_dict`` accepts: as many groups, each with as many parameters."""
    return (
        isinstance(groups, list)
        and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
        and [len(g["params"]) for g in groups] == [len(g["params"]) for g in opt.param_groups]
    )


def denoising_target(prediction_type: str, x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """What the UNet is trained to output for ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` in the teacher's own
    parameterisation (its scheduler's ``prediction_type``), so the plain denoising term agrees with the output
    distillation term instead of pulling a v-prediction student towards eps."""
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":  # v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022)
        return a.sqrt() * eps - (1 - a).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def retrain(
    student: nn.Module,
    teacher: nn.Module,
    specs: tuple[BlockSpec, ...],
    noise: NoiseSchedule,
    images: torch.Tensor,
    scales: dict[str, float],
    config: RetrainConfig,
    checkpoint: Checkpoint | None,
    fingerprint: dict[str, Any],
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    deadline: float | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> tuple[nn.Module, list[dict[str, Any]], bool]:
    """Retrain ``student`` in place; returns (EMA student, history, whether the deadline cut it short)."""
    device = next(teacher.parameters()).device
    gen = torch.Generator().manual_seed(config.seed + 1)
    student.to(device).train().requires_grad_(True)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    steps = config.steps
    lr_at = lambda s: warmup_cosine(s, steps, config.warmup_steps)  # noqa: E731
    restored, why = checkpoint.load(student, ema, opt, gen, fingerprint) if checkpoint is not None else (None, "")
    if why:  # damaged: retrained from the start, never trusted and never fatal
        print(f"warning: {checkpoint.tensors}: {why}; retraining from step 0", file=sys.stderr)
    step, history = restored if restored is not None else (0, [])
    first = step
    keys = {s.name: output_keys(student, s) for s in specs}
    abar = noise.alphas_cumprod
    last_save, cut = time.monotonic(), False
    window: dict[str, list[float]] = {}
    with capture(student, specs) as s_out, capture(teacher, specs) as t_out:
        while step < steps:
            if deadline is not None and time.monotonic() > deadline:
                cut = True
                break
            for group in opt.param_groups:
                group["lr"] = config.lr * lr_at(step)
            alpha = config.alpha(step / steps)
            x0 = images[torch.randint(0, len(images), (config.batch_size,), generator=gen)]
            t = torch.randint(0, noise.num_train_timesteps, (config.batch_size,), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)  # drawn on the CPU: the same numbers on any device
            a = abar[t].view(-1, 1, 1, 1)
            x_t, t, eps = (a.sqrt() * x0 + (1 - a).sqrt() * eps).to(device), t.to(device), eps.to(device)  # (B, C, H, W)
            with torch.no_grad():
                eps_teacher = teacher(x_t, t).sample
            eps_student = student(x_t, t).sample
            feature = torch.stack(
                [relative_loss([s_out[k] for k in keys[s.name]], [t_out[k] for k in keys[s.name]], [scales[k] for k in keys[s.name]]) for s in specs]
            ).mean()
            output = F.mse_loss(eps_student, eps_teacher)
            data = F.mse_loss(eps_student, denoising_target(noise.prediction_type, x0.to(device), eps, a.to(device)))
            loss = alpha * feature + (1 - alpha) * (output + data) if alpha < 1 else feature
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            step += 1
            ema_update(ema, student, step, config.ema_decay)
            for name, value in (("loss", loss), ("feature", feature), ("output", output), ("data", data)):
                window.setdefault(name, []).append(float(value.detach()))
            if step % config.log_every == 0 or step == steps:
                row = {"step": step, "alpha": round(alpha, 5), "lr": config.lr * lr_at(step - 1), **{k: sum(v) / len(v) for k, v in window.items()}}
                history.append({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
                window.clear()
            if on_step is not None:
                on_step(step, {"loss": float(loss.detach()), "alpha": alpha})
            if (
                checkpoint is not None and step % config.log_every == 0 and time.monotonic() - last_save > config.checkpoint_seconds
            ):  # at log rows: resumes log the same history
                checkpoint.save(student, ema, opt, gen, step, history, fingerprint)
                last_save = time.monotonic()
                if on_checkpoint is not None:
                    on_checkpoint(step)
    if checkpoint is not None and step > first:  # a finished checkpoint that was only reloaded stays as it is
        checkpoint.save(student, ema, opt, gen, step, history, fingerprint)
    student.eval().requires_grad_(False)
    return ema, history, cut
