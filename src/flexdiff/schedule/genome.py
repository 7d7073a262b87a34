"""Flexiffusion's segment-wise genome: the number of segments and, per segment, a branch and an interval."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from flexdiff.errors import FlexdiffError
from flexdiff.schedule.baselines import check_range
from flexdiff.schedule.kinds import FORECAST, FULL, NULL, PARTIAL, Step, _digits
from flexdiff.schedule.schedule import Schedule


def check_spacing(spacing: float) -> None:
    """A segment-boundary power must be positive and finite (1 = equal segments)."""
    if not 0 < spacing < math.inf:
        raise FlexdiffError(f"spacing={spacing:g}", "a positive power (1 = equal segments)", "e.g. @1.5 after the segments, or --spacings 1,1.5")


def _power_text(p: float) -> str:
    """A spacing power as genome text: short (``1.5``, ``2``) where that reads back as the same float, else exact, so
    that parsing a genome's text gives the genome back (a ``--spacings`` value with many digits must stay a choice)."""
    short = f"{p:g}"
    return short if float(short) == p else repr(p)


@dataclass(frozen=True)
class Segment:
    """One Flexiffusion segment: ``interval`` active steps (1 full + interval - 1 partial at ``branch``), then nulls.
    ``forecast``: the partial steps extrapolate the reused feature from the last two full steps instead of replaying
    it (``forecast:<branch>`` steps; written ``BRANCH:INTERVALf``)."""

    branch: int
    interval: int
    forecast: bool = False

    def __post_init__(self) -> None:
        if self.forecast and self.interval <= 1:  # no partial step to forecast: one genome, not two names for it
            object.__setattr__(self, "forecast", False)

    @property
    def partial(self) -> Step:
        return Step(FORECAST if self.forecast else PARTIAL, self.branch)

    def steps(self, length: int) -> tuple[Step, ...]:
        """The segment's ``length`` teacher steps: one full step, ``interval - 1`` partial ones, then nulls."""
        check_range("interval", self.interval, 1, length)
        return (Step(FULL),) + (self.partial,) * (self.interval - 1) + (Step(NULL),) * (length - self.interval)


