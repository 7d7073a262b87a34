"""Schedules as data: one step type per teacher timestep, a canonical JSON file, and every baseline's constructor.

A schedule lists, for each of the teacher's T timesteps, ``full`` (all blocks; refreshes the feature cache),
``partial:b`` (DeepCache: only the layers shallower than skip branch ``b`` run, deeper features come from the cache
of the latest full step) or ``null`` (no network call: the timestep is dropped and the sampler jumps over it).
The first step is always full. Validated once, on construction; samplers only ever see the active timesteps.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flexdiff.errors import FlexdiffError, output_folder, unwritable
from flexdiff.samplers import get_sampler

FORMAT = "flexdiff.schedule"
VERSION = 1
FULL, NULL, PARTIAL = "full", "null", "partial"


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit()`` alone takes "²", which ``int()`` then refuses with a traceback."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, order=True)
class Step:
    """One step type. ``branch`` is set for partial steps only (0 = shallowest skip branch, cheapest)."""

    kind: str
    branch: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Step":
        if text in (FULL, NULL):
            return cls(text)
        head, _, tail = text.partition(":")
        if head == PARTIAL and _digits(tail):
            return cls(PARTIAL, int(tail))
        raise FlexdiffError(repr(text), "a step 'full', 'null' or 'partial:<branch>' (e.g. 'partial:0')", "fix the schedule entry")

    def __str__(self) -> str:
        return f"{PARTIAL}:{self.branch}" if self.kind == PARTIAL else self.kind


@dataclass(frozen=True)
class Schedule:
    """The explicit per-step plan over the teacher's ``timesteps`` (decreasing, length T) for ``sampler``."""

    steps: tuple[Step, ...]
    timesteps: tuple[int, ...]
    sampler: str = "ddim"
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = self.name or "schedule"
        if len(self.steps) != len(self.timesteps):
            raise FlexdiffError(f"{where} with {len(self.steps)} steps", f"one step per teacher timestep ({len(self.timesteps)})", "regenerate the schedule for this T")
        if not self.steps or self.steps[0].kind != FULL:
            raise FlexdiffError(f"{where} step 0 = {self.steps[0] if self.steps else 'nothing'}", "the first step to be 'full' (it fills the cache)", "make step 0 full")
        if any(b >= a for a, b in zip(self.timesteps, self.timesteps[1:])):
            raise FlexdiffError(f"{where} timesteps", "strictly decreasing timesteps", "list them from noisy to clean")
        for i, step in enumerate(self.steps):
            if step.kind not in (FULL, NULL, PARTIAL) or (step.kind == PARTIAL) != (step.branch is not None) or (step.branch is not None and step.branch < 0):
                raise FlexdiffError(f"{where} step {i} = {step}", "full, null or partial:<branch >= 0>", "fix that entry")

    @property
    def T(self) -> int:  # noqa: N802 - the papers' name for the number of teacher steps
        return len(self.steps)

    @property
    def active_indices(self) -> list[int]:
        """Indices of the steps that call the network (full and partial); null steps are dropped."""
        return [i for i, s in enumerate(self.steps) if s.kind != NULL]

    @property
    def active_timesteps(self) -> list[int]:
        return [self.timesteps[i] for i in self.active_indices]

    @property
    def max_branch(self) -> int:
        return max((s.branch for s in self.steps if s.branch is not None), default=-1)

    @property
    def key(self) -> str:
        """Identity of the plan (steps, timesteps, sampler), whatever its name: equal keys run identically."""
        text = f"{self.sampler}|{','.join(map(str, self.timesteps))}|{','.join(map(str, self.steps))}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def counts(self) -> dict[str, int]:
        return {kind: sum(s.kind == kind for s in self.steps) for kind in (FULL, PARTIAL, NULL)}

    def check_timesteps(self, num_train_timesteps: int, where: object = None) -> None:
        """The teacher timesteps must lie in the model's training range (checked before any sampling starts)."""
        if self.timesteps[0] >= num_train_timesteps or self.timesteps[-1] < 0:
            raise FlexdiffError(f"{where or self.name or 'schedule'} timesteps {self.timesteps[0]}..{self.timesteps[-1]}",
                                f"timesteps in [0, {num_train_timesteps}) for this model", "write the schedule for this model with `flexdiff schedule --model ...`")

    def check_branches(self, num_branches: int) -> None:
        """Every partial branch must exist in the model the schedule runs on."""
        if self.max_branch >= num_branches:
            step = next(i for i, s in enumerate(self.steps) if s.branch is not None and s.branch >= num_branches)
            raise FlexdiffError(
                f"{self.name or 'schedule'} step {step} = {self.steps[step]}",
                f"a branch in [0, {num_branches - 1}] for this model",
                "see `flexdiff inspect` for the model's branches",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "sampler": self.sampler,
            "T": self.T,
            "timesteps": list(self.timesteps),
            "steps": [str(s) for s in self.steps],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Any, where: object = "schedule") -> "Schedule":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FlexdiffError(where, f"a JSON object with \"format\": \"{FORMAT}\"", "write it with `flexdiff schedule`")
        if data.get("version") != VERSION:
            raise FlexdiffError(f"{where} version {data.get('version')!r}", f"schedule format version {VERSION}", "regenerate it with this flexdiff")
        steps, timesteps = data.get("steps"), data.get("timesteps")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise FlexdiffError(f"{where} steps", "a list of step strings", "fix the 'steps' field")
        if not isinstance(timesteps, list) or not all(isinstance(t, int) for t in timesteps):
            raise FlexdiffError(f"{where} timesteps", "a list of integer timesteps", "fix the 'timesteps' field")
        if data.get("T") != len(steps):
            raise FlexdiffError(f"{where} T={data.get('T')!r} with {len(steps)} steps", "T equal to the number of steps", "fix 'T' or 'steps'")
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise FlexdiffError(f"{where} meta", "a JSON object (or no 'meta' field)", "fix or drop the 'meta' field")
        sampler = str(data.get("sampler", "ddim"))
        get_sampler(sampler, fix=f"fix the 'sampler' field of {where}")
        return cls(tuple(Step.parse(s) for s in steps), tuple(timesteps), sampler, str(data.get("name", "")), dict(meta))

    def save(self, path: Path) -> None:
        """Write canonical JSON atomically (a failed write never leaves half a file, nor its temporary file)."""
        if path.is_dir():
            raise FlexdiffError(f"--out {path}", "a schedule file path, not a folder", f"pass e.g. --out {path / 'schedule.json'}")
        output_folder(path.parent)
        tmp = path.with_name(path.name + ".tmp")
        fields = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in self.to_dict().items())
        try:
            tmp.write_text("{\n" + fields + "\n}\n")  # one field per line, lists on one line
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise unwritable(path, "a writable schedule file path", exc) from None

    @classmethod
    def load(cls, path: str | Path) -> "Schedule":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FlexdiffError(path, "an existing schedule JSON file", "write one with `flexdiff schedule ... --out FILE`") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FlexdiffError(path, "a valid schedule JSON file", f"it does not parse ({exc.__class__.__name__}); regenerate it") from None
        return cls.from_dict(data, where=path)


