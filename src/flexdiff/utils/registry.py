"""Named registries: samplers, step kinds, backbones, strategies, integrations, feature networks.

A registry maps a name to an entry and answers an unknown name with the one-line error every bad input gets. Built-in
entries live one per module in their package; :func:`import_submodules` imports them all, so adding an entry is adding
a file (the contract tests iterate over :meth:`Registry.names` and so test the new entry too).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from flexdiff.errors import FlexdiffError

T = TypeVar("T")


class Registry(Generic[T]):
    """``what`` names the kind of entry in errors ("a sampler"); ``fix`` says where the user picks one."""

    def __init__(self, what: str, fix: str) -> None:
        self.what, self.fix = what, fix
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""
        return lambda entry: self.register(name, entry)

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register toy entries and take them off again)."""
        self._entries.pop(name, None)

    def get(self, name: str, fix: str | None = None) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise FlexdiffError(repr(name), f"{self.what} in {{{', '.join(self.names())}}}", fix or self.fix) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def import_submodules(package: str, path: list[str]) -> None:
    """Import every public module of ``package`` (``__path__`` ``path``): each registers its entries on import."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
