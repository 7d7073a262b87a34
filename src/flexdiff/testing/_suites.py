"""The suite and fixture registries behind :mod:`flexdiff.testing` (kept apart so suite modules import them without
importing each other)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flexdiff.errors import FlexdiffError
from flexdiff.utils.registry import Registry


@dataclass
class Suite:
    """The checks every entry of ``registry`` keeps: each takes the entry's name and raises AssertionError if broken."""

    registry: Registry[Any]
    checks: list[Callable[[str], None]] = field(default_factory=list)


SUITES: dict[str, Suite] = {}
_FIXTURES: dict[tuple[str, str], Callable[[], Any]] = {}


def register_suite(label: str, registry: Registry[Any], checks: list[Callable[[str], None]]) -> Suite:
    SUITES[label] = Suite(registry, checks)
    return SUITES[label]


def fixture_for(label: str, name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator: the zero-argument factory of what suite ``label``'s checks run entry ``name`` on (a backbone: a list
    of tiny :class:`~flexdiff.models.DiffusionModel`; an integration: a :class:`~flexdiff.testing.integrations.Target`;
    a hook technique: the backbone names it is for)."""

    def register(factory: Callable[[], Any]) -> Callable[[], Any]:
        _FIXTURES[(label, name)] = factory
        return factory

    return register


def fixture(label: str, name: str, default: Callable[[], Any] | None = None) -> Any:
    """What entry ``name`` declared with :func:`fixture_for` (built), else ``default()``; a one-line error if neither."""
    factory = _FIXTURES.get((label, name), default)
    if factory is None:
        raise FlexdiffError(
            f"{label} {name!r}",
            "a fixture its contract suite runs on",
            f"declare one in the entry's module with @flexdiff.testing.fixture_for({label!r}, {name!r})",
        )
    return factory()
