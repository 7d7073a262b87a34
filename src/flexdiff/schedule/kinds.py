"""Step kinds: what one of the teacher's timesteps does in a schedule, as data in a registry.

``full`` runs every unit and writes the cache; ``partial:b`` (DeepCache; DBCache on transformers) runs only the units
shallower than branch ``b`` and reuses the deeper ones from the cache of the latest full step; ``forecast:b`` is a
partial step whose reused feature is extrapolated from the last two full steps (TaylorSeer's first order,
:class:`flexdiff.hooks.StepState`; before the second full step it replays); ``null`` makes no network call (the
timestep is dropped and the sampler jumps over it). A kind is described by its properties, which is all the executor,
the cost model, the schedule's validation, the trajectory reuse, the search space's reading of plans and the report's
strips and counts read (no module but this one compares kind names), so a new kind that combines them differently is
one :func:`register_step_kind` call in its own module, and :mod:`flexdiff.testing`'s step-kind suite checks it.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    #: True: a column of every step count (:func:`count_steps`) even where a schedule has none of it.
    always_counted: bool = False
    #: how the report's schedule strips draw it: a colour, or for kinds with a branch a matplotlib colormap (deeper
    #: branch, darker shade)
    colour: str = "tab:gray"
    #: the strips' legend text
    label: str = ""

    @property
    def replays(self) -> bool:
        """Reuses deep units from the cache (a partial or forecast step): what a segment's steps after its full step do."""
        return self.takes_branch and not self.fills_cache


STEP_KINDS: Registry[StepKind] = Registry("a step kind", "fix the schedule entry (see `flexdiff inspect` for branches)")


def register_step_kind(kind: StepKind) -> StepKind:
    return STEP_KINDS.register(kind.name, kind)


register_step_kind(StepKind(FULL, fills_cache=True, always_counted=True, colour="#1f3b73", label="full"))
register_step_kind(StepKind(PARTIAL, takes_branch=True, always_counted=True, colour="Oranges", label="partial"))
register_step_kind(StepKind(NULL, calls_network=False, always_counted=True, colour="#eeeeee", label="null (skipped)"))
register_step_kind(StepKind(FORECAST, takes_branch=True, forecasts=True, colour="Purples", label="forecast"))


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


def count_steps(steps: Iterable[Step | str]) -> dict[str, int]:
    """Steps per kind, in registry order: the kinds marked ``always_counted`` always, any other where present.
    Takes steps or their text (a results.json row's ``steps``)."""
    kinds = [(s if isinstance(s, Step) else Step.parse(s)).kind for s in steps]
    return {name: kinds.count(name) for name, kind in STEP_KINDS.items() if kind.always_counted or name in kinds}
