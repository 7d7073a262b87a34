"""Integrations: attaching a schedule to an object a user holds, one kind of object per module (the contract is
:class:`~flexdiff.integrations.base.Integration`); adding one is adding a module here."""

from flexdiff.integrations.base import (
    INTEGRATIONS,
    Integration,
    disable,
    enable,
    enabled,
    integration_for,
    register_integration,
)
from flexdiff.utils.registry import import_submodules

import_submodules(__name__, __path__)

from flexdiff.integrations.diffusers_pipeline import pipeline_timesteps  # noqa: E402 - after discovery

__all__ = ["INTEGRATIONS", "Integration", "disable", "enable", "enabled", "integration_for", "pipeline_timesteps", "register_integration"]
