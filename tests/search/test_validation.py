"""Validation on noise the search never saw: the validated images continue the seed's noise stream after the
search's ``n`` images (per prompt entry when prompts carry their own seeds), so no validated figure re-scores a noise
the search selected its schedules on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.models.model import Conditioning
from flexdiff.search.validation import validation_start


def test_noise_streams_continue_without_repeating_a_row() -> None:
    shape = (1, 4, 4)
    for seeds in (None, (7, None, 3)):
        c = Conditioning(cond=torch.zeros(3, 2, 2), seeds=seeds)
        first, later = c.noise(7, shape, 0), c.noise(5, shape, 0, start=validation_start(7, 3))
        whole = c.noise(9 + 5, shape, 0)
        assert validation_start(7, 3) == 9 and torch.equal(whole[:7], first) and torch.equal(whole[9:], later)  # the same stream, continued
        assert not any(torch.equal(a, b) for a in first for b in later)  # disjoint rows
        for i in range(5):  # image 9 + i takes prompt (9 + i) mod 3 = i mod 3: its entry's own stream
            assert torch.equal(later[i], c.noise(3 * ((9 + i) // 3 + 1), shape, 0)[9 + i])


@pytest.mark.slow
def test_validation_rescores_on_images_the_search_never_saw(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--model",
            str(tiny_model_dir),
            "--steps",
            "6",
            "--n",
            "16",
            "--validate-n",
            "16",
            "--trials",
            "3",
            "--segments",
            "2,3",
            "--baseline-branches",
            "0",
            "--speedup",
            "1.5",
            "--features",
            "digits",
            "--no-report",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["teacher"]["noise_images"] == [16, 32]  # after the search's 16
    scored = [r for r in results["validated"] if r["macs_speedup"] > 1]
    assert scored and all(r["rfid"] != r["search_rfid"] for r in scored)  # re-scored, not re-read
