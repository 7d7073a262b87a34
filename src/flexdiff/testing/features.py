"""The feature-network contract: every registered network either loads offline or refuses in one line (naming the
file or package it needs), and when it loads, maps images (or what it declares with ``@fixture_for("feature
network", name)``) to finite (N, dim) features, each image's independent of the batch and repeatable."""

from __future__ import annotations

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.measuring.features import FEATURE_NETWORKS, get_feature_network
from flexdiff.testing._suites import fixture, register_suite


def _images() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # RGB in [-1, 1]


def loads_or_refuses_in_one_line_and_maps_each_image_alone(name: str) -> None:
    try:
        net = get_feature_network(name)
    except FlexdiffError as error:  # weights that are not on this machine: the one-line error says which
        assert "\n" not in str(error), f"{name}: a multi-line error {error}"
        return
    images = fixture("feature network", name, default=_images)
    features = net(images)
    assert features.shape == (len(images), net.dim) and torch.isfinite(features).all(), f"{name}: features {tuple(features.shape)}, dim {net.dim}"
    alone = torch.cat([net(images[i : i + 1]) for i in range(len(images))])
    torch.testing.assert_close(features, alone, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: an image's features depend on the batch: {m}")
    assert torch.equal(features, net(images)), f"{name}: not repeatable"


register_suite("feature network", FEATURE_NETWORKS, [loads_or_refuses_in_one_line_and_maps_each_image_alone])
