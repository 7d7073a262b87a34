"""How long a search will take, before it starts (``flexdiff search`` prints it; ``--dry-run`` prints it and stops).

From measured step costs, not guesses: the wall-clock of a full step and of a partial step at every branch on this
machine (:func:`flexdiff.cost.measure_latency`, on the batch the evaluations run in, at most 256 images), and of the feature network per
image; then per phase what the settings make it run:

- teacher reference: ``n`` images x ``T`` full steps (nothing when the run folder's cache matches);
- baselines: each baseline's own steps on ``n`` images (a caching peer counted as the teacher: its skips are decided
  at run time);
- search: ``trials`` candidates. The first ones are random genomes of the space, the rest children of the elites
  near the budgets; a candidate's seconds are predicted from its MACs by a line fitted over 256 random genomes of
  the space (seconds per image against MACs per image), evaluated at the mean of the random genomes' MACs for the
  initial ones and at the budgets' MACs for the others, plus a fixed cost per evaluation (measured: the teacher's
  schedule on 2 images minus what the per-image costs predict, and a trial written). With ``--fidelity`` that is the most it takes (no
  candidate stopped); the least is every candidate stopped at the first rung (none with ``--prune-margin inf``);
- validation: ``validate_n`` images of the teacher and of about ``validate_top`` + one per baseline family
  candidates at the budget.

Phases already done in an earlier run of the same study are not subtracted: the estimate is for a fresh run.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from flexdiff.cost import StepCosts, measure_latency
from flexdiff.search.context import SearchContext
from flexdiff.search.strategies.evolution import INITIAL

#: random genomes the MACs -> seconds line is fitted on
_FIT_SAMPLES = 256


@dataclass(frozen=True)
class Estimate:
    """Expected seconds per phase on this machine (``search_low``: with every candidate stopped at the first rung)."""

    phases: dict[str, float]
    search_low: float | None = None
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.phases.values())

    def lines(self) -> list[str]:
        parts = ", ".join(f"{name} {_clock(s)}" for name, s in self.phases.items())
        text = f"estimated wall time: {_clock(self.total)} ({parts}) on this machine"
        if self.search_low is not None:
            text += f"; with every candidate stopped at the first rung the search takes {_clock(self.search_low)} (total {_clock(self.total - self.phases['search'] + self.search_low)})"
        return [text]


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _per_image_seconds(ctx: SearchContext, batch: int) -> float:
    """Seconds per image of what follows the sampler: the decoder of a latent model and the feature network (median
    of 3 on a probe batch)."""
    model = ctx.model
    x = torch.zeros((batch, *model.sample_shape), device=model.device)
    runs = []
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            images = model.decoder(x) if model.decoder is not None else x
            ctx.net(images.cpu())
            runs.append(time.perf_counter() - start)
    return sorted(runs)[1] / batch


def _fixed_seconds(ctx: SearchContext, seconds: StepCosts, feature: float) -> float:
    """What one evaluation costs beyond its images: the teacher's schedule run on 2 images (hooks attached and
    removed, sampler set-up, features, one trial written to a scratch study), minus what the per-image costs predict."""
    import optuna

    from flexdiff.generation import schedule_images
    from flexdiff.schedule import full

    noise = ctx.model.initial_noise(2, ctx.config.seed)
    schedule = full(ctx.timesteps, ctx.config.sampler)
    start = time.perf_counter()
    ctx.net(schedule_images(ctx.model, schedule, noise, seed=ctx.config.seed))
    study = optuna.create_study(directions=["minimize", "minimize"])
    trial = study.ask()
    trial.set_user_attr("result", {"probe": True})
    study.tell(trial, (1.0, 1.0))
    measured = time.perf_counter() - start
    return max(0.0, measured - 2 * (seconds.schedule(schedule) + feature))


def estimate(ctx: SearchContext, reference_cached: bool, setup_seconds: float = 0.0) -> Estimate:
    """The expected wall time of the search ``ctx`` describes (see the module docstring). ``setup_seconds``: what
    building ``ctx`` took; with this estimate's own probes it is the ``setup`` phase."""
    began = time.perf_counter()
    c = ctx.config
    batch = max(1, min(c.batch_size or c.n, c.n, 256))  # the batch the evaluations run in (per-image cost falls with it on a CPU)
    latency = measure_latency(ctx.model, batch_size=batch, repeats=3, warmup=1)
    seconds = StepCosts(latency.full / batch, tuple(p / batch for p in latency.partial))  # per image, per step type
    feature = _per_image_seconds(ctx, batch)
    T = len(ctx.timesteps)
    teacher = T * seconds.full + feature
    fixed = _fixed_seconds(ctx, seconds, feature)

    def cost(schedule: Any) -> float:
        return seconds.schedule(schedule) + feature

    rng = random.Random(c.seed)
    genomes = [ctx.space.random_genome(rng) if i % 2 else ctx.space.uniform_genome(rng) for i in range(_FIT_SAMPLES)]
    points = [(ctx.costs.schedule(s), cost(s)) for s in (g.expand(ctx.timesteps, c.candidate_sampler) for g in genomes)]
    slope, intercept = _line(points)
    initial = min(c.trials, INITIAL)
    budgets = [ctx.max_macs] + [ctx.costs.full * T / x for x in c.elite_speedups]
    at_budget = sum(slope * b + intercept for b in budgets) / len(budgets)
    random_mean = sum(s for _, s in points) / len(points)
    per_candidate = (initial * random_mean + (c.trials - initial) * at_budget) / max(c.trials, 1)
    families = {s.meta.get("family") for s in ctx.baselines} - {"teacher"} | {r.family for r in ctx.peers}
    validated = c.validate_top + len(families)
    phases = {
        "setup": setup_seconds + time.perf_counter() - began,
        "reference": 0.0 if reference_cached else c.n * teacher,
        "baselines": c.n * (sum(cost(s) for s in ctx.baselines) + len(ctx.peers) * teacher) + fixed * (len(ctx.baselines) + len(ctx.peers)),
        "search": c.trials * (c.n * per_candidate + fixed),
        "validation": c.validate_n * (teacher + validated * (slope * ctx.max_macs + intercept)) + fixed * validated,  # the teacher once (its images are also its timing run)
    }
    low = c.trials * (c.cuts[0] * per_candidate + fixed) if c.cuts else None
    probe = {"batch": batch, "full_step_seconds_per_image": seconds.full, "feature_seconds_per_image": feature, "seconds_per_mac": slope,
             "per_candidate_seconds_per_image": per_candidate, "fixed_seconds_per_evaluation": fixed}
    return Estimate(phases, low, probe)


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``y = a x + b`` (a flat line through the mean when every x is equal)."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    a = sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
    return a, my - a * mx
