"""What flexdiff's search costs on FLUX.1-dev and SD3-medium at 1024x1024, before it runs: its teacher-image
equivalents per phase (images generated x their MACs / the teacher's MACs per image; flexdiff.search.estimate), at
the CLI's default settings (``flexdiff search --model FOLDER`` with nothing else: T = 50 steps of the pipeline's own
scheduler, budget 1/3) as they are now (``SearchConfig``'s defaults) and as they were before the search frontier was
measured (``before``: rFID on 256 images, the default rungs, every baseline, 1000 x 6 validation images), from the MACs of
benchmarks/results/transformer_cost.json (the published configs on the meta device). Nothing is generated: the
figures are what ``flexdiff search --dry-run`` prints on such a folder, computed without its weights.

    cd benchmarks && python search_cost_at_scale.py --out results/search_cost_at_scale.json

Seconds are not measured here (no GPU, and FLUX.1-dev's fp32 weights do not fit this machine): the JSON converts the
equivalents with a per-image time the user supplies (``--seconds-per-image``; the default 10 s is the issue's figure
for one 1024-px FLUX.1-dev image of 50 steps on one H100, an assumption recorded as such).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from common import write_result
from transformer_cost import build

from flexdiff.backbones import layout_of
from flexdiff.running.cost import StepCosts
from flexdiff.search.config import SearchConfig, default_segments
from flexdiff.search.context import SearchContext, affordable, baseline_schedules
from flexdiff.search.estimate import equivalents, random_schedules
from flexdiff.search.fidelity import DEFAULT_RUNGS
from flexdiff.search.space import GenomeSpace

STEPS = 50


#: the settings compared: the defaults now, and those before the search frontier (benchmarks/search_frontier.py)
SETTINGS: dict[str, dict[str, Any]] = {
    "now": {},
    "before": {"n": 256, "objective": "rfid", "trials": 100, "validate_n": 1000, "validate_top": 6, "all_baselines": True},
}


def defaults(**settings: Any) -> SearchConfig:
    """The CLI's defaults (flexdiff/cli/search.py, SearchConfig's) on a pipeline folder, its own scheduler (which takes
    custom sigmas), with ``settings`` over them."""
    n = settings.get("n", SearchConfig.n)
    return SearchConfig(
        **{
            "out": Path("unused"),
            "model": "folder",
            "sampler": "pipeline",
            "steps": STEPS,
            "speedup": 3.0,
            "segments": default_segments(STEPS),
            "spacings": (1.0,),
            "fidelity": tuple(m for m in DEFAULT_RUNGS if m < n),
            "reuse": True,
            "progress": False,
            **settings,
        }
    )


def search_images(name: str, costs: dict[str, Any], config: SearchConfig) -> dict[str, float]:
    """The estimate's teacher-image equivalents of a search of ``name`` (its branches in its layout's order)."""
    labels = layout_of(build(name, "meta")).labels  # the branch order the genome's branch genes index
    step = StepCosts(int(costs["full_step_macs"]), tuple(int(costs["partial_step_macs"][label]["macs"]) for label in labels))
    timesteps = [1.0 - i / STEPS for i in range(STEPS)]  # a flow grid: only the positions matter to the MACs
    space = GenomeSpace(
        STEPS,
        tuple(sorted(set(config.segments))),
        len(labels),
        config.spacings,
        null_steps=True,
        cost=lambda genome: step.schedule(genome.expand(timesteps, config.candidate_sampler)),
    )
    ctx = SearchContext(config, None, timesteps, None, step, space, None)  # no model, no feature network: MACs only
    ctx.baselines = baseline_schedules(timesteps, config.sampler, len(labels), config, null_steps=True)
    ctx.baselines = ctx.baselines if config.all_baselines else affordable(ctx.baselines, step, max(ctx.budgets))
    _, macs = random_schedules(ctx)
    return equivalents(ctx, reference_cached=False, random_mean=sum(macs) / len(macs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--costs", type=Path, default=Path("results/transformer_cost.json"))
    parser.add_argument(
        "--seconds-per-image", type=float, default=10.0, help="a 1024-px teacher image's seconds on the target GPU (an assumption, not measured here)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/search_cost_at_scale.json"))
    args = parser.parse_args()
    measured = json.loads(args.costs.read_text())["models"]
    models: dict[str, Any] = {}
    for setting, over in SETTINGS.items():
        config = defaults(**over)
        for name, costs in measured.items():
            images = search_images(name, costs, config)
            total = sum(images.values())
            models.setdefault(name, {})[setting] = {
                "settings": {
                    "n": config.n,
                    "objective": config.objective,
                    "trials": config.trials,
                    "rungs": list(config.fidelity),
                    "validate_n": config.validate_n,
                    "validate_top": config.validate_top,
                    "all_baselines": config.all_baselines,
                },
                "teacher_image_equivalents": {k: round(v, 1) for k, v in images.items()},
                "total_teacher_image_equivalents": round(total, 1),
                "teacher_macs_per_image": int(costs["full_step_macs"]) * STEPS,
                "total_pmacs": round(total * int(costs["full_step_macs"]) * STEPS / 1e15, 1),
                # the assumed seconds are FLUX.1-dev's: no other model's figure is converted with them
                "gpu_hours_at_assumed_seconds": round(total * args.seconds_per_image / 3600, 2) if name == "flux1-dev" else None,
            }
            print(f"{name} ({setting}): {total:,.0f} teacher-image equivalents ({', '.join(f'{k} {v:,.0f}' for k, v in images.items())})")
    write_result(
        args.out,
        {
            "settings": {"steps": STEPS, "speedup": 3.0, "segments": "default (4-25)"},
            "resolution": "1024x1024",
            "assumed_seconds_per_image": args.seconds_per_image,
            "assumption": "seconds per image not measured here: the issue's figure for FLUX.1-dev on one H100",
            "models": models,
        },
    )


if __name__ == "__main__":
    main()
