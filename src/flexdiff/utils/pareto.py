"""Pareto fronts (every objective minimised): the search's (MACs, rFID), compress's (MACs, params, loss), the plots."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points, sorted by their coordinates (first coordinate first).

    A point is dominated when another is at most as large in every coordinate and not the same point; of equal points
    the first is kept. Sorting lexicographically means no later point can dominate an earlier one, so one pass over
    the kept points suffices.
    """
    order = sorted(range(len(points)), key=lambda i: (tuple(points[i]), i))
    front: list[int] = []
    for i in order:
        if not any(all(a <= b for a, b in zip(points[k], points[i])) for k in front):
            front.append(i)
    return front


def pareto_ranks(points: Sequence[Sequence[float]], ranks: int) -> list[int]:
    """Indices of the first ``ranks`` non-dominated fronts (rank 2 = the front once rank 1 is removed)."""
    left, out = list(range(len(points))), []
    for _ in range(ranks):
        front = [left[i] for i in pareto_front([points[j] for j in left])]
        out += front
        taken = set(front)
        left = [j for j in left if j not in taken]
    return out