# --- constructors: the teacher, every baseline, and Flexiffusion's genome -------------------------------------------


def full(timesteps: Sequence[int], sampler: str = "ddim") -> Schedule:
    """The teacher: every step full."""
    return Schedule(tuple(Step(FULL) for _ in timesteps), tuple(timesteps), sampler, f"full-{len(timesteps)}", {"family": "teacher"})


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise FlexdiffError(f"{name}={value}", f"{name} in [{low}, {high}]", "pick a value in that range")


def ddim_k(timesteps: Sequence[int], k: int, sampler: str = "ddim") -> Schedule:
    """DDIM-k: ``k`` evenly spread active (full) steps at indices ``floor(j T / k)``, the rest null."""
    T = len(timesteps)
    _check_range("k", k, 1, T)
    active = {j * T // k for j in range(k)}
    steps = tuple(Step(FULL) if i in active else Step(NULL) for i in range(T))
    return Schedule(steps, tuple(timesteps), sampler, f"ddim-{k}", {"family": "ddim", "k": k})


def deepcache_uniform(timesteps: Sequence[int], interval: int, branch: int = 0, sampler: str = "ddim") -> Schedule:
    """DeepCache uniform 1:N (Ma et al. 2024): full at 0, N, 2N, ...; the N - 1 steps between are partial."""
    T = len(timesteps)
    _check_range("interval", interval, 1, T)
    steps = tuple(Step(FULL) if i % interval == 0 else Step(PARTIAL, branch) for i in range(T))
    return Schedule(steps, tuple(timesteps), sampler, f"deepcache-N{interval}-b{branch}", {"family": "deepcache", "interval": interval, "branch": branch})


def nonuniform_full_indices(T: int, n_full: int, center: int, power: float) -> list[int]:
    """``n_full`` full-step indices in [0, T), denser around ``center``: x uniform on [-c^(1/p), (T-1-c)^(1/p)], index = c + sign(x)|x|^p.

    Like DeepCache's non-uniform 1:N; when rounding merges indices the power is lowered by 0.02 until they are distinct.
    """
    _check_range("center", center, 0, T - 1)
    if not 1 <= power < math.inf:  # p < 1 would thin the steps around the centre, the opposite of the method (and 0 divides)
        raise FlexdiffError(f"--power {power}", "a power >= 1 (1 = uniform; DeepCache uses about 1.4)", "pass e.g. --power 1.4")
    n_full = min(n_full, T)
    p = power
    while True:
        x = np.linspace(-(center ** (1 / p)), (T - 1 - center) ** (1 / p), n_full)
        idx = sorted({0, *(int(round(center + math.copysign(abs(v) ** p, v))) for v in x)})
        if len(idx) >= n_full or p <= 1.0:
            return idx[:n_full] if len(idx) > n_full else idx
        p = max(1.0, p - 0.02)


def deepcache_nonuniform(timesteps: Sequence[int], interval: int, branch: int = 0, center: int = 15, power: float = 1.4, sampler: str = "ddim") -> Schedule:
    """DeepCache non-uniform 1:N: ceil(T / N) full steps clustered around step ``center`` with ``power``; the rest partial."""
    T = len(timesteps)
    _check_range("interval", interval, 1, T)
    fulls = set(nonuniform_full_indices(T, math.ceil(T / interval), center, power))
    steps = tuple(Step(FULL) if i in fulls else Step(PARTIAL, branch) for i in range(T))
    meta = {"family": "deepcache-nonuniform", "interval": interval, "branch": branch, "center": center, "power": power}
    return Schedule(steps, tuple(timesteps), sampler, f"deepcache-nu-N{interval}-b{branch}-c{center}", meta)


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
    """One Flexiffusion segment: ``interval`` active steps (1 full + interval - 1 partial at ``branch``), then nulls."""

    branch: int
    interval: int


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
        _check_range("segments", n_segments, 1, T)
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
            _check_range("interval", seg.interval, 1, length)
            steps += [Step(FULL)] + [Step(PARTIAL, seg.branch)] * (seg.interval - 1) + [Step(NULL)] * (length - seg.interval)
        meta = {"family": "genome", "genome": str(self)}
        return Schedule(tuple(steps), tuple(timesteps), sampler, self.key, meta)

    @classmethod
    def parse(cls, text: str) -> "Genome":
        """``"0:3,1:2"`` -> segments (branch 0, interval 3), (branch 1, interval 2), equal segments;
        ``"0:3,1:2@1.5"`` -> the same with segment boundaries at spacing power 1.5."""
        body, at, power = text.partition("@")
        try:
            spacing = float(power) if at else 1.0
        except ValueError:
            raise FlexdiffError(repr(text), "segments followed by an optional @POWER (e.g. 0:3,1:2@1.5)", "fix the spacing after '@'") from None
        check_spacing(spacing)
        segments = []
        for part in body.split(","):
            branch, sep, interval = part.strip().partition(":")
            if not (sep and _digits(branch) and _digits(interval)):
                raise FlexdiffError(repr(part), "a segment BRANCH:INTERVAL with non-negative integers (e.g. 0:3)", "fix --segments")
            segments.append(Segment(int(branch), int(interval)))
        return cls(tuple(segments), spacing)

    def __str__(self) -> str:
        body = ",".join(f"{s.branch}:{s.interval}" for s in self.segments)
        return body if self.spacing == 1.0 else f"{body}@{_power_text(self.spacing)}"

    @property
    def key(self) -> str:
        body = "genome-" + "_".join(f"b{s.branch}i{s.interval}" for s in self.segments)
        return body if self.spacing == 1.0 else f"{body}-p{_power_text(self.spacing)}"
