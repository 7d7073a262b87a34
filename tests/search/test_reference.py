"""The teacher cache of rFID is keyed by everything that determines it, and rebuilt on any mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flexdiff.measuring.features import FeatureNetwork
from flexdiff.measuring.metrics import paired_distance, rfid
from flexdiff.models import load_model
from flexdiff.samplers import uniform_timesteps
from flexdiff.search.reference import CACHE_NAME, load_or_build_reference


def _net() -> FeatureNetwork:
    return FeatureNetwork("mean-std", lambda x: torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3)), x[:, :, :4].mean((1, 2, 3))], 1), 3, torch.device("cpu"))


def test_cache_is_reused_only_for_the_same_key(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(tiny_model_dir, "cpu")
    ts = uniform_timesteps(1000, 5)
    first, status = load_or_build_reference(model, "ddim", ts, 0, 6, _net(), tmp_path)
    assert status == "built" and (tmp_path / CACHE_NAME).is_file()
    again, status = load_or_build_reference(model, "ddim", ts, 0, 6, _net(), tmp_path)
    assert status == "reused" and torch.equal(again.features, first.features)
    _, status = load_or_build_reference(model, "ddim", ts, 1, 6, _net(), tmp_path)
    assert status == "rebuilt: seed differs"
    _, status = load_or_build_reference(model, "dpmpp-2m", uniform_timesteps(1000, 5, "linspace"), 1, 6, _net(), tmp_path)
    assert status == "rebuilt: sampler, timesteps differs"
    with torch.no_grad():
        next(model.denoiser.parameters()).add_(0.01)  # other weights: another model
    rebuilt, status = load_or_build_reference(model, "dpmpp-2m", uniform_timesteps(1000, 5, "linspace"), 1, 6, _net(), tmp_path)
    assert status == "rebuilt: model differs"
    assert rebuilt.key.model != first.key.model


def test_rfid_and_paired_are_zero_against_themselves() -> None:
    f = torch.randn(50, 3, dtype=torch.float64)
    assert rfid(f, f) < 1e-6 and paired_distance(f, f) == 0.0
    assert paired_distance(f + 1, f) > 0 and rfid(f + 1, f) > 1


def test_another_noise_schedule_or_feature_network_rebuilds_the_cache(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The model key covers the noise schedule, not only the weights (a changed scheduler_config.json was reused)."""
    import dataclasses

    from flexdiff.measuring.features import get_feature_network
    from flexdiff.models import DEFAULT_SCHEDULER_CONFIG
    from flexdiff.noise import NoiseSchedule

    model = load_model(tiny_model_dir, "cpu")
    ts = uniform_timesteps(1000, 4)
    first, _ = load_or_build_reference(model, "ddim", ts, 0, 4, _net(), tmp_path)
    other = dataclasses.replace(model, noise=NoiseSchedule.from_scheduler_config({**DEFAULT_SCHEDULER_CONFIG, "beta_end": 0.012}))
    rebuilt, status = load_or_build_reference(other, "ddim", ts, 0, 4, _net(), tmp_path)
    assert status == "rebuilt: model differs" and not torch.equal(rebuilt.images, first.images)
    digits = get_feature_network("digits", "cpu")
    assert digits.key.startswith("digits@") and len(digits.key) > len("digits@")  # the classifier's weights, not its name


def test_the_conditioning_key_ignores_where_the_prompt_file_lies() -> None:
    from flexdiff.models import Conditioning

    states = torch.ones(1, 3, 6)
    keys = {Conditioning(states, None, description={"prompts": ["a cat"], "prompt_file": where}).key() for where in ("p.txt", "/abs/p.txt", "../copy/p.txt")}
    assert len(keys) == 1
    assert Conditioning(states, None, description={"prompts": ["a dog"], "prompt_file": "p.txt"}).key() not in keys


def _damage(path: Path, how: str) -> None:
    """A cache file made not whole in one of the ways a disk, a killed process or a hand can."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x93NUMPY not a safetensors file" * 10)
    elif how == "empty":
        path.write_bytes(b"")
    else:
        with safe_open(str(path), framework="pt") as f:
            metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        if how == "five rows":  # the right key, tensors of another run size
            tensors = {k: v[:5] for k, v in tensors.items()}
        elif how == "missing tensor":
            tensors.pop("features")
        elif how == "nan features":
            tensors["features"] = tensors["features"] * float("nan")
        save_file(tensors, str(path), metadata=metadata)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "five rows", "missing tensor", "nan features"])
def test_a_damaged_cache_is_rebuilt_never_trusted(how: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from flexdiff.search.reference import DAMAGED

    model = load_model(tiny_model_dir, "cpu")
    ts = uniform_timesteps(1000, 4)
    first, _ = load_or_build_reference(model, "ddim", ts, 0, 6, _net(), tmp_path)
    _damage(tmp_path / CACHE_NAME, how)
    _, status = load_or_build_reference(model, "ddim", ts, 0, 6, _net(), tmp_path, build=False)  # a dry run says so, touching nothing
    assert status.startswith(DAMAGED)
    rebuilt, status = load_or_build_reference(model, "ddim", ts, 0, 6, _net(), tmp_path)
    assert status.startswith(DAMAGED) and torch.equal(rebuilt.features, first.features)
    _, status = load_or_build_reference(model, "ddim", ts, 0, 6, _net(), tmp_path)
    assert status == "reused"  # written whole again
