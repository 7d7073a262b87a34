"""Reruns in ``benchmarks/results/reproduced/`` (after a change that must not move a figure) beside the committed figures
they reproduce: step types (MACs, rFID, FID, wall-clock) and seed-spread seeds.

Each kind of rerun names the committed file it is compared with (``COMPARISONS``); a rerun of another kind matches no
glob, so the page build stops on it rather than publishing it without its comparison.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable

from ._format import Doc, Docs, anchor, integer, num, pct, provenance, table, times
from ._schedules import seed_label
from ._section import Section

INTRO = (
    "The same commands rerun on the restructured package (`reproduced/`), beside the committed figures. MACs and "
    "image-quality figures are deterministic (one seed); wall-clock is one shared-VM timing of each and moves "
    "with the machine's load."
)


def step_types_rows(new: Doc, old: Doc) -> str:
    """MACs, teacher FID, hook overhead and each schedule's rFID / FID / wall speed-up, committed against rerun."""
    rows = [
        ["full-step MACs", integer(old["full_step_macs_per_sample"]), integer(new["full_step_macs_per_sample"])],
        [
            "partial-step MACs, branches 0..8",
            "same" if old["partial_step_macs_per_sample"] == new["partial_step_macs_per_sample"] else "differ",
            ", ".join(integer(v) for v in new["partial_step_macs_per_sample"]),
        ],
        ["teacher FID vs held-out", num(old["fid_teacher_vs_heldout"], 3), num(new["fid_teacher_vs_heldout"], 3)],
        ["hook overhead, all-full schedule", pct(old["hook_overhead_all_full"]), pct(new["hook_overhead_all_full"])],
    ]
    for o, n in zip(old["schedules"], new["schedules"]):
        rows.append(
            [
                f"{o['schedule']}: rFID / FID / wall speed-up",
                f"{num(o['rfid_vs_teacher'])} / {num(o['fid_vs_heldout'], 3)} / {times(o['wall_speedup'])}",
                f"{num(n['rfid_vs_teacher'])} / {num(n['fid_vs_heldout'], 3)} / {times(n['wall_speedup'])}",
            ]
        )
    return table(["figure", "committed (`step_types.json`)", "rerun"], rows)


def seed_spread_rows(new: Doc, old: Doc) -> str:
    """Each schedule's FID and rFID per rerun seed, beside the committed value of that seed where it has one."""
    rows = []
    for key, entry in new["schedules"].items():
        before = old["schedules"].get(key, {})
        for metric in ("fid", "rfid"):
            if metric not in entry:
                continue
            by_seed = dict(zip(old["seeds"], before.get(metric, [])))
            for seed, value in zip(new["seeds"], entry[metric]):
                rows.append(
                    [
                        seed_label(key, entry),
                        metric.replace("rfid", "rFID").replace("fid", "FID"),
                        str(seed),
                        num(by_seed[seed], 4) if seed in by_seed else "–",
                        num(value, 4),
                    ]
                )
    return table(["schedule", "metric", "seed", "committed (`seed_spread_confirm.json`)", "rerun"], rows)


#: rerun glob -> (the committed file it reproduces, the comparison of rerun and committed)
COMPARISONS: dict[str, tuple[str, Callable[[Doc, Doc], str]]] = {
    "reproduced/step_types.json": ("step_types.json", step_types_rows),
    "reproduced/seed_spread_confirm_seed*.json": ("seed_spread_confirm.json", seed_spread_rows),
}


def render(name: str, d: Doc, docs: Docs) -> str:
    committed, compare = next(v for glob, v in COMPARISONS.items() if fnmatchcase(name, glob))
    return compare(d, docs[committed])


class Reproduced(Section):
    """Headed by the rerun's path, its provenance first, under one intro: the reruns are one event, not a family."""

    def body(self, names: list[str], docs: Docs) -> str:
        parts = [anchor(self.key), f"## {self.title}", INTRO]
        for n in names:
            parts += [f"### `{n}`\n\n" + provenance(n, docs[n]), self.render(n, docs[n], docs)]
        return "\n\n".join(parts)


SECTIONS = [Reproduced("reproduced", "Reproduced after the package restructuring", 1000, tuple(COMPARISONS), render)]
