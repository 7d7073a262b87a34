"""Text that leaves the process: on the terminal, values read from files are shown with their control characters
(and rich markup) escaped and their length bounded; in files and on the terminal, passwords in URLs are masked; a
name read from a file or a study becomes a file name only through :func:`safe_file_stem`."""

from __future__ import annotations

import hashlib
import re
import unicodedata

#: Unicode categories escaped in what is printed: controls (ESC, NUL), format characters (bidirectional overrides,
#: zero-width), line and paragraph separators, surrogates, private and unassigned code points
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: a URL's userinfo with a password: ``scheme:`` then any number of slashes (``postgresql:/user:pw@host``, a one-slash
#: typo, is masked too), the user, ``:``, and the password up to the *last* ``@`` before the host (a password with an
#: unencoded ``@`` or ``/`` is masked whole, not cut at its first ``@``). The host part after it holds no ``@``.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*:/*[^\s:/@?#]*):(?P<password>\S*)@(?P<tail>[^\s@]*)")
#: a password given as a query or keyword parameter: ``?password=...``, ``&pwd=...``, libpq's ``password=...``
_PARAMETER = re.compile(r"(?i)(?P<head>(?<![A-Za-z0-9_])(?:password|passwd|pwd)=)(?P<password>[^&\s#;'\"]*)")
MASK = "***"
#: the longest line a value read from a file or the command line is shown with (an error names it, it is no dump)
SHORT = 80


def escape(text: str) -> str:
    """``text`` with control characters (ESC, NUL, bidirectional overrides ...) shown as escapes, so a value read from
    a file cannot move the cursor, recolour, reorder or split what the terminal shows."""
    return "".join(ch.encode("unicode_escape").decode() if unicodedata.category(ch) in _UNPRINTABLE else ch for ch in text)


def escape_markup(text: str) -> str:
    """:func:`escape`, and rich's markup made literal (``[red]``, ``[link=...]``): for a value read from a file or a
    study that goes into a rich table or a rich print, where brackets are styling, not text."""
    from rich.markup import escape as rich_escape

    return rich_escape(escape(text))


def shorten(text: str, limit: int = SHORT) -> str:
    """``text`` cut to about ``limit`` characters, its head and tail kept around ``...`` and the number of characters
    left out: an error names a bad value without printing all of it (a 10-million-entry range, a 128 kB argument)."""
    if len(text) <= limit:
        return text
    keep = max(8, limit - 24) // 2
    return f"{text[:keep]}...({len(text) - 2 * keep} more characters)...{text[-keep:]}"


def mask_password(text: str) -> str:
    """Every password of a URL in ``text`` as ``***``: ``scheme://user:password@host`` (also with ``@`` or ``/`` in the
    password unencoded, and with one slash or none after the scheme) and ``password=`` parameters (``?password=``,
    ``&pwd=``, libpq's keyword form). For a storage URL shown on the terminal, logged or stored in a results file."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@{m['tail']}", text)
    return _PARAMETER.sub(lambda m: f"{m['head']}{MASK}", text)


def safe_file_stem(name: str, limit: int = 120) -> str:
    """A file name (without extension) for ``name``, a value read from a study or a file (a schedule's name): only
    letters, digits and ``. _ - + = @`` are kept, anything else (``/``, ``\\``, ``..`` as a whole, control characters,
    spaces) becomes ``_``, so the file stays in the folder it is written to, whatever the name says. A name that had to
    change, or is longer than ``limit``, gets a digest of the original, so two names never share a file."""
    stem = re.sub(r"[^A-Za-z0-9._+=@-]", "_", name).strip(".") or "schedule"
    if stem == name and len(stem) <= limit:
        return stem
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{stem[: limit - 13]}-{digest}"
