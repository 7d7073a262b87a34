"""Image grids: the teacher, the chosen schedule and its strongest rival from the same noise, with difference maps.

The images are generated when the report is written (``n`` per row, 16 by default: seconds on a CPU) from the run's
own config, so the first ``n`` seeds are exactly the first ``n`` images the search scored (the initial noise of
image ``i`` does not depend on how many images are drawn). Nothing is stored during the search for this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from flexdiff.either_loop import schedule_images, teacher_grid, teacher_images
from flexdiff.errors import FlexdiffError
from flexdiff.models import condition, load_model
from flexdiff.report.plots import to_png
from flexdiff.search.artefacts import schedule_of_row
from flexdiff.utils.progress import progress_bar

Row = dict[str, Any]
SAME_COST = 1.02  # a rival may cost up to 2 % more MACs and still count as "the same cost"


@dataclass(frozen=True)
class Panel:
    """One row of the grid: a label and its images (N, C, H, W) in [-1, 1]."""

    label: str
    images: torch.Tensor


def short_name(row: Row) -> str:
    """Genome names list every segment; in a label the segment count says enough."""
    name = str(row.get("name", "?"))
    if row.get("family") == "genome" and row.get("genome"):
        return f"searched, {len(str(row['genome']).split(','))} segments"
    return name


def label(row: Row, role: str, sep: str = ": ") -> str:
    speed = row.get("macs_speedup")
    return f"{role}{sep}{short_name(row)}" + (f" ({speed:.2f}x MACs)" if isinstance(speed, (int, float)) else "")


def pick_rows(results: dict[str, Any]) -> tuple[list[tuple[str, Row]], str | None]:
    """The schedules to show beside the teacher, with their role, and a note when the choice had to fall back.

    The chosen schedule is ``best`` (lowest validated rFID within the budget); its rival is the best baseline of
    another family at the same cost or cheaper (else the one closest in MACs). When the chosen schedule is itself a
    baseline, the best searched schedule at that cost is shown too, so the grid always shows what the search found.
    """
    note = None
    chosen = results.get("best")
    validated = [r for r in results.get("validated") or [] if isinstance(r, dict) and r.get("steps")]
    if not isinstance(chosen, dict) or not chosen.get("steps"):
        if not validated:
            return [], "no validated schedule to show"
        chosen = min(validated, key=lambda r: r.get("rfid", float("inf")))
        note = "no validated schedule fits the budget; the grid shows the validated schedule closest to the teacher (lowest rFID) instead"
    trials = results.get("trials") or {}
    out = [("chosen", chosen)]
    macs = chosen.get("macs") or 0
    baselines = [
        r
        for r in trials.get("baselines") or []
        if r.get("family") not in ("teacher", chosen.get("family")) and r.get("steps") and r.get("name") != chosen.get("name")
    ]
    if baselines:
        same = [r for r in baselines if r.get("macs", 0) <= macs * SAME_COST]
        rival = min(same, key=lambda r: r.get("rfid", float("inf"))) if same else min(baselines, key=lambda r: abs(r.get("macs", 0) - macs))
        out.append(("best baseline at this cost" if same else "closest baseline in cost", rival))
    searched = [r for r in trials.get("searched") or [] if r.get("steps")]
    if chosen.get("kind") == "baseline" and searched:
        same = [r for r in searched if r.get("macs", 0) <= macs * SAME_COST]
        best = min(same, key=lambda r: r.get("rfid", float("inf"))) if same else min(searched, key=lambda r: abs(r.get("macs", 0) - macs))
        out.append(("best searched at this cost" if same else "closest searched in cost", best))
    return out, note


def load_run_model(config: dict[str, Any], device: str) -> Any:
    """The run's model, conditioned as the search conditioned it (prompts, guidance, labels), so the seeds match."""
    model = load_model(config["model"], device, torch_dtype=config.get("torch_dtype"), variant=config.get("variant"))
    condition(
        model,
        prompts=config.get("prompts"),
        negative_prompt=config.get("negative_prompt"),
        guidance=config.get("guidance"),
        labels=config.get("labels"),
        control_images=config.get("control_images"),
    )
    return model


