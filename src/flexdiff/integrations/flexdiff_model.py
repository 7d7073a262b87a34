"""A flexdiff :class:`~flexdiff.models.DiffusionModel`: the executor drives its hooks (it yields the
:class:`~flexdiff.executor.ScheduleExecutor`, whose ``start`` is the ``denoise`` callable of the samplers)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from flexdiff.executor import ScheduleExecutor
from flexdiff.executor import apply_schedule as apply_to_model
from flexdiff.integrations.base import Integration, register_integration
from flexdiff.models import DiffusionModel
from flexdiff.schedule import Schedule


class FlexdiffModelIntegration(Integration):
    name = "flexdiff-model"
    description = "a model from flexdiff.load_model"

    def matches(self, obj: Any) -> bool:
        return isinstance(obj, DiffusionModel)

    def apply(self, obj: Any, schedule: Schedule) -> AbstractContextManager[ScheduleExecutor]:
        return apply_to_model(obj, schedule)


register_integration(FlexdiffModelIntegration())
