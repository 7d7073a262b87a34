"""Training recipes for the built-in assets: the ``digits`` teacher UNet and the ``digits`` feature classifier.

Both are reproducible from one seed: the same ``--seed`` and ``--steps`` give the same weights on the same machine.
``--minutes`` only caps wall time (the model card then records the step count reached, which reproduces it).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from flexdiff.data import digits
from flexdiff.features import DigitsClassifier
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, save_model
from flexdiff.noise import NoiseSchedule

#: Architecture of ``builtin:digits``: two downsamplings (16 -> 8 -> 4), attention at 8x8 and 4x4, two resnets per
#: down block (so partial steps have 3 x 3 = 9 skip branches), about 1.0 M parameters.
#: The 16x16 level is kept narrow (16 channels): it dominates the convolution cost on a CPU.
TEACHER_CONFIG = dict(
    sample_size=16,
    in_channels=1,
    out_channels=1,
    block_out_channels=(16, 32, 64),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=16,
    norm_num_groups=8,
)


@dataclass(frozen=True)
class TeacherRecipe:
    seed: int = 0
    steps: int = 8000
    minutes: float | None = None
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    ema_decay: float = 0.999
    weight_decay: float = 0.0


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)


def train_teacher(
    out: Path,
    recipe: TeacherRecipe,
    images: torch.Tensor | None = None,
    on_step: Callable[[int, float], None] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float | int]:
    """DDPM training (Ho et al. 2020, Alg. 1: eps-prediction MSE, uniform t over 1000 steps) with EMA weights.

    Saves the EMA UNet as a diffusers pipeline folder in ``out``; returns steps, wall time and final loss.
    """
    from diffusers import UNet2DModel

    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    data = digits("train")[0] if images is None else images
    unet = UNet2DModel(**TEACHER_CONFIG).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise = NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG)
    abar = noise.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    # linear warm-up, then cosine decay to zero at `steps` (a --minutes cap may stop earlier; the card says where)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / recipe.warmup_steps, 0.5 * (1 + math.cos(math.pi * min(s, recipe.steps) / recipe.steps))))
    start, losses, step = time.monotonic(), [], 0
    deadline = start + recipe.minutes * 60 if recipe.minutes else None
    unet.train()
    while step < recipe.steps and (deadline is None or time.monotonic() < deadline):
        idx = torch.randint(0, len(data), (recipe.batch_size,), generator=gen)
        x0 = data[idx]
        t = torch.randint(0, noise.num_train_timesteps, (recipe.batch_size,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)  # drawn on the CPU: the same numbers on any device
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps  # q(x_t | x_0), eq. 4
        loss = F.mse_loss(unet(xt.to(device), t.to(device)).sample, eps.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        _ema_update(ema, unet, min(recipe.ema_decay, (1 + step) / (10 + step)))
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    tail = losses[-500:]
    stats = {"steps": step, "wall_seconds": round(time.monotonic() - start, 1), "final_loss": round(sum(tail) / max(len(tail), 1), 5)}
    save_model(ema.eval().cpu(), out, DEFAULT_SCHEDULER_CONFIG)
    (out / "training.json").write_text(json.dumps({"recipe": asdict(recipe), "architecture": TEACHER_CONFIG, **stats}, indent=2) + "\n")
    return stats


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to one pixel (augmentation for the classifier)."""
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
    return torch.roll(F.pad(x, (1, 1, 1, 1), value=-1.0), shifts=(dy, dx), dims=(2, 3))[..., 1:-1, 1:-1]


def train_classifier(out: Path, seed: int = 0, epochs: int = 40, on_epoch: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """Train the ``digits`` feature network on the train split; report held-out accuracy; save as safetensors."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = digits("train")
    xh, yh = digits("heldout")
    net = DigitsClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            b = perm[i : i + 64]
            loss = F.cross_entropy(net(_shift(x[b], gen)), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, float(loss))
    net.eval()
    with torch.no_grad():
        acc = float((net(xh).argmax(1) == yh).float().mean())
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    return {"heldout_accuracy": round(acc, 4), "epochs": epochs, "seed": seed}
