"""Which diffusers pipelines ``flexdiff.enable`` covers, measured: the coverage suite's checks (tests/coverage/) run over
every tiny pipeline of ``tests/coverage/pipelines.py``, and the sweep over every exported pipeline's denoiser, written
to benchmarks/results/coverage.json (docs/results.md, docs/pipelines.md and docs/transformers.md render its table).

    python benchmarks/coverage.py --out benchmarks/results/coverage.json

Per pipeline: whether the all-full schedule is ``torch.equal`` to the plain call, whether the caching schedule (every
other step a partial one at branch 1: DeepCache on a UNet, the (F, B) residual on a transformer) changes the output and
what share of the linear-layer calls it keeps, whether null steps drop denoiser calls (or the one-line refusal), and
whether ``disable`` restores the plain call. Tiny random models: the shares say which work is skipped, not how fast a
real model runs (docs/transformers.md#cost-at-real-scale has that).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "coverage"), str(ROOT / "tests")]

from common import write_result  # noqa: E402


def measure(name: str) -> dict[str, object]:
    import torch
    from pipelines import CASES
    from test_coverage import caching_schedule, counting_linears, denoiser_calls, plain_run

    import flexdiff
    from flexdiff.integrations.diffusers_pipeline import denoisers_of, is_flow_scheduler
    from flexdiff.schedule import Schedule, Step

    case = CASES[name]()
    pipe = case.pipe
    pipe.set_progress_bar_config(disable=True)
    plain, grid, owners = plain_run(case)
    sampler = "flow-euler" if is_flow_scheduler(pipe.scheduler) else "ddim"
    row: dict[str, object] = {
        "pipeline": type(pipe).__name__,
        "denoisers": {a: type(m).__name__ for a, m in denoisers_of(pipe)},
        "scheduler": type(pipe.scheduler).__name__,
        "video": case.video,
        "steps": len(grid),
    }
    with counting_linears() as full_calls, flexdiff.enabled(pipe, flexdiff.full(grid, sampler)):
        row["all_full_equal"] = torch.equal(case(), plain)
    with counting_linears() as cached_calls, flexdiff.enabled(pipe, caching_schedule(grid, owners, sampler)):
        row["caching_changes_output"] = not torch.equal(case(), plain)
    row["caching_linear_share"] = cached_calls[0] / full_calls[0]
    nulls = Schedule(tuple(Step.parse("full" if i % 2 == 0 or owners[i] != owners[i - 1] else "null") for i in range(len(grid))), tuple(grid), sampler)
    try:
        with flexdiff.enabled(pipe, nulls):
            _, calls = denoiser_calls(case)
        row["null_steps"] = f"{calls} of {denoiser_calls(case)[1]} denoiser calls"
    except flexdiff.FlexdiffError as err:
        row["null_steps"] = f"refused: {err}"
    row["disable_restores"] = torch.equal(case(), plain)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "coverage.json")
    args = parser.parse_args(argv)
    import diffusers
    import torch
    from pipelines import CASES
    from test_sweep import FAMILIES, sweep

    torch.set_num_threads(2)
    started = time.time()
    rows = {}
    for name in CASES:
        rows[name] = measure(name)
        print(name, rows[name], flush=True)
    verdicts = sweep()
    write_result(
        args.out, {"diffusers": diffusers.__version__, "seconds": round(time.time() - started, 1), "pipelines": rows, "sweep": verdicts, "families": FAMILIES}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
