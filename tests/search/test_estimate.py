"""The search's cost before it runs, in teacher-image equivalents (images x their MACs / the teacher's MACs per
image): device-free, so it says what a search costs on a real model in plain ``pipe(...)`` calls."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from flexdiff.search.config import SearchConfig
from flexdiff.search.context import build_context
from flexdiff.search.estimate import estimate


@pytest.mark.slow
def test_teacher_image_equivalents_count_every_phase(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = SearchConfig(out=tmp_path / "run", model=str(tiny_model_dir), steps=10, n=8, trials=6, segments=(2, 3), validate_n=12, validate_top=2,
                          baseline_branches=(0,), fidelity=(), reuse=False, progress=False)
    ctx = build_context(config, reference=False)
    images = estimate(ctx, reference_cached=False).images
    teacher = ctx.costs.full * len(ctx.timesteps)
    assert images["reference"] == 8  # the teacher's own n images, one equivalent each
    assert images["baselines"] == pytest.approx(sum(8 * ctx.costs.schedule(s) / teacher for s in ctx.baselines))
    assert 0 < images["search"] < 6 * 8  # trials x n images, each cheaper than a teacher's
    families = {s.meta.get("family") for s in ctx.baselines} - {"teacher"}
    assert images["validation"] == pytest.approx(12 * (1 + (2 + len(families)) * ctx.max_macs / teacher))  # the teacher once, then each pick at the budget
    assert estimate(ctx, reference_cached=True).images["reference"] == 0
    longer = estimate(replace(ctx, config=replace(config, trials=12)), reference_cached=False).images
    assert longer["search"] == pytest.approx(2 * images["search"], rel=0.5) and longer["search"] > images["search"]
