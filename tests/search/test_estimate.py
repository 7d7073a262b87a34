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
    config = SearchConfig(
        out=tmp_path / "run",
        model=str(tiny_model_dir),
        steps=10,
        n=8,
        trials=6,
        segments=(2, 3),
        validate_n=12,
        validate_top=2,
        baseline_branches=(0,),
        fidelity=(),
        reuse=False,
        progress=False,
    )
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


@pytest.mark.slow
def test_a_search_records_and_prints_what_it_generated(tiny_model_dir: Path, tmp_path: Path) -> None:
    """results.json's measured teacher-image equivalents: without rungs every baseline makes its n images, so the
    measured baselines phase is exactly the estimate's; the search phase is its candidates' MACs shares x n."""
    import json

    from typer.testing import CliRunner

    from flexdiff.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--model",
            str(tiny_model_dir),
            "--steps",
            "10",
            "--n",
            "8",
            "--trials",
            "4",
            "--segments",
            "2,3",
            "--validate-n",
            "8",
            "--validate-top",
            "1",
            "--baseline-branches",
            "0",
            "--fidelity",
            "none",
            "--no-reuse",
            "--features",
            "digits",
            "--speedup",
            "1.5",
            "--no-report",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    spent, expected = results["teacher_image_equivalents"], results["expected_teacher_image_equivalents"]
    teacher = results["full_step_macs"] * 10
    assert spent["reference"] == expected["reference"] == 8
    assert spent["baselines"] == pytest.approx(expected["baselines"], abs=0.1)  # nothing stopped: the same images
    assert spent["search"] == pytest.approx(sum(8 * r["macs"] / teacher for r in results["trials"]["searched"]), abs=0.1) and spent["search"] < 4 * 8
    assert spent["validation"] == pytest.approx(8 * (1 + sum(r["macs"] / teacher for r in results["validated"])), abs=0.1)
    assert f"cost: {sum(spent.values()):,.0f} teacher-image equivalents" in result.stdout
