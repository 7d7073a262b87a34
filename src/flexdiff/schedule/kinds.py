"""Step kinds: what one of the teacher's timesteps does in a schedule, as data in a registry.

``full`` runs every unit and writes the cache; ``partial:b`` (DeepCache; DBCache on transformers) runs only the units
shallower than branch ``b`` and reuses the deeper ones from the cache of the latest full step; ``forecast:b`` is a
partial step whose reused feature is extrapolated from the last two full steps (TaylorSeer's first order,
:class:`flexdiff.hooks.StepState`; before the second full step it replays); ``null`` makes no network call (the
timestep is dropped and the sampler jumps over it). A kind is described by three properties, which is all the executor, the
cost model and the schedule's validation read, so a new kind that combines them differently is one
:func:`register_step_kind` call in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexdiff.errors import FlexdiffError
from flexdiff.utils.registry import Registry

FULL, NULL, PARTIAL, FORECAST = "full", "null", "partial", "forecast"


@dataclass(frozen=True)
class StepKind:
    """How a step of this kind runs: the properties the executor, the cost model and validation dispatch on."""

    name: str
    #: False: no network call; the sampler never sees the timestep (its cost is 0).
    calls_network: bool = True
    #: True: written ``name:<branch>``; the units deeper than the branch replay the cache (cost: that branch's MACs).
    takes_branch: bool = False
    #: True: computes every unit and records what the following replaying steps need (cost: a full step).
    fills_cache: bool = False
    #: True: the reused feature is extrapolated from the last two cache-filling steps instead of replayed.
    forecasts: bool = False


STEP_KINDS: Registry[StepKind] = Registry("a step kind", "fix the schedule entry (see `flexdiff inspect` for branches)")


def register_step_kind(kind: StepKind) -> StepKind:
    return STEP_KINDS.register(kind.name, kind)


register_step_kind(StepKind(FULL, fills_cache=True))
register_step_kind(StepKind(PARTIAL, takes_branch=True))
register_step_kind(StepKind(NULL, calls_network=False))
register_step_kind(StepKind(FORECAST, takes_branch=True, forecasts=True))


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit()`` alone takes "²", which ``int()`` then refuses with a traceback."""
    return text.isascii() and text.isdigit()


def _forms() -> str:
    return ", ".join(f"'{k.name}:<branch>'" if k.takes_branch else f"'{k.name}'" for _, k in STEP_KINDS.items())


@dataclass(frozen=True, order=True)
class Step:
    """One step. ``branch`` is set exactly for kinds that take one (0 = shallowest skip branch, cheapest)."""

    kind: str
    branch: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Step":
        head, colon, tail = text.partition(":")
        if head in STEP_KINDS:
            kind = STEP_KINDS.get(head)
            if not kind.takes_branch and not colon:
                return cls(head)
            if kind.takes_branch and _digits(tail):
                return cls(head, int(tail))
        raise FlexdiffError(repr(text), f"a step {_forms()} (e.g. 'partial:0')", "fix the schedule entry")

    @property
    def info(self) -> StepKind:
        return STEP_KINDS.get(self.kind)

    def valid(self) -> bool:
        """A registered kind, with a branch >= 0 exactly when the kind takes one."""
        if self.kind not in STEP_KINDS:
            return False
        takes = STEP_KINDS.get(self.kind).takes_branch
        return takes == (self.branch is not None) and (self.branch is None or self.branch >= 0)

    def __str__(self) -> str:
        return f"{self.kind}:{self.branch}" if self.branch is not None else self.kind
