"""SigLIP and DINOv2 image towers as feature networks, from a local folder or by repo id from the user's Hugging Face
cache (``local_files_only``: nothing is downloaded); tiny random towers saved as transformers saves them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from folders import invoke, ok, one_line_error

from flexdiff.errors import FlexdiffError
from flexdiff.measuring.features import get_feature_network

pytest.importorskip("transformers")


def save_tower(kind: str, folder: Path) -> Path:
    from transformers import Dinov2Config, Dinov2Model, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(5)
    small = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8)
    model = SiglipVisionModel(SiglipVisionConfig(intermediate_size=16, **small)) if kind == "siglip" else Dinov2Model(Dinov2Config(mlp_ratio=2, **small))
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module", params=["siglip", "dinov2"])
def tower(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return request.param, save_tower(request.param, tmp_path_factory.mktemp(request.param) / "tower")


def test_a_tower_gives_features_of_images_and_videos(tower: tuple[str, Path]) -> None:
    kind, folder = tower
    net = get_feature_network(kind, path=folder)
    images = torch.rand(4, 3, 24, 20, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = net(images)
    assert feats.shape == (4, 8) and torch.equal(feats, net(images)) and net.key.startswith(f"{kind}@")
    norms = feats.norm(dim=1)
    assert torch.allclose(norms, torch.ones(4, dtype=norms.dtype), atol=1e-6) == (kind == "siglip")  # SigLIP's space is a sphere; DINOv2's CLS is used as is
    video = torch.stack([images, images.flip(0)], 1)  # (4, 2 frames, C, H, W): each frame's features, averaged over time
    torch.testing.assert_close(net(video), (feats + feats.flip(0)) / 2, rtol=1e-5, atol=1e-6)  # float32 features of batches of another size
    assert net(images[:, :1]).shape == (4, 8)  # grey images go in as RGB


def test_a_tower_loads_by_repo_id_from_the_hugging_face_cache(tower: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    kind, folder = tower
    cache = tmp_path / "hub"
    snapshot = cache / f"models--acme--tiny-{kind}" / "snapshots" / "0123456789abcdef"
    shutil.copytree(folder, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(get_feature_network(kind, path=f"acme/tiny-{kind}")(images), get_feature_network(kind, path=folder)(images))
    with pytest.raises(FlexdiffError, match="hf download acme/absent") as err:
        get_feature_network(kind, path="acme/absent")
    assert "\n" not in str(err.value)


def test_eval_with_a_tower_and_its_bad_input(tower: tuple[str, Path], tmp_path: Path) -> None:
    kind, folder = tower
    out = json.loads(ok(invoke("eval", "--samples", "builtin:digits-train", "--n", "16", "--features", kind, "--feature-weights", folder, "--json")))
    assert out["features"] == kind and out["fid"] >= 0
    one_line_error(invoke("eval", "--samples", "builtin:digits-train", "--n", "16", "--features", "digits", "--feature-weights", folder), "--feature-weights")
    one_line_error(invoke("eval", "--samples", "builtin:digits-train", "--n", "16", "--features", kind), "--feature-weights")
    other = "dinov2" if kind == "siglip" else "siglip"
    one_line_error(invoke("eval", "--samples", "builtin:digits-train", "--n", "16", "--features", other, "--feature-weights", folder), "model_type")