def generate_panels(config: dict[str, Any], rows: Sequence[tuple[str, Row]], n: int, device: str = "cpu", progress: bool = True) -> list[Panel]:
    """The teacher's ``n`` images and each row's, from the run's seed (raises FlexdiffError if the model cannot load)."""
    missing = [k for k in ("model", "sampler", "steps", "seed") if config.get(k) is None]
    if missing:
        raise FlexdiffError(
            f"results.json config without {', '.join(missing)}", "the model, sampler, steps and seed of the run", "rerun the search with this flexdiff"
        )
    sampler, steps, seed = str(config["sampler"]), int(config["steps"]), int(config["seed"])
    model = load_run_model(config, device)
    timesteps = teacher_grid(model, sampler, steps)
    num_branches = model.layout.num_branches
    plans = []
    for role, row in rows:
        plan = schedule_of_row(row, timesteps, sampler)  # rows of a --solver search name their own sampler
        plan.check_branches(num_branches)
        plans.append((label(row, role, ":\n"), plan))
    noise = model.initial_noise(n, seed)  # as the search drew it: image i is the same whatever n
    total = len(timesteps) + sum(len(p.active_indices) for _, p in plans)
    with progress_bar(f"report: {n} images x {1 + len(plans)} schedules", total, enabled=progress) as advance:
        panels = [Panel(f"teacher ({sampler}-{len(timesteps)})", teacher_images(model, noise, timesteps, sampler, seed=seed, on_step=advance))]
        panels += [Panel(text, schedule_images(model, plan, noise, seed=seed, on_step=advance)) for text, plan in plans]
    return panels


def _rgb(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, 3) floats in [0, 1] (grey images repeated on three channels)."""
    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    return np.repeat(x[..., :1], 3, axis=-1) if x.shape[-1] != 3 else x


def _mosaic(rows: Sequence[np.ndarray], pad: int = 1) -> np.ndarray:
    """Rows of (N, H, W, 3) cells -> one image with white gutters."""
    n, h, w, _ = rows[0].shape
    out = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3))
    for r, cells in enumerate(rows):
        for i in range(n):
            out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + i * (w + pad) : pad + i * (w + pad) + w] = cells[i]
    return out


def comparison_png(panels: Sequence[Panel], seed: int) -> bytes:
    """Teacher row, then each schedule's row followed by its per-pixel |difference| to the teacher (one colour scale)."""
    teacher = panels[0].images
    diffs = [(p.images - teacher).abs().mean(dim=1) for p in panels[1:]]  # over channels, images in [-1, 1]
    vmax = max([float(d.max()) for d in diffs] + [1e-6])
    cmap, norm = colormaps["magma"], Normalize(0.0, vmax)
    rows, labels = [_rgb(teacher)], [panels[0].label]
    for p, d in zip(panels[1:], diffs):
        rows += [_rgb(p.images), cmap(norm(d.numpy()))[..., :3]]
        labels += [p.label, "|difference| to teacher"]
    mosaic = _mosaic(rows)
    n, h = len(teacher), teacher.shape[-2]
    width = 11.5
    label_width = 0.08 * max(len(line) for text in labels for line in text.splitlines()) + 0.3  # inches at font size 9
    image_width = width - label_width - 1.1  # the colour bar and its label take the rest
    fig = Figure(figsize=(width, image_width * mosaic.shape[0] / mosaic.shape[1] + 0.9), layout="constrained")
    ax = fig.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([1 + r * (h + 1) + h / 2 for r in range(len(rows))], labels, fontsize=9)
    ax.set_xticks([1 + i * (teacher.shape[-1] + 1) + teacher.shape[-1] / 2 for i in range(n)], [str(i) for i in range(n)], fontsize=8)
    ax.set_xlabel(f"image index i (seed {seed}: every column starts from the same initial noise)")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.025, pad=0.01)
    bar.set_label("mean |difference| per pixel\n(pixel values in [-1, 1])", fontsize=8)
    return to_png(fig, dpi=110)
