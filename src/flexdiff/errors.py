"""The one exception type users see.

Every bad input (a wrong model folder, an unknown sampler, a corrupt ``.npz`` ...) raises :class:`FlexdiffError`
with a single line that names the value, what was expected and how to fix it. The CLI prints that line and exits
with code 2; Python callers can catch it (it is a ``ValueError``).
"""

from __future__ import annotations

import os
from pathlib import Path


class FlexdiffError(ValueError):
    """A user-facing error: one line naming the value, the expectation and the fix."""

    def __init__(self, value: object, expected: str, fix: str) -> None:
        self.value = value
        self.expected = expected
        self.fix = fix
        # one line whatever the parts hold (a schedule name or an OS message with a newline)
        super().__init__(f"{value!s}: expected {expected}; {fix}".replace("\r", "\\r").replace("\n", "\\n"))


def unwritable(path: Path, expected: str, exc: OSError) -> FlexdiffError:
    """The one-line error for an ``--out`` the OS would not let us write (the OS's reason in brackets)."""
    return FlexdiffError(f"--out {path}", expected, f"choose another --out ({exc.strerror or exc.__class__.__name__})")


def output_folder(path: Path, create: bool = True, staged: bool = False) -> Path:
    """Create the folder a command writes its artefacts to (and its parents); a path that is a file, or one that
    cannot be created, is a one-line error rather than a traceback. ``create=False`` only checks, before the work,
    that it could be (no file in the way), so a run that fails later leaves no empty folder behind. Either way a
    read-only place is refused by name (``mkdir`` alone would not tell: an existing folder is not checked, and root
    may create folders where the permissions say no), and so is a dangling symlink or a symlink loop on the way (the
    final rename would fail on it once the work is done). ``staged``: the command writes its files into a sibling of
    ``path`` and swaps them in (:func:`flexdiff.utils.io.folder_as_unit`), so the folder holding ``path`` must be
    writable as well."""
    dangling = next((p for p in (path, *path.parents) if os.path.lexists(p) and not p.exists()), None)
    if dangling is not None:  # a link to nowhere, or a loop: the write at the end would fail after all the work
        raise FlexdiffError(
            f"--out {path}",
            "a folder (existing or creatable)",
            f"choose another --out, or remove the link ({dangling} is a symlink to a missing place or a loop)",
        )
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise FlexdiffError(f"--out {path}", "a folder (existing or creatable)", f"choose another --out ({existing} is a file)")
    holder = path.parent if staged and existing == path else None
    for place in (existing, holder):  # a read-only place: refused before the work, not after it
        if place is not None and not os.access(place, os.W_OK | os.X_OK):
            raise FlexdiffError(
                f"--out {path}",
                "a folder this user can write" + (" in a folder it can write" if place is holder else ""),
                f"choose another --out ({place} is not writable)",
            )
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(path, "a folder (existing or creatable)", exc) from None
    return path
