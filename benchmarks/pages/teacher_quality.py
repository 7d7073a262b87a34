"""The built-in teachers' quality (``benchmarks/teacher_quality.py``): a schedule can only be as good as the teacher it
approximates, so each teacher's FID is shown beside the FID of as many real images, the floor at that sample size."""

from __future__ import annotations

from ._format import Doc, Docs, num, provenance, table
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    rows = [
        [f"teacher, {d['sampler']} samples ({d['n']}) vs held-out digits ({d['n_reference']})", f"**{num(d['fid_teacher_vs_heldout'])}**"],
        [f"{d['n']} real training images vs the same held-out digits (the floor at this sample size)", f"**{num(d['fid_train_vs_heldout'])}**"],
        ["ratio (teacher / floor)", f"**{num(d['ratio'])}**"],
        ["acceptance: ratio at most", num(d["acceptance_ratio_max"])],
        ["sampling wall-clock", f"{num(d['sampling_wall_seconds'], 1)} s"],
    ]
    return "\n\n".join(
        [
            f"How good is the built-in teacher `{d['model']}`? FID of its samples against the held-out digits, beside the FID of as many "
            f"real training images against the same held-out set (`{d['features']}` features, seed {d['seed']}).",
            provenance(name, d),
            table(["measurement", "value"], rows),
        ]
    )


SECTIONS = [Section("teacher_quality", "The built-in teachers", 10, ("teacher_quality*.json",), render)]
