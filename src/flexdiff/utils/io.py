"""Writing files and folders as a unit, and reading JSON: one helper per idea.

Every artefact flexdiff writes goes through :func:`atomic_path` (a sibling temporary file renamed over the target:
a crash or a full disk never leaves half a file, nor the temporary one) or, for a whole model folder,
:func:`replace_folder_files` (the old folder or the new one, never a mix).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flexdiff.errors import FlexdiffError, unwritable


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` when the block ends without error and is
    removed otherwise. ``suffix`` keeps writers that insist on an extension happy (``np.savez``: ``.npz``)."""
    tmp = path.with_name(path.name + ".tmp" + suffix)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        with contextlib.suppress(OSError):  # a read-only folder refuses even this: the write's own error is the one to report
            tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    """``data`` as JSON (one trailing newline) to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=indent) + "\n")


def _kind(mode: int) -> str:
    return (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )


def read_file_bytes(path: Path, what: str, fix: str, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path``; anything else is refused in one line *without reading*: a FIFO would
    block forever, ``/dev/zero`` never ends, a folder has no bytes. ``max_bytes``: a file larger than that is refused
    from its size before reading (and no more than that is ever read, should it grow meanwhile). The file is opened
    non-blocking and checked on the open descriptor, so a path swapped for a FIFO after a check cannot block."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FlexdiffError(path, what, fix) from None
    except OSError as exc:
        raise FlexdiffError(path, what, f"it cannot be opened ({exc.strerror or exc.__class__.__name__}); {fix}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FlexdiffError(f"{path} ({_kind(info.st_mode)})", what, f"pass a regular file; {fix}")
        if max_bytes is not None and info.st_size > max_bytes:
            raise FlexdiffError(f"{path} ({info.st_size:,} bytes)", f"{what} of at most {max_bytes:,} bytes", fix)
        chunks, total, limit = [], 0, None if max_bytes is None else max_bytes + 1
        while limit is None or total < limit:
            chunk = os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise FlexdiffError(path, what, f"it cannot be read ({exc.strerror or exc.__class__.__name__}); {fix}") from None
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise FlexdiffError(f"{path} (over {max_bytes:,} bytes)", f"{what} of at most {max_bytes:,} bytes", fix)
    return data


def read_json(path: Path, what: str = "a readable UTF-8 JSON file", fix: str = "restore the file", max_bytes: int | None = None) -> Any:
    """Parsed JSON of ``path``; a missing, unreadable, non-UTF-8 (JSON is UTF-8) or malformed file, or one that is
    not a regular file (:func:`read_file_bytes`; ``max_bytes``: its size bound) is a one-line
    :class:`FlexdiffError` naming ``what`` was expected and the ``fix``."""
    data = read_file_bytes(path, what, fix, max_bytes)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError, an integer over Python's 4300 digits
        raise FlexdiffError(path, what, f"it does not parse ({exc.__class__.__name__}); {fix}") from None


def read_json_object(path: Path, what: str = "a readable UTF-8 JSON config", fix: str = "restore the file") -> dict[str, Any]:
    """:func:`read_json` for files that must hold a JSON object (configs, results)."""
    data = read_json(path, what, fix)
    if not isinstance(data, dict):
        raise FlexdiffError(path, f"a JSON object ({what})", fix)
    return data


def read_json_or_none(path: Path) -> Any:
    """Parsed JSON, or None when the file is absent or unreadable: for a run's own state files, which a killed
    process may have left behind half-written and which are then simply recomputed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def scratch_path(out: Path, tag: str) -> Path:
    """A hidden sibling path of ``out`` private to this process: temporary artefacts live next to ``out`` (same file
    system, so renames are atomic) without taking a name a user could own, such as ``OUT.old``. ``abspath`` first:
    ``--out .`` has no name to derive one from."""
    out = Path(os.path.abspath(out))
    return out.with_name(f".{out.name}.{tag}-{os.getpid()}")


def scratch_folder(out: Path) -> Path:
    """An empty folder beside ``out`` to write a folder's new contents into, so a failed run leaves ``out`` as it was."""
    path = scratch_path(out, "partial")
    shutil.rmtree(path, ignore_errors=True)  # only a killed run of a recycled process id leaves one behind
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise unwritable(out, "a place this user can write to", exc) from None
    return path


def replace_folder_files(new: Path, out: Path, last: str = "model_index.json") -> None:
    """Move everything in ``new`` (a finished folder) into ``out``, replacing entries of the same name and keeping
    every other file (a model card's README.md); ``new`` is gone afterwards.

    Every move is a rename on one file system. Replaced entries wait in a hidden sibling folder until all new ones
    are in and move back on an error, so ``out`` ends with the whole old contents or the whole new ones. ``last``
    (``model_index.json``) leaves last and arrives first: should the process be killed mid-swap, ``out`` still reads
    as a model folder, so a rerun can repair it.
    """
    if not out.exists():
        new.replace(out)
        return
    old = scratch_path(out, "old")
    shutil.rmtree(old, ignore_errors=True)
    names = sorted((p.name for p in new.iterdir()), key=lambda name: name == last)
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        old.mkdir()
        for name in names:
            if os.path.lexists(out / name):
                (out / name).replace(old / name)
                moved_out.append(name)
        for name in reversed(names):
            (new / name).replace(out / name)
            moved_in.append(name)
    except BaseException as exc:
        for name in reversed(moved_in):
            (out / name).replace(new / name)
        for name in reversed(moved_out):
            (old / name).replace(out / name)
        shutil.rmtree(old, ignore_errors=True)
        if isinstance(exc, OSError):
            raise unwritable(out, "a place this user can write to", exc) from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(new, ignore_errors=True)


@contextmanager
def folder_as_unit(out: Path, last: str = "model_index.json") -> Iterator[Path]:
    """Yield a scratch folder to write a whole folder's contents into; on success they replace ``out``'s entries of
    the same name (:func:`replace_folder_files`; ``last``: the file that marks the set complete), on any error the
    scratch folder goes and ``out`` is untouched."""
    tmp = scratch_folder(out)
    try:
        yield tmp
        replace_folder_files(tmp, out, last)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_tensors(path: Path) -> tuple[dict[str, Any], dict[str, str], str]:
    """``(tensors, metadata, "")`` of a whole safetensors file, or ``({}, {}, why)`` when it cannot be read (missing,
    truncated, empty, not safetensors): the state an earlier process left on disk is checked, never trusted."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {}), ""
    except Exception as exc:  # SafetensorError, OSError, a header that is not JSON: the file is not whole
        return {}, {}, f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:80]})"


def state_mismatch(expected: dict[str, Any], tensors: dict[str, Any]) -> str:
    """What keeps ``tensors`` from loading into a module whose ``state_dict()`` is ``expected`` ("" when they fit):
    names missing or extra, shapes or dtypes that differ. Checked before ``load_state_dict``, which would otherwise
    copy part of a bad file into the module before failing."""
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        return f"tensors missing {missing[:2]} / unexpected {extra[:2]}"
    bad = [k for k, v in expected.items() if tuple(tensors[k].shape) != tuple(v.shape) or tensors[k].dtype != v.dtype]
    return f"tensors of another shape or dtype: {', '.join(bad[:3])}" if bad else ""
