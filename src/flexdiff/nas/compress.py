"""``flexdiff compress``: the whole DiffNAS job from a teacher to a student model folder and ``results.json``.

Phases, each resumable (its outputs carry a key of everything that determines them; a rerun reuses what matches):

1. ``record``  — the teacher's block inputs/outputs on noised training images (``OUT/records.safetensors``)
2. ``distill`` — one supernet per block (``OUT/blocks/<block>.safetensors``; a killed run resumes at its block)
3. ``search``  — every candidate scored (``OUT/scores.json``), the budgeted combination (``OUT/search.json``)
4. ``retrain`` — the assembled student with the dynamic joint loss (``OUT/retrain/checkpoint.*`` every minute),
   saved to ``OUT/student/`` (a model folder every flexdiff command loads)
5. ``fid``     — teacher and student, DDIM-50, ``--fid-n`` images against the reference set (``OUT/fid.json``)

Time budget (``--minutes``, default 40): the FID phase is reserved first (timed from one teacher call), recording is
a fixed small cost, the block distillation gets ``DISTILL_SHARE`` of the rest, and retraining gets whatever remains
when it starts, minus a safety margin. Step counts are derived once from short timing probes and stored in
``OUT/state.json``, so a resumed run uses the same counts (and the same numbers); ``--distill-steps`` /
``--retrain-steps`` fix them explicitly for exact reproduction.
"""

from __future__ import annotations

import time
from typing import Any

from flexdiff.errors import output_folder
from flexdiff.models import load_model
from flexdiff.nas.clock import Run, prepare
from flexdiff.nas.config import PHASES, CompressConfig
from flexdiff.nas.phases import (
    phase_distill,
    phase_fid,
    phase_record,
    phase_retrain,
    phase_search,
    teacher_cost,
)
from flexdiff.nas.retrain import AlphaSchedule
from flexdiff.provenance import current_command, run_provenance
from flexdiff.utils.io import write_json


def compress(config: CompressConfig, run: Run | None = None) -> dict[str, Any]:
    """Run (or resume) every phase; returns the ``results.json`` content (also written to ``OUT/results.json``)."""
    output_folder(config.out, create=False)  # a read-only or blocked --out: one line before the teacher is loaded
    run = run or prepare(config)
    c = run.config
    output_folder(c.out)
    run.state["config"] = c.to_json()
    run.save_state()
    records, record_key = phase_record(run)
    supernets, distill_key, histories = phase_distill(run, records, record_key)
    arch, summary, search_key = phase_search(run, records, supernets, distill_key)
    student_dir, history, retrain_key, cut = phase_retrain(run, records, supernets, arch, search_key)
    student = load_model(student_dir, run.teacher.device)  # the saved folder, loaded like any model
    student_macs, student_params = teacher_cost(student)
    fids = phase_fid(run, student, retrain_key)
    phases = run.state.get("phases", {})
    results = {
        "kind": "compress",
        "config": {k: v for k, v in c.to_json().items() if k not in ("progress", "command")}
        | {
            "distill_steps_per_block": phases.get("distill", {}).get("steps"),
            "retrain_steps": phases.get("retrain", {}).get("steps"),
            "params_ratio": c.max_params_ratio,
            "reference": c.reference_set,
        },
        **run_provenance(c.out / "results.json", list(c.command) or current_command()),  # command(s), versions, machine
        "blocks": [
            {k: r[k] for k in ("block", "choice", "macs", "params", "teacher_macs", "teacher_params", "loss", "widths", "attention")} for r in summary["blocks"]
        ],
        "stem": summary["stem"],
        "teacher": {"macs": summary["teacher"]["macs"], "params": summary["teacher"]["params"], "fid": fids["teacher"]},
        "student": {
            "macs": student_macs,
            "params": student_params,
            "fid": fids["student"],
            "path": str(student_dir),
            "macs_ratio": round(student_macs / summary["teacher"]["macs"], 4),
            "params_ratio": round(student_params / summary["teacher"]["params"], 4),
            "predicted_macs": summary["predicted"]["macs"],
            "predicted_params": summary["predicted"]["params"],
        },
        "search": {"summed_loss": summary["summed_loss"], "front_sizes": {r["block"]: r["front_size"] for r in summary["blocks"]}},
        "distill": {"history": histories},
        "retrain": {"history": history, "alpha": str(AlphaSchedule.parse(c.alpha)), "cut_by_deadline": cut},
        "seconds": {p: phases.get(p, {}).get("seconds") for p in PHASES} | {"this_process": round(time.monotonic() - run.start, 1)},
    }
    write_json(c.out / "results.json", results)
    return results
