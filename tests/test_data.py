from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.data import DIGITS_HELDOUT, digits, load_images, save_npz
from flexdiff.errors import FlexdiffError


def test_digits_split_is_fixed_disjoint_and_in_range() -> None:
    xt, yt = digits("train")
    xh, yh = digits("heldout")
    assert xt.shape == (1797 - DIGITS_HELDOUT, 1, 16, 16) and xh.shape == (DIGITS_HELDOUT, 1, 16, 16)
    assert xt.min() >= -1 and xt.max() <= 1 and xt.dtype == torch.float32
    assert set(yh.tolist()) == set(range(10))
    # no held-out image appears in the training split
    flat_t = {tuple(v) for v in xt.flatten(1).numpy().round(5).tolist()}
    assert not any(tuple(v) in flat_t for v in xh.flatten(1).numpy().round(5).tolist())
    assert torch.equal(digits("heldout")[0], xh)  # the split never changes
    assert torch.equal(load_images("builtin:digits-heldout"), xh)


def test_npz_roundtrip_and_layouts(tmp_path: Path) -> None:
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    save_npz(tmp_path / "a.npz", images)
    assert torch.allclose(load_images(tmp_path / "a.npz"), images)
    uint8_nhwc = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "b.npz", x=uint8_nhwc)
    loaded = load_images(tmp_path / "b.npz")
    assert loaded.shape == (3, 3, 8, 8)
    assert torch.allclose(loaded[0, :, 0, 0], torch.tensor(uint8_nhwc[0, 0, 0] / 127.5 - 1.0, dtype=torch.float32))


def test_image_folder(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(np.full((16, 16), i * 100, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    images = load_images(tmp_path)
    assert images.shape == (3, 1, 16, 16)
    assert images[2].mean().item() == pytest.approx(200 / 127.5 - 1, abs=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not a zip at all"), "corrupt"),
        (lambda p: np.savez(p, images=np.full((2, 1, 4, 4), 3.0, dtype=np.float32)), r"\[-1, 1\]"),
        (lambda p: np.savez(p, a=np.zeros((2, 4, 4)), b=np.zeros((2, 4, 4))), "images"),
        (lambda p: np.savez(p, images=np.zeros((4,))), "shape"),
    ],
)
def test_bad_npz_files_are_named(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(FlexdiffError, match=message) as info:
        load_images(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("source", ["builtin:cifar10", "/no/such/place.npz"])
def test_unknown_sources(source: str) -> None:
    with pytest.raises(FlexdiffError):
        load_images(source)


# --- bad --samples through the CLI: one stderr line naming the file, exit code 2 ---------------------------------

runner = CliRunner()


def _eval_error(samples: Path, *needles: str) -> None:
    result = runner.invoke(app, ["eval", "--samples", str(samples)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in (str(samples) if samples.is_file() else str(samples / "a.png"), *needles):
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("shape", [(0, 1, 16, 16), (2, 1, 0, 16)])
def test_empty_npz_is_refused_before_its_range_is_checked(tmp_path: Path, shape: tuple[int, ...]) -> None:
    np.savez(tmp_path / "empty.npz", images=np.zeros(shape, dtype=np.float32))
    _eval_error(tmp_path / "empty.npz", "at least one", str(shape))


def test_npy_samples_are_refused_with_the_accepted_formats(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 1, 16, 16), dtype=np.float32))
    _eval_error(tmp_path / "a.npy", ".npz", "image folder", "np.savez")


def test_corrupt_image_in_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "b.png")
    _eval_error(tmp_path, "corrupt")
