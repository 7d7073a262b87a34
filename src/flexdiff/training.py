"""Training recipes for the built-in assets: the ``digits`` teachers (a DDPM UNet, ``builtin:digits``, and a rectified-flow
DiT, ``builtin:digits-dit``) and the ``digits`` feature classifier.

Both are reproducible from one seed: the same ``--seed`` and ``--steps`` give the same weights on the same machine.
``--minutes`` only caps wall time, and ``training.json`` records the step count reached. A run the cap cut short is
*not* reproduced by passing that count as ``--steps``: the learning rate's cosine decay spans ``--steps``, so a shorter
``--steps`` is a different schedule. Its weights come back only from the same ``--seed`` and ``--steps`` stopped at the
same step (on a machine as fast, under the same cap). A run that reached ``--steps`` (the shipped teacher's did) is
reproduced by ``--seed`` and ``--steps`` alone.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from flexdiff.data import digits
from flexdiff.errors import FlexdiffError, output_folder, unwritable
from flexdiff.measuring.features import DigitsClassifier
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, save_model
from flexdiff.noise import NoiseSchedule
from flexdiff.utils.io import atomic_path, write_json
from flexdiff.utils.training import ema_update, warmup_cosine


@functools.cache
def _ddpm_noise() -> NoiseSchedule:
    return NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG)


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


#: Architecture of ``builtin:digits-dit``: a class-conditional ``DiTTransformer2DModel`` (adaLN-Zero, Peebles & Xie 2023)
#: on 2x2 patches of the 16x16 digits (64 tokens), 6 blocks of width 128: 2.1 M parameters, so partial(F, B) steps
#: have 21 branches (F, B >= 0, F + B <= 5).
DIT_TEACHER_CONFIG = dict(
    num_attention_heads=4,
    attention_head_dim=32,
    in_channels=1,
    out_channels=1,
    num_layers=6,
    sample_size=16,
    patch_size=2,
    num_embeds_ada_norm=10,  # DiT's class embedding: the ten digits
)
#: The rectified-flow schedule of ``builtin:digits-dit`` (diffusers' FlowMatchEulerDiscreteScheduler, no shift: 16x16 pixels).
FLOW_SCHEDULER_CONFIG: dict[str, object] = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0}
#: Teacher architectures ``flexdiff train --arch`` builds, and the peak learning rate each was trained with.
ARCHITECTURES = ("unet", "dit")
DEFAULT_LR = {"unet": 1e-3, "dit": 5e-4}


@dataclass(frozen=True)
class TeacherRecipe:
    """The teacher's hyper-parameters; ``steps``, ``minutes`` and ``arch`` are checked here, before any training starts.

    ``arch="unet"``: DDPM epsilon-prediction (``builtin:digits``); ``arch="dit"``: rectified flow (``builtin:digits-dit``)."""

    seed: int = 0
    steps: int = 8000
    minutes: float | None = None
    batch_size: int = 64
    lr: float | None = None  # peak learning rate; None: the architecture's (DEFAULT_LR)
    warmup_steps: int = 200
    ema_decay: float = 0.999
    weight_decay: float = 0.0
    arch: str = "unet"

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise FlexdiffError(f"--arch {self.arch}", f"one of {', '.join(ARCHITECTURES)}", "pass --arch unet (DDPM) or --arch dit (rectified flow)")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.arch])
        if self.steps < 1:
            raise FlexdiffError(f"--steps {self.steps}", "--steps >= 1", "pass a positive number of optimizer steps")
        # -1 saved an untrained model and 0 meant "no limit"; NaN / inf are no cap a user means either
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise FlexdiffError(f"--minutes {self.minutes}", "a finite wall-time cap > 0 minutes", "pass e.g. --minutes 30, or drop --minutes for no cap")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the architecture is built for."""
        config = TEACHER_CONFIG if self.arch == "unet" else DIT_TEACHER_CONFIG
        size = int(config["sample_size"])  # type: ignore[call-overload]
        return int(config["in_channels"]), size, size  # type: ignore[call-overload]

    def check_images(self, images: torch.Tensor, where: object = "--data") -> None:
        """Training images of the architecture's shape, checked before any training (a convolution error otherwise)."""
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape or len(images) < 1:
            raise FlexdiffError(
                f"{where} (images {tuple(images.shape[1:])})",
                f"images of shape {self.image_shape} for --arch {self.arch}",
                "resize or convert the training set (the built-in teachers are 16x16 greyscale)",
            )


