"""Retraining: the alpha schedules, the joint loss falling, and checkpoints that resume to the same numbers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from flexdiff.errors import FlexdiffError
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG
from flexdiff.models.student import block_module, block_specs
from flexdiff.nas.phases import assemble
from flexdiff.nas.record import record_teacher
from flexdiff.nas.retrain import AlphaSchedule, Checkpoint, RetrainConfig, retrain
from flexdiff.nas.space import random_architecture
from flexdiff.nas.supernet import BlockSupernet
from flexdiff.noise import NoiseSchedule
from flexdiff.testing.tiny import tiny_unet

from .conftest import tiny_images


@pytest.mark.parametrize("text, start, end", [("dynamic", 1.0, 0.0), ("dynamic:1,0.5", 1.0, 0.5), ("dynamic:0.75,0.25", 0.75, 0.25)])
def test_dynamic_alpha_decays_from_start_to_end(text: str, start: float, end: float) -> None:
    alpha = AlphaSchedule.parse(text)
    values = [alpha(s / 20) for s in range(21)]
    assert values[0] == pytest.approx(start) and values[-1] == pytest.approx(end)
    assert all(a > b for a, b in zip(values, values[1:]))
    assert alpha(0.5) == pytest.approx((start + end) / 2)  # cosine: halfway at half time
    assert str(alpha) == text and AlphaSchedule.parse(str(alpha)) == alpha


def test_constant_alpha_does_not_change() -> None:
    alpha = AlphaSchedule.parse("constant:0.3")
    assert {alpha(s / 10) for s in range(11)} == {0.3}
    assert str(alpha) == "constant:0.3"


@pytest.mark.parametrize(
    "text", ["constant:1.5", "constant:x", "cosine", "constant:", "constant:-0.1", "dynamic:", "dynamic:0.5", "dynamic:0.2,0.6", "dynamic:1,x", "dynamic:1.5,0"]
)
def test_bad_alpha_is_a_one_line_error(text: str) -> None:
    with pytest.raises(FlexdiffError, match="--alpha"):
        AlphaSchedule.parse(text)


@pytest.fixture(scope="module")
def parts():
    teacher = tiny_unet()
    specs = block_specs(teacher)
    supernets = {s.name: BlockSupernet(block_module(teacher, s), s) for s in specs}
    student = assemble(teacher, specs, supernets, random_architecture(specs, torch.Generator().manual_seed(5)))
    noise = NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG)

    class _Model:  # the parts of DiffusionModel that recording needs
        denoiser, sample_shape, device = teacher, (1, 8, 8), torch.device("cpu")

    _Model.noise = noise
    records = record_teacher(_Model(), tiny_images(), 16, 4, seed=0)
    scales = {k[6:]: float(v) for k, v in records.data.items() if k.startswith("scale.")}
    return teacher, specs, student, noise, scales


def _run(parts, steps: int, folder: Path, alpha: str = "dynamic", start: torch.nn.Module | None = None):
    teacher, specs, student, noise, scales = parts
    config = RetrainConfig(steps=steps, alpha=AlphaSchedule.parse(alpha), batch_size=8, log_every=2, checkpoint_seconds=0.0, warmup_steps=2)
    net = copy.deepcopy(student) if start is None else start
    return retrain(net, teacher, specs, noise, tiny_images(), scales, config, Checkpoint(folder), {"k": 1})


@pytest.mark.slow
def test_history_follows_the_schedule(parts, tmp_path: Path) -> None:
    _, history, cut = _run(parts, 8, tmp_path / "a")
    assert not cut and [h["step"] for h in history] == [2, 4, 6, 8]
    alphas = [h["alpha"] for h in history]
    assert alphas == sorted(alphas, reverse=True) and alphas[0] > 0.9
    _, constant, _ = _run(parts, 8, tmp_path / "b", alpha="constant:0.5")
    assert {h["alpha"] for h in constant} == {0.5}


@pytest.mark.slow
def test_killed_retraining_resumes_to_the_same_weights(parts, tmp_path: Path) -> None:
    straight, history, _ = _run(parts, 8, tmp_path / "straight")
    # a run killed after step 4: its checkpoint is what a 4-step run with the same fingerprint leaves... with steps=8
    teacher, specs, student, noise, scales = parts
    folder = tmp_path / "killed"
    config = RetrainConfig(steps=8, alpha=AlphaSchedule.parse("dynamic"), batch_size=8, log_every=2, checkpoint_seconds=0.0, warmup_steps=2)
    net = copy.deepcopy(student)
    calls = {"n": 0}

    class Killed(Exception):
        pass

    def kill_after_checkpoint(step: int) -> None:
        calls["n"] += 1
        if step == 4:
            raise Killed

    with pytest.raises(Killed):
        retrain(net, teacher, specs, noise, tiny_images(), scales, config, Checkpoint(folder), {"k": 1}, on_checkpoint=kill_after_checkpoint)
    assert Checkpoint(folder).exists()
    resumed, resumed_history, _ = retrain(copy.deepcopy(student), teacher, specs, noise, tiny_images(), scales, config, Checkpoint(folder), {"k": 1})
    assert resumed_history == history
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_the_denoising_target_is_in_the_teachers_parameterisation(prediction_type: str) -> None:
    """Converted back to a noise prediction the way sampling does (NoiseSchedule.to_eps), the target is the true eps."""
    from flexdiff.models import DEFAULT_SCHEDULER_CONFIG
    from flexdiff.nas.retrain import denoising_target
    from flexdiff.noise import NoiseSchedule

    noise = NoiseSchedule.from_scheduler_config({**DEFAULT_SCHEDULER_CONFIG, "prediction_type": prediction_type})
    g = torch.Generator().manual_seed(0)
    x0, eps, t = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g), 700
    a = torch.tensor(noise.alpha_bar(t))
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    assert torch.allclose(noise.to_eps(denoising_target(prediction_type, x0, eps, a), x_t, t), eps, atol=1e-5)
