"""The contract of an integration: how a schedule attaches to an object a user holds (a flexdiff model today; the
user's own diffusers pipeline next) and comes off again, restoring it exactly."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import Schedule
from flexdiff.utils.registry import Registry


class Integration(ABC):
    """One kind of object schedules attach to. Subclasses register an instance with :func:`register_integration`."""

    #: registry name, e.g. "flexdiff-model"
    name: str = ""
    #: what objects of this kind are, for error messages
    description: str = ""

    @abstractmethod
    def matches(self, obj: Any) -> bool:
        """Whether this integration handles ``obj``."""

    @abstractmethod
    def apply(self, obj: Any, schedule: Schedule) -> AbstractContextManager[Any]:
        """A context manager: inside it ``obj`` runs under ``schedule``; leaving it restores ``obj`` bit for bit."""


INTEGRATIONS: Registry[Integration] = Registry("an integration", "pass an object flexdiff integrates with")


def register_integration(integration: Integration) -> Integration:
    return INTEGRATIONS.register(integration.name, integration)


def integration_for(obj: Any) -> Integration:
    """The registered integration for ``obj``; a one-line error naming what is supported otherwise (never a silent
    no-op: a schedule that attaches to nothing would leave the user's images unchanged without a word)."""
    for _, integration in INTEGRATIONS.items():
        if integration.matches(obj):
            return integration
    supported = "; ".join(f"{i.name}: {i.description}" for _, i in INTEGRATIONS.items())
    raise FlexdiffError(type(obj).__name__, f"an object flexdiff can attach a schedule to ({supported})", "load the model with flexdiff.load_model(...) first")


def apply_schedule(obj: Any, schedule: Schedule) -> AbstractContextManager[Any]:
    """Attach ``schedule`` to ``obj`` for the duration of a ``with`` block (see each integration for what it yields)."""
    return integration_for(obj).apply(obj, schedule)


__all__ = ["INTEGRATIONS", "Integration", "apply_schedule", "integration_for", "register_integration"]
