"""``flexdiff compress``: DiffNAS, from a teacher to a student model folder."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from flexdiff.cli._app import DEVICE, MODEL, NO_REPORT, SEED, command


@command
def compress(
    out: Path = typer.Option(..., "--out", help="run folder: records, trained blocks, checkpoints, student/, results.json"),
    model: str = MODEL,
    data: str = typer.Option("builtin:digits-train", "--data", help="training images (.npz, folder or builtin set) of the model's size"),
    macs_ratio: float = typer.Option(0.5, "--macs-ratio", help="student MACs budget as a share of the teacher's, in (0, 1]"),
    params_ratio: float | None = typer.Option(None, "--params-ratio", help="parameter budget as a share of the teacher's (default: --macs-ratio)"),
    minutes: float = typer.Option(40.0, "--minutes", help="wall-time budget of the whole run; phases get shares of it"),
    seed: int = SEED,
    alpha: str = typer.Option(
        "dynamic", "--alpha", help="retraining weight of the block loss: dynamic (cosine 1 -> 0), dynamic:START,END (cosine START -> END) or constant:X"
    ),
    fid_n: int = typer.Option(1000, "--fid-n", help="images per FID (DDIM-50, teacher and student); 0 skips FID"),
    reference: str | None = typer.Option(None, "--reference", help="real images for FID (default: held-out digits for builtin:digits)"),
    record_n: int = typer.Option(4096, "--record-n", help="noised training images whose teacher block features train the blocks"),
    val_n: int = typer.Option(256, "--val-n", help="recorded rows that score the candidates"),
    distill_steps: int | None = typer.Option(None, "--distill-steps", help="supernet steps per block (default: from --minutes)"),
    retrain_steps: int | None = typer.Option(None, "--retrain-steps", help="retraining steps (default: from --minutes)"),
    device: str = DEVICE,
    no_report: bool = NO_REPORT,
) -> None:
    """DiffNAS: distil the model into a student with at most --macs-ratio of its MACs (and parameters).

    Resumable: rerunning the same command continues the phase a killed run was in. The student in OUT/student/ loads
    like any model (flexdiff sample / eval / inspect / search --model OUT/student).
    """
    from flexdiff.nas.clock import prepare
    from flexdiff.nas.compress import compress as run_compress
    from flexdiff.nas.config import CompressConfig
    from flexdiff.nas.report import print_summary

    config = CompressConfig(
        out=out,
        model=model,
        data=data,
        macs_ratio=macs_ratio,
        params_ratio=params_ratio,
        minutes=minutes,
        seed=seed,
        alpha=alpha,
        fid_n=fid_n,
        reference=reference,
        record_n=record_n,
        val_n=val_n,
        distill_steps=distill_steps,
        retrain_steps=retrain_steps,
        device=device,
        command=tuple(["flexdiff", *sys.argv[1:]]),
    )
    print_summary(run_compress(config, prepare(config)))
    if not no_report:
        from flexdiff.report import write_run_report

        write_run_report(out, device=device)
