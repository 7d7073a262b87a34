"""The segment-wise search space of Flexiffusion: number of segments, and per segment a branch and an interval.

Size: sum over segment counts n of (branches x intervals)^n, instead of 3^T step-wise. The first step of every
expanded schedule is full by construction (each segment starts with its full step).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import FULL, NULL, PARTIAL, Genome, Schedule, Segment


@dataclass(frozen=True)
class GenomeSpace:
    """All genomes over ``T`` teacher steps with a segment count from ``segment_counts`` and ``num_branches`` branches."""

    T: int
    segment_counts: tuple[int, ...]
    num_branches: int

    def __post_init__(self) -> None:
        bad = [n for n in self.segment_counts if not 1 <= n <= self.T]
        if bad or not self.segment_counts:
            raise FlexdiffError(f"segment counts {list(self.segment_counts)}", f"counts in [1, T={self.T}]", "pick e.g. --segments 5,7,10")
        if self.num_branches < 1:
            raise FlexdiffError(self.num_branches, "a model with at least one skip branch", "use a UNet with skip connections")

    def lengths(self, n_segments: int) -> list[int]:
        return Genome.segment_lengths(self.T, n_segments)

    # --- Optuna parameters: a fixed set (segments; branch<s>, active<s> for every possible segment s) ----------
    # Fixed names and distributions keep NSGA-II's search space whole; segments beyond the count are ignored.
    # active<s> in [0, 1] is the active fraction: interval = 1 + round(active * (length - 1)).
    @property
    def max_segments(self) -> int:
        return max(self.segment_counts)

    def to_params(self, genome: Genome) -> dict[str, float | int]:
        n = len(genome.segments)
        params: dict[str, float | int] = {"segments": n}
        for s in range(self.max_segments):
            if s < n:
                seg, length = genome.segments[s], self.lengths(n)[s]
                params[f"branch{s}"], params[f"active{s}"] = seg.branch, (seg.interval - 1) / (length - 1) if length > 1 else 0.0
            else:
                params[f"branch{s}"], params[f"active{s}"] = 0, 0.0
        return params

    def from_params(self, params: dict[str, float | int]) -> Genome:
        n = int(params["segments"])
        return Genome(tuple(Segment(int(params[f"branch{s}"]), 1 + round(float(params[f"active{s}"]) * (length - 1))) for s, length in enumerate(self.lengths(n))))

    def suggest(self, trial: object) -> Genome:
        """Ask an Optuna trial for a genome (every strategy goes through here; evolution answers for itself)."""
        params: dict[str, float | int] = {"segments": trial.suggest_categorical("segments", list(self.segment_counts))}
        for s in range(self.max_segments):
            params[f"branch{s}"] = trial.suggest_int(f"branch{s}", 0, self.num_branches - 1)
            params[f"active{s}"] = trial.suggest_float(f"active{s}", 0.0, 1.0)
        return self.from_params(params)

    # --- evolutionary operators (segment-aware) ----------------------------------------------------------------
    def random_genome(self, rng: random.Random, n_segments: int | None = None) -> Genome:
        n = n_segments or rng.choice(self.segment_counts)
        return Genome(tuple(Segment(rng.randrange(self.num_branches), rng.randint(1, length)) for length in self.lengths(n)))

    def uniform_genome(self, rng: random.Random) -> Genome:
        """Every segment alike (one branch, one active fraction): DeepCache- and DDIM-like points at any segment count,
        the rough grid the initial population starts from before mutation makes segments differ."""
        n = rng.choice(self.segment_counts)
        branch, fraction = rng.randrange(self.num_branches), rng.random()
        return Genome(tuple(Segment(branch, 1 + round(fraction * (length - 1))) for length in self.lengths(n)))

    def genome_of(self, schedule: Schedule) -> Genome | None:
        """The genome that expands to exactly ``schedule``'s steps, or None when the schedule is not segment-shaped
        (e.g. DeepCache with an interval that does not fit equal segments). Lets baselines become parents."""
        for n in self.segment_counts:
            segments, start = [], 0
            for length in self.lengths(n):
                steps = schedule.steps[start:start + length]
                start += length
                active = sum(1 for s in steps if s.kind != NULL)
                branches = {s.branch for s in steps[1:active]}
                shaped = steps[0].kind == FULL and all(s.kind == PARTIAL for s in steps[1:active]) and all(s.kind == NULL for s in steps[active:])
                if not shaped or len(branches) > 1:
                    break
                segments.append(Segment(branches.pop() if branches else 0, active))
            else:
                return Genome(tuple(segments))
        return None

    def mutate(self, genome: Genome, rng: random.Random, rate: float = 0.2) -> Genome:
        """Change one segment's branch or interval (each segment with probability ``rate``, at least one); or, with
        probability 0.2, move one active step from one segment to another (the cost stays about the same while the
        steps are re-allocated along the trajectory); or, with probability 0.1, the segment count (segments are
        resampled by relative position)."""
        draw = rng.random()
        if len(self.segment_counts) > 1 and draw < 0.1:
            return self.resegment(genome, rng.choice([n for n in self.segment_counts if n != len(genome.segments)]))
        lengths = self.lengths(len(genome.segments))
        if draw < 0.3 and len(genome.segments) > 1:
            return self.shift(genome, rng)
        segments = list(genome.segments)
        chosen = [s for s in range(len(segments)) if rng.random() < rate] or [rng.randrange(len(segments))]
        for s in chosen:
            seg = segments[s]
            if rng.random() < 0.5 and self.num_branches > 1:
                segments[s] = Segment(max(0, min(self.num_branches - 1, seg.branch + rng.choice((-2, -1, 1, 2)))), seg.interval)
            else:
                segments[s] = Segment(seg.branch, max(1, min(lengths[s], seg.interval + rng.choice((-2, -1, 1, 2)))))
        return Genome(tuple(segments))

    def shift(self, genome: Genome, rng: random.Random) -> Genome:
        """One active step moves from a segment with a partial step to another segment with room for one."""
        lengths, segments = self.lengths(len(genome.segments)), list(genome.segments)
        donors = [s for s, seg in enumerate(segments) if seg.interval > 1]
        takers = [s for s, seg in enumerate(segments) if seg.interval < lengths[s]]
        pairs = [(d, t) for d in donors for t in takers if d != t]
        if not pairs:
            return self.mutate(genome, rng)
        d, t = rng.choice(pairs)
        segments[d] = Segment(segments[d].branch, segments[d].interval - 1)
        segments[t] = Segment(segments[t].branch if segments[t].interval > 1 else segments[d].branch, segments[t].interval + 1)
        return Genome(tuple(segments))

    def resegment(self, genome: Genome, n_segments: int) -> Genome:
        """The same plan at another segment count: segment s copies the old segment at the same relative position,
        keeping its active fraction of the segment."""
        old, old_lengths, lengths = genome.segments, self.lengths(len(genome.segments)), self.lengths(n_segments)
        segments = []
        for s, length in enumerate(lengths):
            k = min(len(old) - 1, s * len(old) // n_segments)
            fraction = old[k].interval / old_lengths[k]
            segments.append(Segment(old[k].branch, max(1, min(length, round(fraction * length)))))
        return Genome(tuple(segments))

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> Genome:
        """Uniform crossover of whole segments (parents with the same segment count; otherwise ``b`` is resegmented)."""
        if len(a.segments) != len(b.segments):
            b = self.resegment(b, len(a.segments))
        return Genome(tuple(x if rng.random() < 0.5 else y for x, y in zip(a.segments, b.segments)))

    def expand(self, genome: Genome, timesteps: Sequence[int], sampler: str) -> Schedule:
        return genome.expand(timesteps, sampler)
