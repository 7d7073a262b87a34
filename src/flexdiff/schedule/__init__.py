"""Schedules: step kinds (:mod:`.kinds`), the validated schedule and its file (:mod:`.schedule`), every baseline's
constructor (:mod:`.baselines`) and Flexiffusion's genome (:mod:`.genome`)."""

from flexdiff.schedule.baselines import (
    check_range,
    ddim_k,
    deepcache_nonuniform,
    deepcache_uniform,
    full,
    nonuniform_full_indices,
)
from flexdiff.schedule.binding import Binding, bind, check_binding
from flexdiff.schedule.genome import Genome, Segment, check_spacing, for_steps
from flexdiff.schedule.kinds import (
    FORECAST,
    FULL,
    NULL,
    PARTIAL,
    STEP_KINDS,
    Step,
    StepKind,
    count_steps,
    register_step_kind,
)
from flexdiff.schedule.schedule import FORMAT, VERSION, Schedule

__all__ = [
    "Binding",
    "bind",
    "check_binding",
    "FORECAST",
    "FORMAT",
    "FULL",
    "NULL",
    "PARTIAL",
    "STEP_KINDS",
    "VERSION",
    "Genome",
    "Schedule",
    "Segment",
    "Step",
    "StepKind",
    "check_range",
    "check_spacing",
    "count_steps",
    "ddim_k",
    "deepcache_nonuniform",
    "deepcache_uniform",
    "for_steps",
    "full",
    "nonuniform_full_indices",
    "register_step_kind",
]
