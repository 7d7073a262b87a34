"""The final validation: the Pareto schedules and each baseline family's best re-scored with more images (rFID,
paired distance, FID against real data when the model has a reference set, wall-clock against the plain teacher)."""

from __future__ import annotations

import math
import time
from typing import Any

from flexdiff.data import REAL_REFERENCE, load_images
from flexdiff.either_loop import schedule_images, teacher_images
from flexdiff.measuring.metrics import frechet_distance, paired_distance, psnr, rfid, ssim
from flexdiff.search.artefacts import schedule_of_row
from flexdiff.search.config import objective_of
from flexdiff.search.context import SearchContext
from flexdiff.search.peers import PeerRun
from flexdiff.utils.pareto import pareto_front
from flexdiff.utils.progress import progress_bar


def validate(ctx: SearchContext, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Re-score ``rows`` with ``validate_n`` images the search never saw (:func:`validation_start`): rFID, paired,
    PSNR, SSIM, FID vs real data, wall-clock vs the plain teacher loop.

    A caching peer's row (``kind`` peer, :mod:`flexdiff.search.peers`) is not a schedule: its images come from the
    peer's own code at its setting, scored the same way against the same teacher images."""
    c = ctx.config
    first = validation_start(c.n, ctx.model.conditioning.entries if ctx.model.conditioning is not None else 1)
    noise = ctx.model.initial_noise(c.validate_n, c.seed, first)  # images the search never saw
    real_source = c.reference or REAL_REFERENCE.get(c.model)
    real = ctx.net(load_images(real_source)) if real_source else None
    total = 1 + len(rows)
    with progress_bar(f"validation ({c.validate_n} images)", total, enabled=c.progress) as advance:
        start = time.perf_counter()
        teacher_out = teacher_images(ctx.model, noise, ctx.timesteps, c.sampler, seed=c.seed, batch_size=c.batch_size)
        teacher_feats = ctx.net(teacher_out)
        teacher_wall = time.perf_counter() - start
        advance()
        teacher = {
            "name": f"teacher ({c.sampler}-{len(ctx.timesteps)})",
            "wall_seconds": round(teacher_wall, 3),
            "macs": ctx.costs.full * len(ctx.timesteps),
            "noise_images": [first, first + c.validate_n],  # of the seed's stream; the search scored images 0 .. n - 1
            "fid": round(frechet_distance(real, teacher_feats), 4) if real is not None else None,
            "real_reference": real_source,
        }
        out = []
        for row in rows:
            own = ctx.peer_generator(PeerRun(row["family"], row["setting"])) if row["kind"] == "peer" else None
            schedule = schedule_of_row(row, ctx.timesteps, ctx.config.sampler) if own is None else None
            start = time.perf_counter()
            images = own(noise) if own is not None else schedule_images(ctx.model, schedule, noise, seed=c.seed, batch_size=c.batch_size)
            wall = time.perf_counter() - start
            feats = ctx.net(images)
            out.append(
                {
                    **{k: row[k] for k in ("kind", "name", "family", "genome", "macs", "macs_speedup")},
                    "sampler": schedule.sampler if schedule is not None else c.sampler,
                    "search_rfid": row["rfid"],
                    "search_paired": row.get("paired"),
                    "rfid": round(rfid(feats, teacher_feats), 5),
                    "paired": round(paired_distance(feats, teacher_feats), 5),
                    "psnr": finite(psnr(images, teacher_out), 3),
                    "ssim": finite(ssim(images, teacher_out), 5),
                    "fid": round(frechet_distance(real, feats), 4) if real is not None else None,
                    "wall_seconds": round(wall, 3),
                    "wall_speedup": round(teacher_wall / wall, 4),
                    "steps": row.get("steps"),
                }
            )
            advance()
    return teacher, out


def validation_start(n: int, entries: int) -> int:
    """The first image of the validation in the seed's noise stream: after the search's ``n`` images, so that no
    validated figure re-scores a noise the search selected on, rounded up to a multiple of the prompt count ``entries``
    (image ``j`` takes prompt ``j mod P`` and that entry's own noise stream: the pairs stay whole)."""
    return -(-n // entries) * entries


def finite(value: float, digits: int) -> float | None:
    """``value`` rounded, or None where it is infinite (a PSNR of images equal to the teacher's): JSON has no inf."""
    return round(value, digits) if math.isfinite(value) else None


def choose_for_validation(ctx: SearchContext, baselines: list[dict[str, Any]], searched: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Pareto schedules (searched, nearest the budget first, ``validate_top`` of them) and, per baseline family,
    the best baseline within the budget."""
    budget, objective = ctx.max_macs, ctx.config.objective
    front = [searched[i] for i in pareto_front([(r["macs"], objective_of(r, objective)) for r in searched])]
    within = sorted([r for r in front if r["macs"] <= budget], key=lambda r: -r["macs"])
    beyond = sorted([r for r in front if r["macs"] > budget], key=lambda r: r["macs"])
    picked = (within + beyond)[: ctx.config.validate_top]
    for family in sorted({r["family"] for r in baselines} - {"teacher"}):
        candidates = [r for r in baselines if r["family"] == family and r["macs"] <= budget]
        if candidates:
            picked.append(min(candidates, key=lambda r: objective_of(r, objective)))
    return picked
