from __future__ import annotations

import pytest
import torch

from flexdiff.data import digits
from flexdiff.errors import FlexdiffError
from flexdiff.measuring.features import (
    FeatureNetwork,
    feature_network_names,
    get_feature_network,
    load_digits_classifier,
    register_feature_network,
)


def test_shipped_digits_classifier_is_accurate() -> None:
    x, y = digits("heldout")
    with torch.no_grad():
        accuracy = (load_digits_classifier()(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.97


def test_digits_features_shape_and_any_input_size() -> None:
    net = get_feature_network("digits")
    assert net(digits("heldout")[0][:7]).shape == (7, net.dim)
    assert net(torch.zeros(3, 3, 32, 32)).shape == (3, net.dim)  # RGB 32x32 is greyed and resized


@pytest.mark.parametrize("name, message", [("resnet", "feature network in"), ("inception", "--inception PATH"), ("clip", "--clip PATH")])
def test_unavailable_feature_networks_fail_clearly(name: str, message: str) -> None:
    with pytest.raises(FlexdiffError, match=message):
        get_feature_network(name)


def test_registry_accepts_new_networks() -> None:
    from flexdiff.measuring.features import FEATURE_NETWORKS

    register_feature_network("mean-pixel")(lambda device: FeatureNetwork("mean-pixel", lambda x: x.mean((2, 3)), 1, device))
    try:
        assert "mean-pixel" in feature_network_names()
        assert get_feature_network("mean-pixel")(torch.ones(2, 1, 4, 4)).tolist() == [[1.0], [1.0]]
    finally:
        FEATURE_NETWORKS.unregister("mean-pixel")  # the registry is process-wide: leave it as found


def test_inception_names_the_missing_file_or_package(tmp_path) -> None:
    with pytest.raises(FlexdiffError, match="missing.pth"):
        get_feature_network("inception", path=tmp_path / "missing.pth")
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"not used: torch-fidelity is absent here")
    try:
        import torch_fidelity.feature_extractor_inceptionv3  # noqa: F401
    except Exception:
        with pytest.raises(FlexdiffError, match="torch-fidelity"):
            get_feature_network("inception", path=weights)
