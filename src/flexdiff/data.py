"""Image sets: the built-in 16x16 digits and user data (``.npz`` files, image folders).

Every image set is a float32 tensor ``(N, C, H, W)`` in ``[-1, 1]``, the range diffusion models are trained on.
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from flexdiff.errors import FlexdiffError
from flexdiff.utils.io import atomic_path
from flexdiff.utils.optional import require

if TYPE_CHECKING:
    from PIL import Image as PILImage

DIGITS_SIZE = 16
#: Held-out images of the built-in split (the rest, 1297 of sklearn's 1797 digits, are for training).
DIGITS_HELDOUT = 500
#: The split is a fixed permutation drawn from this seed; it never changes, so FIDs stay comparable.
DIGITS_SPLIT_SEED = 0
BUILTIN_SETS = ("builtin:digits-train", "builtin:digits-heldout")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


#: Real-data reference sets of the built-in models: what FID is measured against (search validation, compress).
REAL_REFERENCE = {"builtin:digits": "builtin:digits-heldout", "builtin:digits-dit": "builtin:digits-heldout"}


@lru_cache(maxsize=1)
def _digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    require("sklearn", "search", "the built-in digits data sets")
    from sklearn.datasets import load_digits

    digits = load_digits()  # 1797 images, 8x8, integer intensities 0..16; shipped inside scikit-learn
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    x = (x * 2.0 - 1.0).clamp(-1.0, 1.0)
    y = torch.from_numpy(digits.target.astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    held, train = perm[:DIGITS_HELDOUT], perm[DIGITS_HELDOUT:]
    return x[train], y[train], x[held], y[held]


def digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The built-in digits: images ``(N, 1, 16, 16)`` in ``[-1, 1]`` and labels ``(N,)``.

    ``split`` is ``"train"`` (1297 images) or ``"heldout"`` (500 images); the split is fixed forever.
    """
    x_train, y_train, x_held, y_held = _digits_split()
    if split == "train":
        return x_train.clone(), y_train.clone()
    if split == "heldout":
        return x_held.clone(), y_held.clone()
    raise FlexdiffError(split, "a digits split 'train' or 'heldout'", "pick one of those two")


def load_images(source: str | Path) -> torch.Tensor:
    """Load an image set from ``builtin:digits-train|digits-heldout``, an ``.npz`` file or an image folder.

    ``.npz``: the array under key ``images`` (or the only array), NCHW or NHWC, either float in ``[-1, 1]`` or
    integers ``0..255``. Folders: every png/jpg/bmp/webp file, sorted by name, converted to the mode of the first.
    """
    text = str(source)
    if text.startswith("builtin:"):
        if text not in BUILTIN_SETS:
            raise FlexdiffError(text, f"one of {', '.join(BUILTIN_SETS)}", "use one of those names or a path")
        return digits(text.split("-", 1)[1])[0]
    path = Path(text)
    if not path.exists():
        raise FlexdiffError(text, "an .npz file, an image folder or a builtin:digits-* set", "check the path")
    return _load_npz(path) if path.is_file() else _load_folder(path)


def _load_npz(path: Path) -> torch.Tensor:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # np.load reads a .npy too, but that is not a documented format
            raise FlexdiffError(
                path, "an .npz archive (np.savez), an image folder or a builtin:digits-* set, not a .npy array", "save it with np.savez(path, images=array)"
            )
        with loaded as archive:
            keys = list(archive.keys())
            key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise FlexdiffError(path, f"an .npz with an 'images' array (found keys {keys})", "save the images under the key 'images'")
            array = archive[key]
    except FlexdiffError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FlexdiffError(path, "a readable .npz archive of images", f"the file is corrupt or not an .npz ({type(exc).__name__}); regenerate it") from None
    return _to_nchw(np.asarray(array), path)


def _to_nchw(array: np.ndarray, where: object) -> torch.Tensor:
    """``array`` as float32 NCHW in ``[-1, 1]``; refused before any min()/max(), which fail on an empty array."""
    if array.ndim == 3:  # (N, H, W): single channel
        array = array[:, None]
    if array.ndim != 4:
        raise FlexdiffError(where, f"images shaped (N, C, H, W) or (N, H, W, C), got shape {array.shape}", "reshape the array")
    if array.size == 0:
        raise FlexdiffError(where, f"at least one non-empty image, got shape {array.shape}", "point to a non-empty image set")
    if array.shape[1] not in (1, 3, 4) and array.shape[-1] in (1, 3, 4):
        array = array.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if np.issubdtype(array.dtype, np.integer):
        images = torch.from_numpy(array.astype(np.float32) / 127.5 - 1.0)
    elif np.issubdtype(array.dtype, np.floating):
        images = torch.from_numpy(array.astype(np.float32))
        if not torch.isfinite(images).all() or images.min() < -1.001 or images.max() > 1.001:
            raise FlexdiffError(where, "float images in [-1, 1] (or uint8 0..255)", "rescale the images to [-1, 1]")
    else:
        raise FlexdiffError(where, f"a numeric image array, got dtype {array.dtype}", "save float32 in [-1, 1] or uint8")
    return images[:, :3].clamp(-1.0, 1.0).contiguous()


def _read_image(file: Path, mode: str | None = None) -> PILImage.Image:
    """``file`` decoded (in ``mode``, or its own) and closed; a corrupt or unreadable image is a one-line error that
    names the file, since PIL raises UnidentifiedImageError / OSError with a traceback otherwise."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            return image.convert(mode) if mode else image.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FlexdiffError(file, "a readable image file", f"it is unreadable or corrupt ({exc.__class__.__name__}); replace or remove it") from None


def _load_folder(path: Path) -> torch.Tensor:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FlexdiffError(path, f"a folder of {'/'.join(IMAGE_SUFFIXES)} images", "put images in it or pass an .npz")
    first = _read_image(files[0])
    mode = "L" if first.mode in ("L", "1", "I", "I;16") else "RGB"
    size = first.size
    arrays = []
    for file in files:
        image = _read_image(file, mode)
        if image.size != size:
            raise FlexdiffError(file, f"every image {size[0]}x{size[1]} like {files[0].name}", "resize the images to one size")
        arrays.append(np.asarray(image))
    return _to_nchw(np.stack(arrays), path)


def save_npz(path: Path, images: torch.Tensor) -> None:
    """Write images as ``.npz`` (key ``images``, float32 NCHW in ``[-1, 1]``), atomically: no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".npz") as tmp:  # np.savez appends .npz to a name without it
        np.savez_compressed(tmp, images=images.detach().cpu().float().clamp(-1, 1).numpy())


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in ``[-1, 1]`` -> ``(N, H, W, C)`` uint8."""
    return ((images.detach().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_grid(path: Path, images: torch.Tensor, nrow: int | None = None, scale: int = 4) -> None:
    """Save images as one PNG grid (nearest-neighbour upscaled by ``scale`` so 16x16 digits are visible); videos
    (N, F, C, H, W) as one row of frames each."""
    from PIL import Image

    if images.ndim == 5:
        nrow, images = images.shape[1], images.flatten(0, 1)
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    pad = 1
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = arr[i]
    image = Image.fromarray(grid[..., 0] if c == 1 else grid)
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".png") as tmp:  # PIL picks the format from the suffix
        image.save(tmp)