@dataclass(frozen=True)
class Genome:
    """Flexiffusion's segment-wise encoding: one :class:`Segment` per segment of the T steps.

    ``spacing`` is the power p of the segment boundaries (:meth:`segment_lengths`): 1 cuts T into equal segments as
    Flexiffusion does; p > 1 makes the segments shorter towards the clean end of the trajectory (more active steps
    where the sample's detail is decided), the timestep-placement freedom AutoDiffusion searches step by step.
    """

    segments: tuple[Segment, ...]
    spacing: float = 1.0

    @staticmethod
    def segment_lengths(T: int, n_segments: int, spacing: float = 1.0) -> list[int]:
        """Segment ``s`` starts at step ``floor(T (1 - (1 - s/n)^p))``; with p = 1 at ``floor(s T / n)``, DDIM-k's active
        indices, so DDIM-k is exactly the genome of k equal segments with interval 1 and the search space contains the
        strongest step-cutting baseline. Starts are made strictly increasing (every segment at least one step long)."""
        check_range("segments", n_segments, 1, T)
        check_spacing(spacing)
        if spacing == 1.0:  # exact integer arithmetic: the paper's equal segments
            starts = [s * T // n_segments for s in range(n_segments)]
        else:
            starts = [math.floor(T * (1.0 - (1.0 - s / n_segments) ** spacing) + 1e-9) for s in range(n_segments)]
            for s in range(1, n_segments):  # merged starts move later, never past the room the later segments need
                starts[s] = max(starts[s], starts[s - 1] + 1)
            for s in range(n_segments - 1, 0, -1):
                starts[s] = min(starts[s], T - (n_segments - s), starts[s + 1] - 1 if s + 1 < n_segments else T - 1)
        starts.append(T)
        return [b - a for a, b in zip(starts, starts[1:])]

    def expand(self, timesteps: Sequence[int], sampler: str = "ddim") -> Schedule:
        lengths = self.segment_lengths(len(timesteps), len(self.segments), self.spacing)
        steps: list[Step] = []
        for seg, length in zip(self.segments, lengths):
            steps += seg.steps(length)
        meta = {"family": "genome", "genome": str(self)}
        return Schedule(tuple(steps), tuple(timesteps), sampler, self.key, meta)

    @classmethod
    def parse(cls, text: str) -> "Genome":
        """``"0:3,1:2"`` -> segments (branch 0, interval 3), (branch 1, interval 2), equal segments;
        ``"0:3,1:2@1.5"`` -> the same with segment boundaries at spacing power 1.5; ``"0:3f"``: forecast partial steps."""
        body, at, power = text.partition("@")
        try:
            spacing = float(power) if at else 1.0
        except ValueError:
            raise FlexdiffError(repr(text), "segments followed by an optional @POWER (e.g. 0:3,1:2@1.5)", "fix the spacing after '@'") from None
        check_spacing(spacing)
        segments = []
        for part in body.split(","):
            branch, sep, interval = part.strip().partition(":")
            forecast = interval.endswith("f")
            interval = interval.removesuffix("f")
            if not (sep and _digits(branch) and _digits(interval)):
                raise FlexdiffError(
                    repr(part), "a segment BRANCH:INTERVAL with non-negative integers, optionally f for forecast (e.g. 0:3 or 0:3f)", "fix --segments"
                )
            segments.append(Segment(int(branch), int(interval), forecast))
        return cls(tuple(segments), spacing)

    def __str__(self) -> str:
        body = ",".join(f"{s.branch}:{s.interval}{'f' if s.forecast else ''}" for s in self.segments)
        return body if self.spacing == 1.0 else f"{body}@{_power_text(self.spacing)}"

    @property
    def key(self) -> str:
        body = "genome-" + "_".join(f"b{s.branch}i{s.interval}{'f' if s.forecast else ''}" for s in self.segments)
        return body if self.spacing == 1.0 else f"{body}-p{_power_text(self.spacing)}"


def for_steps(schedule: Schedule, timesteps: Sequence[float]) -> Schedule:
    """``schedule`` on a teacher of ``len(timesteps)`` steps of the same scheduler: itself at its own T; a searched
    schedule (its file carries its genome) re-expanded at the new T so that it keeps its share of the teacher's MACs.
    The segments keep their length in steps: T' steps take ``round(S T' / T)`` segments (:func:`moved_genome`), each
    with the share of active steps the searched plan has over the same part of the trajectory, so the shares of full
    and of partial steps stay as searched: a plan searched for 1/3 of a
    50-step teacher is about 1/3 of a 20- or a 100-step one. (Stretching the S segments themselves kept the share of
    network calls but not of MACs: S full steps at any T, benchmarks/results/step_transfer.json.) The origin is
    recorded in ``meta`` (``searched_at``). A plan without a genome (hand-made, a baseline, a peer) has no rule to
    stretch by: refused."""
    if len(timesteps) == schedule.T:
        return (
            schedule
            if list(timesteps) == list(schedule.timesteps)
            else Schedule(schedule.steps, tuple(timesteps), schedule.sampler, schedule.name, schedule.meta)
        )
    text = schedule.meta.get("genome")
    if not isinstance(text, str):
        raise FlexdiffError(
            f"{schedule.name or 'schedule'} (T = {schedule.T}) at {len(timesteps)} steps",
            "a schedule made for this step count, or a searched one that carries its genome",
            f"make one for {len(timesteps)} steps (flexdiff schedule ... --steps {len(timesteps)}), or run it at {schedule.T} steps",
        )
    origin = schedule.meta.get("searched_at") or {"T": schedule.T, "genome": text}  # always re-expanded from where it was searched
    genome, T, new = Genome.parse(str(origin["genome"])), int(origin["T"]), len(timesteps)
    if new < T / 2:  # measured far from the teacher there: benchmarks/results/step_transfer.json (50 -> 20 steps: rFID 53)
        warnings.warn(
            f"{schedule.name or 'schedule'} searched at {T} steps, run at {new}: its partial steps then reuse features across steps "
            f"{T / new:.1f}x as long, measured far from the teacher below half the searched count; search at {new} steps for a plan made there",
            UserWarning,
            stacklevel=2,
        )
    moved = moved_genome(genome, T, new).expand(timesteps, schedule.sampler)
    meta = {k: v for k, v in schedule.meta.items() if k not in ("genome", "family", "searched_at")} | moved.meta | ({"searched_at": origin} if new != T else {})
    return Schedule(moved.steps, moved.timesteps, moved.sampler, moved.name, meta)


def moved_genome(genome: Genome, T: int, new: int) -> Genome:
    """``genome`` (searched at ``T`` steps) for ``new`` steps with segments of the same length in steps:
    ``round(S new / T)`` of them (1 to ``new``). New segment ``[a, b)`` covers searched steps ``[a T / new, b T / new)``:
    its interval is its length times the mean over that range of each step's segment's active share (interval /
    length, so a new segment inside one searched segment keeps that segment's share), rounded, 1 to its length; its
    branch and forecast gene those of the searched segment at the range's middle step."""
    lengths = Genome.segment_lengths(T, len(genome.segments), genome.spacing)
    owner = [i for i, length in enumerate(lengths) for _ in range(length)]  # searched step -> its segment
    share_of = [genome.segments[i].interval / length for i, length in enumerate(lengths) for _ in range(length)]  # searched step -> its segment's active share
    count = min(new, max(1, round(len(genome.segments) * new / T)))
    segments, start = [], 0
    for length in Genome.segment_lengths(new, count, genome.spacing):
        lo, hi = start * T // new, max(start * T // new + 1, (start + length) * T // new)
        gene = genome.segments[owner[(lo + hi - 1) // 2]]
        share = sum(share_of[lo:hi]) / (hi - lo)
        segments.append(Segment(gene.branch, min(length, max(1, round(share * length))), gene.forecast))
        start += length
    return Genome(tuple(segments), genome.spacing)
