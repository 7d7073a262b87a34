"""The integration contract: every registered integration, on the tiny object it declares
(``@fixture_for("integration", name)`` returning a :class:`Target`), recognises it, runs the all-full schedule as the
object itself, changes its output under a cheaper schedule, refuses a second schedule in one line, and leaves the
object bit-identical after :func:`~flexdiff.integrations.disable`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.integrations import INTEGRATIONS, disable, enable, integration_for
from flexdiff.schedule import ddim_k, full
from flexdiff.testing._suites import fixture, register_suite


@dataclass
class Target:
    """An object an integration attaches to, how to call it (-> images, from fixed noise) and its teacher grid."""

    obj: Any
    call: Callable[[Any], torch.Tensor]
    timesteps: Callable[[Any], list[Any]]
    sampler: str = "pipeline"


def enables_disables_and_refuses_a_second_schedule(name: str) -> None:
    target: Target = fixture("integration", name)
    obj = target.obj
    assert integration_for(obj).name == name, f"{type(obj).__name__} is taken by {integration_for(obj).name}, not {name}"
    plain = target.call(obj)
    ts = target.timesteps(obj)
    enable(obj, full(ts, target.sampler))
    try:
        assert torch.equal(target.call(obj), plain), f"{name}: the all-full schedule is not the object itself"
        try:
            enable(obj, full(ts, target.sampler))
        except FlexdiffError as error:
            assert "\n" not in str(error)
        else:
            raise AssertionError(f"{name}: a second schedule was enabled without a one-line error")
    finally:
        disable(obj)
    enable(obj, ddim_k(ts, max(1, len(ts) // 2), target.sampler))
    try:
        assert not torch.equal(target.call(obj), plain), f"{name}: a schedule with half the steps changed nothing"
    finally:
        disable(obj)
    assert torch.equal(target.call(obj), plain), f"{name}: the object changed after disable"


register_suite("integration", INTEGRATIONS, [enables_disables_and_refuses_a_second_schedule])
