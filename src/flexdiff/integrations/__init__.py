"""Integrations: attaching a schedule to an object a user holds, one kind of object per module (the contract is
:class:`~flexdiff.integrations.base.Integration`); adding one is adding a module here."""

from flexdiff.integrations.base import (
    INTEGRATIONS,
    Integration,
    apply_schedule,
    integration_for,
    register_integration,
)
from flexdiff.utils.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["INTEGRATIONS", "Integration", "apply_schedule", "integration_for", "register_integration"]
