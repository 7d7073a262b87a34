"""Exact trajectory reuse (flexdiff/trajectory.py): a run started from a stored run sharing its prefix is bit-identical
to the same schedule run from noise, for every sampler, on a UNet and on a transformer, with reuse, forecast and null
steps, in batches and with eta > 0."""

from __future__ import annotations

import pytest
import torch

from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.running.own_loop import generate_scheduled, teacher_timesteps
from flexdiff.running.trajectory import TrajectoryStore, common_prefix, load_run, save_run
from flexdiff.samplers import sampler_names
from flexdiff.schedule import Genome, full
from flexdiff.testing.tiny import tiny_dit_model, tiny_unet


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
    assert store.plan(Genome.parse("0:2,0:4").expand(ts, "ddim"), [(0, 2), (2, 4)]) == [None, None]  # other batches: no reuse
    one = store.nbytes
    assert one == 4 * 8 * 64 * 4  # images x active steps x (1x8x8) float32
    small = TrajectoryStore(max_bytes=one)
    for schedule in (full(ts, "ddim"), Genome.parse("0:2,0:4").expand(ts, "ddim")):
        generate_scheduled(model, schedule, noise, trajectories=small)
    assert small.nbytes <= one and len(small.runs) == 1  # the older run made room


def test_a_run_stopped_on_a_rung_serves_its_finished_batches() -> None:
    """A candidate stopped after its first batch (the multi-fidelity pruner) leaves that batch: a child sharing its
    prefix replays it there, computes the rest, and equals the child run from noise."""
    model = _unet()
    ts = teacher_timesteps(model, "ddim-2m", 12)
    noise = model.initial_noise(6, 0)
    parent, child = (Genome.parse(g).expand(ts, "ddim-2m") for g in ("0:2,0:1,1:3,0:2", "0:2,0:1,0:2,1:1"))
    store = TrajectoryStore()

    def stop(images: int, _: torch.Tensor) -> None:
        raise RuntimeError("stopped on the rung")

    with pytest.raises(RuntimeError):
        generate_scheduled(model, parent, noise, cuts=(2,), on_batch=stop, trajectories=store)
    assert len(store.runs[parent.key].outputs) == 1  # the first batch only
    plans = store.plan(child, [(0, 2), (2, 6)])
    assert plans[0] is not None and plans[1] is None
    reused = generate_scheduled(model, child, noise, cuts=(2,), trajectories=store)
    assert store.saved_steps > 0 and torch.equal(reused, generate_scheduled(model, child, noise, cuts=(2,)))
    assert len(store.runs[child.key].outputs) == 2


def test_a_saved_run_loads_only_under_its_key_schedule_and_batches(tmp_path) -> None:
    """The teacher's run kept beside the reference (save_run / load_run): read back whole under the key it was made
    with, for that plan in those batches; anything else (another key, other batches, a damaged file) is not used."""
    model = _unet()
    ts = teacher_timesteps(model, "ddim", 8)
    noise = model.initial_noise(4, 0)
    teacher, bounds = full(ts, "ddim"), [(0, 2), (2, 4)]
    store = TrajectoryStore()
    generate_scheduled(model, teacher, noise, batch_size=2, trajectories=store)
    path = tmp_path / "teacher_run.safetensors"
    save_run(store.runs[teacher.key], path, "key-a")
    loaded = load_run(path, teacher, bounds, "key-a")
    assert loaded is not None and all(torch.equal(a, b) for x, y in zip(loaded.outputs, store.runs[teacher.key].outputs) for a, b in zip(x, y))
    assert load_run(path, teacher, bounds, "key-b") is None
    assert load_run(path, teacher, [(0, 4)], "key-a") is None
    assert load_run(path, Genome.parse("0:2,0:4").expand(ts, "ddim"), bounds, "key-a") is None
    path.write_bytes(path.read_bytes()[:100])
    assert load_run(path, teacher, bounds, "key-a") is None
    fresh = TrajectoryStore()
    fresh.add(loaded)  # the teacher's plan itself replays from it (a segment genome shares only its first, full, step)
    assert torch.equal(generate_scheduled(model, teacher, noise, batch_size=2, trajectories=fresh), generate_scheduled(model, teacher, noise, batch_size=2))
    assert fresh.saved_steps == 4 * (8 - 1)  # every step but the last full one, which refills the cache
