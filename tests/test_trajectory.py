"""Exact trajectory reuse (flexdiff/trajectory.py): a run started from a stored run sharing its prefix is bit-identical
to the same schedule run from noise, for every sampler, on a UNet and on a transformer, with reuse, forecast and null
steps, in batches and with eta > 0."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_unet
from test_transformer import tiny_dit_model

from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.samplers import sampler_names
from flexdiff.sampling import generate_scheduled, teacher_timesteps
from flexdiff.schedule import Genome, full
from flexdiff.trajectory import TrajectoryStore, common_prefix


def _unet() -> DiffusionModel:
    return DiffusionModel(tiny_unet().eval().requires_grad_(False), NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 8, 8), "tiny-unet")


MODELS = {"unet": _unet, "dit": tiny_dit_model}
CASES = [(m, s) for m, make in MODELS.items() for s in sampler_names("flow" if m == "dit" else "alpha_bar")]


@pytest.mark.parametrize("model_name, sampler", CASES)
def test_a_child_started_from_its_parent_equals_the_child_from_noise(model_name: str, sampler: str) -> None:
    model = MODELS[model_name]()
    ts = teacher_timesteps(model, sampler, 12)
    noise = model.initial_noise(5, 0)
    eta = 0.5 if sampler == "ddim" else 0.0  # DDIM with extra noise: drawn per step, the same on both paths
    parent = Genome.parse("0:2,0:1,1:3,0:2").expand(ts, sampler)
    children = [Genome.parse(g).expand(ts, sampler) for g in ("0:2,0:1,0:2,1:1", "0:2,0:1,1:3f,0:3f", "0:2,0:2,1:3,0:2")]
    store = TrajectoryStore()
    for schedule in (full(ts, sampler), parent):
        generate_scheduled(model, schedule, noise, eta=eta, batch_size=2, trajectories=store)
    for child in children:
        assert common_prefix(child, parent) >= 3
        before = store.saved_steps
        reused = generate_scheduled(model, child, noise, eta=eta, batch_size=2, trajectories=store)
        assert store.saved_steps > before  # it did start from a stored run
        assert torch.equal(reused, generate_scheduled(model, child, noise, eta=eta, batch_size=2))


def test_the_store_is_bounded_and_needs_the_same_batches() -> None:
    model = _unet()
    ts = teacher_timesteps(model, "ddim", 8)
    noise = model.initial_noise(4, 0)
    store = TrajectoryStore()
    generate_scheduled(model, full(ts, "ddim"), noise, trajectories=store)
    assert store.plan(Genome.parse("0:2,0:4").expand(ts, "ddim"), [(0, 2), (2, 4)]) is None  # other batches: no reuse
    one = store.nbytes
    assert one == 4 * 8 * 64 * 4  # images x active steps x (1x8x8) float32
    small = TrajectoryStore(max_bytes=one)
    for schedule in (full(ts, "ddim"), Genome.parse("0:2,0:4").expand(ts, "ddim")):
        generate_scheduled(model, schedule, noise, trajectories=small)
    assert small.nbytes <= one and len(small.runs) == 1  # the older run made room