def _ddpm_loss(net: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """DDPM (Ho et al. 2020, Alg. 1): eps-prediction MSE at a uniform timestep of the 1000."""
    abar = _ddpm_noise().alphas_cumprod
    t = torch.randint(0, _ddpm_noise().num_train_timesteps, (len(x0),), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)  # drawn on the CPU: the same numbers on any device
    a = abar[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps  # q(x_t | x_0), eq. 4
    return F.mse_loss(net(xt.to(device), t.to(device)).sample, eps.to(device))


def _flow_loss(net: torch.nn.Module, x0: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """Rectified flow (Liu et al. 2023; Esser et al. 2024, eq. 1-3): ``x_s = (1 - s) x0 + s eps``, the network predicts the
    velocity ``eps - x0`` at model timestep ``1000 s``; ``s`` is logit-normal (SD3's m = 0, s = 1: more weight mid-way)."""
    sigma = torch.sigmoid(torch.randn((len(x0),), generator=gen))
    eps = torch.randn(x0.shape, generator=gen)
    s = sigma.view(-1, 1, 1, 1)
    xt = (1 - s) * x0 + s * eps
    out = net(xt.to(device), timestep=(sigma * 1000).to(device), class_labels=labels.to(device)).sample
    return F.mse_loss(out, (eps - x0).to(device))


def train_teacher(
    out: Path,
    recipe: TeacherRecipe,
    images: torch.Tensor | None = None,
    on_step: Callable[[int, float], None] | None = None,
    device: torch.device | str = "cpu",
    labels: torch.Tensor | None = None,
) -> dict[str, float | int]:
    """Train the recipe's teacher with EMA weights (``arch``: DDPM UNet or rectified-flow DiT, see the loss functions).

    Saves the EMA network as a diffusers pipeline folder in ``out``; returns steps, wall time and final loss. A
    ``minutes`` cap that ends before the first step is an error: the random initialisation is no model. The DiT is
    class-conditional: ``labels`` (one per image, 0..9) default to the built-in digits' own.
    """
    from diffusers import DiTTransformer2DModel, UNet2DModel

    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    if images is None:
        images, labels = digits("train")
    recipe.check_images(images, "training images")
    if recipe.arch == "dit":
        if labels is None:
            raise FlexdiffError(
                "--data without labels",
                "class labels for the class-conditional DiT (the built-in digits have them)",
                "train --arch dit on builtin:digits-train",
            )
        architecture, net, loss_fn, scheduler_config = DIT_TEACHER_CONFIG, DiTTransformer2DModel(**DIT_TEACHER_CONFIG), _flow_loss, FLOW_SCHEDULER_CONFIG
    else:
        architecture, net, loss_fn, scheduler_config = TEACHER_CONFIG, UNet2DModel(**TEACHER_CONFIG), _ddpm_loss, DEFAULT_SCHEDULER_CONFIG
    labels = torch.zeros(len(images), dtype=torch.long) if labels is None else labels
    net = net.to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    # linear warm-up, then cosine decay to zero at `steps` (a --minutes cap may stop earlier; the card says where)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, recipe.steps, recipe.warmup_steps))
    start, losses, step = time.monotonic(), [], 0
    deadline = start + recipe.minutes * 60 if recipe.minutes is not None else None
    net.train()
    while step < recipe.steps and (deadline is None or time.monotonic() < deadline):
        idx = torch.randint(0, len(images), (recipe.batch_size,), generator=gen)
        loss = loss_fn(net, images[idx], labels[idx], gen, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        ema_update(ema, net, step, recipe.ema_decay)
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    if step == 0:  # the cap ran out before the first step: saving the random initialisation would pass for a model
        raise FlexdiffError(
            f"--minutes {recipe.minutes}", "a wall-time cap long enough for at least one optimizer step (0 steps ran)", "raise --minutes or drop it"
        )
    tail = losses[-500:]
    stats = {"steps": step, "wall_seconds": round(time.monotonic() - start, 1), "final_loss": round(sum(tail) / max(len(tail), 1), 5)}
    save_model(ema.eval().cpu(), out, scheduler_config)
    write_json(out / "training.json", {"recipe": asdict(recipe), "architecture": architecture, **stats})
    return stats


def check_model_out(out: Path) -> None:
    """Refuse, before any training, an ``--out`` the teacher must not be written to: a file, or a non-empty folder
    that is not a diffusers model folder (``model_index.json``) -- retraining replaces model files there, and a folder
    of other things is more likely a typo than a model. Creates the parent folder."""
    if out.exists() and not out.is_dir():
        raise FlexdiffError(f"--out {out}", "a folder for the trained model (this is a file)", "choose another --out")
    try:
        foreign = out.is_dir() and any(out.iterdir()) and not (out / "model_index.json").is_file()
    except OSError as exc:
        raise unwritable(out, "a place this user can write to", exc) from None
    if foreign:
        raise FlexdiffError(
            f"--out {out}",
            "a new or empty folder, or a model folder (model_index.json) to retrain; this one holds other files",
            "choose another --out (retraining replaces model_index.json, unet/, scheduler/ and training.json and keeps the rest)",
        )
    output_folder(out.parent)


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to one pixel (augmentation for the classifier)."""
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
    return torch.roll(F.pad(x, (1, 1, 1, 1), value=-1.0), shifts=(dy, dx), dims=(2, 3))[..., 1:-1, 1:-1]


def check_classifier_args(out: Path, epochs: int) -> None:
    """Refuse, before training, what :func:`train_classifier` would fail on only at the end (``out`` a folder) or
    turn into a bogus result (0 epochs save the random initialisation over the classifier). Creates ``out``'s parent."""
    if epochs < 1:
        raise FlexdiffError(f"--epochs {epochs}", "--epochs >= 1", "pass a positive number of epochs")
    if out.is_dir():
        raise FlexdiffError(f"--out {out}", "a safetensors file to write (this is a folder)", "pass a file path, e.g. --out digits_classifier.safetensors")
    output_folder(out.parent)


def train_classifier(out: Path, seed: int = 0, epochs: int = 40, on_epoch: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """Train the ``digits`` feature network on the train split; report held-out accuracy; save as safetensors.

    ``out`` is checked before training; the weights go to a temp file renamed over ``out``, so a failed or killed
    run never leaves a truncated file where the packaged classifier (or an earlier one) was.
    """
    from safetensors.torch import save_file

    check_classifier_args(out, epochs)
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
    try:
        with atomic_path(out) as tmp:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    except OSError as exc:
        raise unwritable(out, "a place this user can write to", exc) from None
    return {"heldout_accuracy": round(acc, 4), "epochs": epochs, "seed": seed}
