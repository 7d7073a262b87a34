"""Text that leaves the process: on the terminal, values read from files are shown with their control characters
escaped; in files and on the terminal, passwords in URLs are masked."""

from __future__ import annotations

import re
import unicodedata

#: Unicode categories escaped in what is printed: controls (ESC, NUL), format characters (bidirectional overrides,
#: zero-width), line and paragraph separators, surrogates, private and unassigned code points
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: ``scheme://user:password@host``: the password part of a URL's userinfo
_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@\s]*)@")
MASK = "***"


def escape(text: str) -> str:
    """``text`` with control characters (ESC, NUL, bidirectional overrides ...) shown as escapes, so a value read from
    a file cannot move the cursor, recolour, reorder or split what the terminal shows."""
    return "".join(ch.encode("unicode_escape").decode() if unicodedata.category(ch) in _UNPRINTABLE else ch for ch in text)


def mask_password(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` as ``scheme://user:***@`` (a storage URL shown or stored)."""
    return _PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
