"""The segment-wise search space of Flexiffusion: number of segments, and per segment a branch and an interval;
optionally the spacing power of the segment boundaries (``spacings``; (1.0,) = the paper's equal segments).

Size: sum over spacings and segment counts n of (branches x intervals)^n, instead of 3^T step-wise. The first step
of every expanded schedule is full by construction (each segment starts with its full step).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import Genome, Schedule, Segment, check_spacing
from flexdiff.utils.text import shorten


@dataclass(frozen=True)
class GenomeSpace:
    """All genomes over ``T`` teacher steps with a segment count from ``segment_counts``, ``num_branches`` branches and
    a boundary spacing power from ``spacings``. ``null_steps=False`` (a user's scheduler that cannot be given custom
    timesteps, e.g. PNDM or DDIM in ``pipe(...)``): every segment is active to its end (full, then partial steps).
    ``forecast=True`` adds a gene per segment: its partial steps replay (``partial``) or forecast (``forecast``).
    ``cost``: a genome's MACs per image (the search's cost model), for strategies that keep to the budgets."""

    T: int
    segment_counts: tuple[int, ...]
    num_branches: int
    spacings: tuple[float, ...] = (1.0,)
    null_steps: bool = True
    forecast: bool = False
    cost: Callable[[Genome], float] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        bad = [n for n in self.segment_counts if not 1 <= n <= self.T]
        if bad or not self.segment_counts:
            shown = shorten(",".join(map(str, bad[:20])))  # the bad ones, and only the first few: a list of millions is no error line
            raise FlexdiffError(
                f"segment counts {shown or 'none'}" + (f" (and {len(bad) - 20} more)" if len(bad) > 20 else ""),
                f"counts in [1, T={self.T}]",
                "pick e.g. --segments 5,7,10",
            )
        if self.num_branches < 1:
            raise FlexdiffError(self.num_branches, "a model with at least one skip branch", "use a UNet with skip connections")
        if not self.spacings:
            raise FlexdiffError("spacings []", "at least one power (1 = equal segments)", "pick e.g. --spacings 1,1.5,2")
        for p in self.spacings:
            check_spacing(p)

    def lengths(self, n_segments: int, spacing: float = 1.0) -> list[int]:
        return Genome.segment_lengths(self.T, n_segments, spacing)

    def _fit(self, genome: Genome) -> Genome:
        """The genome itself, or without null steps (each interval its segment's length) when the space has none."""
        if self.null_steps:
            return genome
        lengths = self.lengths(len(genome.segments), genome.spacing)
        return Genome(tuple(replace(seg, interval=length) for seg, length in zip(genome.segments, lengths)), genome.spacing)

    # --- Optuna parameters: a fixed set (segments; branch<s>, active<s> for every possible segment s) ----------
    # Fixed names and distributions keep NSGA-II's search space whole; segments beyond the count are ignored.
    # active<s> in [0, 1] is the active fraction: interval = 1 + round(active * (length - 1)); spacing is categorical.
    @property
    def max_segments(self) -> int:
        return max(self.segment_counts)

    def to_params(self, genome: Genome) -> dict[str, float | int]:
        n = len(genome.segments)
        params: dict[str, float | int] = {"segments": n, "spacing": genome.spacing}
        for s in range(self.max_segments):
            if s < n:
                seg, length = genome.segments[s], self.lengths(n, genome.spacing)[s]
                params[f"branch{s}"], params[f"active{s}"] = seg.branch, (seg.interval - 1) / (length - 1) if length > 1 else 0.0
            else:
                params[f"branch{s}"], params[f"active{s}"] = 0, 0.0
            if self.forecast:
                params[f"forecast{s}"] = int(s < n and genome.segments[s].forecast)
        return params

    def from_params(self, params: dict[str, float | int]) -> Genome:
        n, spacing = int(params["segments"]), float(params.get("spacing", 1.0))
        lengths = self.lengths(n, spacing)
        return self._fit(
            Genome(
                tuple(
                    Segment(int(params[f"branch{s}"]), 1 + round(float(params[f"active{s}"]) * (length - 1)), bool(params.get(f"forecast{s}", 0)))
                    for s, length in enumerate(lengths)
                ),
                spacing,
            )
        )

    def suggest(self, trial: object) -> Genome:
        """Ask an Optuna trial for a genome (every strategy goes through here; evolution answers for itself).

        Samplers that model the whole fixed set (NSGA-II, TPE) are asked every segment's parameters. A sampler that
        proposes whole genomes and answers each call itself (``active_only`` set on it: the evolution) is asked only
        the genome's own segments: the parameters of segments beyond the count carry nothing, and each is one storage
        write (on SQLite ~3 ms; 40 % of a trial's writes)."""
        params: dict[str, float | int] = {"segments": trial.suggest_categorical("segments", list(self.segment_counts))}
        params["spacing"] = trial.suggest_categorical("spacing", list(self.spacings))
        sampler = getattr(getattr(trial, "study", None), "sampler", None)
        for s in range(int(params["segments"]) if getattr(sampler, "active_only", False) else self.max_segments):
            params[f"branch{s}"] = trial.suggest_int(f"branch{s}", 0, self.num_branches - 1)
            params[f"active{s}"] = trial.suggest_float(f"active{s}", 0.0, 1.0)
            if self.forecast:
                params[f"forecast{s}"] = trial.suggest_categorical(f"forecast{s}", [0, 1])
        return self.from_params(params)

    # --- evolutionary operators (segment-aware) ----------------------------------------------------------------
    def _spacing(self, rng: random.Random) -> float:
        """A random spacing; no draw with a single one, so equal-segment runs keep the random stream they always had."""
        return rng.choice(self.spacings) if len(self.spacings) > 1 else self.spacings[0]

    def random_genome(self, rng: random.Random, n_segments: int | None = None) -> Genome:
        n, spacing = n_segments or rng.choice(self.segment_counts), self._spacing(rng)
        return self._fit(
            Genome(
                tuple(Segment(rng.randrange(self.num_branches), rng.randint(1, length), self._forecast(rng)) for length in self.lengths(n, spacing)), spacing
            )
        )

    def _forecast(self, rng: random.Random) -> bool:
        """A random forecast gene; no draw in a space without one (its runs keep the random stream they always had)."""
        return self.forecast and rng.random() < 0.5

    def uniform_genome(self, rng: random.Random) -> Genome:
        """Every segment alike (one branch, one active fraction): DeepCache- and DDIM-like points at any segment count,
        the rough grid the initial population starts from before mutation makes segments differ."""
        n, spacing = rng.choice(self.segment_counts), self._spacing(rng)
        branch, fraction, forecast = rng.randrange(self.num_branches), rng.random(), self._forecast(rng)
        return self._fit(Genome(tuple(Segment(branch, 1 + round(fraction * (length - 1)), forecast) for length in self.lengths(n, spacing)), spacing))

    def genome_of(self, schedule: Schedule) -> Genome | None:
        """The genome that expands to exactly ``schedule``'s steps, or None when the schedule is not segment-shaped
        (e.g. DeepCache with an interval that does not fit equal segments). Lets baselines become parents."""
        for spacing, n in ((p, n) for p in self.spacings for n in self.segment_counts):
            segments, start = [], 0
            for length in self.lengths(n, spacing):
                steps = schedule.steps[start : start + length]
                start += length
                active = sum(1 for s in steps if s.info.calls_network)
                segment = Segment(steps[active - 1].branch or 0, active, steps[active - 1].info.forecasts) if active else None
                if segment is None or tuple(steps) != segment.steps(length) or (segment.forecast and not self.forecast):
                    break
                segments.append(segment)
            else:
                return Genome(tuple(segments), spacing)
        return None

    def nearest_genome(self, schedule: Schedule) -> Genome | None:
        """The genome of ``schedule`` (:meth:`genome_of`), or else the closest one: as many segments as the plan has full
        steps, each keeping its plan segment's active fraction, (most frequent) branch and step kind. DeepCache 1:N with
        N not dividing T (full steps at 0, N, 2N, ... where equal segments start at floor(sT/n)) projects onto the same
        plan with its full steps moved by less than one segment. None when the first step is not full or the space has
        no such segment count. Lets every plan baseline seed the evolution, not only the segment-shaped ones."""
        exact = self.genome_of(schedule)
        if exact is not None:
            return exact
        starts = [i for i, step in enumerate(schedule.steps) if step.info.fills_cache]
        if not starts or starts[0] != 0 or len(starts) not in self.segment_counts:
            return None
        segments, old_lengths = [], [b - a for a, b in zip(starts, starts[1:] + [len(schedule.steps)])]
        for start, length in zip(starts, old_lengths):
            steps = schedule.steps[start : start + length]
            partial = [s for s in steps[1:] if s.info.replays]
            branch = max(sorted({s.branch for s in partial}), key=[s.branch for s in partial].count) if partial else 0
            forecast = self.forecast and 2 * sum(1 for s in partial if s.info.forecasts) > len(partial)
            segments.append(Segment(branch, sum(1 for s in steps if s.info.calls_network), forecast))
        spacing = 1.0 if 1.0 in self.spacings else self.spacings[0]
        return self._fit(Genome(self._rescaled(segments, old_lengths, self.lengths(len(starts), spacing)), spacing))

    @staticmethod
    def _rescaled(old: Sequence[Segment], old_lengths: Sequence[int], lengths: Sequence[int]) -> tuple[Segment, ...]:
        """Segments of ``lengths`` copying the old segment at the same relative position, at its active fraction."""
        segments = []
        for s, length in enumerate(lengths):
            k = min(len(old) - 1, s * len(old) // len(lengths))
            segments.append(replace(old[k], interval=max(1, min(length, round(old[k].interval / old_lengths[k] * length)))))
        return tuple(segments)

    def mutate(self, genome: Genome, rng: random.Random, rate: float = 0.2) -> Genome:
        """Change one segment's branch or interval (each segment with probability ``rate``, at least one); or, with
        probability 0.2, move one active step from one segment to another (the cost stays about the same while the
        steps are re-allocated along the trajectory); or, with probability 0.1 each, the segment count or the spacing
        (segments are resampled by relative position)."""
        draw = rng.random()
        if len(self.segment_counts) > 1 and draw < 0.1:
            return self.resegment(genome, rng.choice([n for n in self.segment_counts if n != len(genome.segments)]))
        if len(self.spacings) > 1 and draw > 0.9:
            return self.resegment(genome, len(genome.segments), rng.choice([p for p in self.spacings if p != genome.spacing]))
        lengths = self.lengths(len(genome.segments), genome.spacing)
        if draw < 0.3 and len(genome.segments) > 1 and self.null_steps:
            return self.shift(genome, rng)
        segments = list(genome.segments)
        chosen = [s for s in range(len(segments)) if rng.random() < rate] or [rng.randrange(len(segments))]
        for s in chosen:
            seg = segments[s]
            if self.forecast and rng.random() < 0.25:
                segments[s] = replace(seg, forecast=not seg.forecast)
            elif (rng.random() < 0.5 or not self.null_steps) and self.num_branches > 1:
                segments[s] = replace(seg, branch=max(0, min(self.num_branches - 1, seg.branch + rng.choice((-2, -1, 1, 2)))))
            else:
                segments[s] = replace(seg, interval=max(1, min(lengths[s], seg.interval + rng.choice((-2, -1, 1, 2)))))
        return Genome(tuple(segments), genome.spacing)

    def shift(self, genome: Genome, rng: random.Random) -> Genome:
        """One active step moves from a segment with a partial step to another segment with room for one."""
        lengths, segments = self.lengths(len(genome.segments), genome.spacing), list(genome.segments)
        donors = [s for s, seg in enumerate(segments) if seg.interval > 1]
        takers = [s for s, seg in enumerate(segments) if seg.interval < lengths[s]]
        pairs = [(d, t) for d in donors for t in takers if d != t]
        if not pairs:
            return self.mutate(genome, rng)
        d, t = rng.choice(pairs)
        segments[d] = replace(segments[d], interval=segments[d].interval - 1)
        taker = segments[t] if segments[t].interval > 1 else replace(segments[t], branch=segments[d].branch, forecast=segments[d].forecast)
        segments[t] = replace(taker, interval=segments[t].interval + 1)
        return Genome(tuple(segments), genome.spacing)

    def resegment(self, genome: Genome, n_segments: int, spacing: float | None = None) -> Genome:
        """The same plan at another segment count (or spacing; default the genome's): segment s copies the old
        segment at the same relative position, keeping its active fraction of the segment."""
        spacing = genome.spacing if spacing is None else spacing
        old_lengths = self.lengths(len(genome.segments), genome.spacing)
        return self._fit(Genome(self._rescaled(genome.segments, old_lengths, self.lengths(n_segments, spacing)), spacing))

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> Genome:
        """Uniform crossover of whole segments (parents with the same segment count and spacing; otherwise ``b`` is
        resegmented onto ``a``'s)."""
        if len(a.segments) != len(b.segments) or a.spacing != b.spacing:
            b = self.resegment(b, len(a.segments), a.spacing)
        return Genome(tuple(x if rng.random() < 0.5 else y for x, y in zip(a.segments, b.segments)), a.spacing)
