"""The one exception type users see.

Every bad input (a wrong model folder, an unknown sampler, a corrupt ``.npz`` ...) raises :class:`FlexdiffError`
with a single line that names the value, what was expected and how to fix it. The CLI prints that line and exits
with code 2; Python callers can catch it (it is a ``ValueError``).
"""

from __future__ import annotations


class FlexdiffError(ValueError):
    """A user-facing error: one line naming the value, the expectation and the fix."""

    def __init__(self, value: object, expected: str, fix: str) -> None:
        self.value = value
        self.expected = expected
        self.fix = fix
        super().__init__(f"{value!s}: expected {expected}; {fix}")
