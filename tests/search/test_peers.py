"""The caching peers (diffusers' own FirstBlockCache, TaylorSeer, PAB, MagCache hooks) as baselines in flexdiff's loop."""

from __future__ import annotations

import pytest
import torch

from flexdiff.running.cost import count_macs
from flexdiff.running.own_loop import generate, teacher_timesteps
from flexdiff.search.peers import PEERS, PeerRun, calibrate, peer_images, peer_runs
from flexdiff.testing.tiny import tiny_dit_model


@pytest.fixture(scope="module")
def setup():
    model = tiny_dit_model()
    grid = teacher_timesteps(model, "flow-euler", 10)
    noise = model.initial_noise(4, 0)
    plain = generate(model, noise, grid, "flow-euler").clamp(-1, 1)
    full = count_macs(lambda: generate(model, noise, grid, "flow-euler")) / len(noise)
    extra = calibrate(model, grid, "flow-euler", noise[:2])
    return model, grid, noise, plain, full, extra


def test_magcache_is_calibrated_on_the_model(setup) -> None:
    *_, extra = setup
    ratios = extra["mag_ratios"]
    assert len(ratios) == 10 and ratios[0] == 1.0 and all(r > 0 for r in ratios)


@pytest.mark.parametrize("family", PEERS.names())
def test_every_peer_saves_compute_at_its_most_aggressive_setting_and_comes_off_cleanly(setup, family: str) -> None:
    model, grid, noise, plain, full, extra = setup
    runs = [r for r in peer_runs(10) if r.family == family]
    assert len(runs) >= 3  # a sweep, not one point
    images, macs = peer_images(model, runs[-1], noise, grid, "flow-euler", extra=extra)
    assert macs < 0.9 * full and not torch.equal(images, plain)  # it really skipped work, counted from what ran
    assert torch.equal(generate(model, noise, grid, "flow-euler").clamp(-1, 1), plain)  # its hooks came off
    again, macs_again = peer_images(model, runs[-1], noise, grid, "flow-euler", extra=extra)
    assert torch.equal(again, images) and macs_again == macs  # state reset per run: repeatable


def test_peer_names_are_family_and_setting() -> None:
    assert PeerRun("first-block-cache", 0.05).name == "first-block-cache-0.05"
