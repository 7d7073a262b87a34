"""rFID against FID (``benchmarks/rfid_vs_fid.py``): the search scores schedules by rFID against the teacher's own images,
which is only sound if it ranks them like FID against real data; this page shows the rank correlation and the time saved."""

from __future__ import annotations

from ._format import Doc, Docs, code, num, pct, provenance, table, times
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    s = d["schedules"]
    rfid_total = d["rfid_eval_seconds_total"] + d["teacher_reference_seconds_once"]
    summary = [
        ["Kendall tau (rFID vs FID)", f"**{num(d['kendall_tau'])}**"],
        ["p-value", f"{d['p_value']:.0e}"],
        ["acceptance: tau at least", num(d["acceptance_tau_min"])],
        ["schedules (random genomes)", str(len(s))],
        ["MACs speed-up range", f"{times(min(x['macs_speedup'] for x in s))} to {times(max(x['macs_speedup'] for x in s))}"],
        ["FID range", f"{num(min(x['fid'] for x in s), 1)} to {num(max(x['fid'] for x in s), 1)}"],
        ["time to score all by rFID (incl. the teacher reference, built once)", f"{num(rfid_total, 1)} s"],
        ["time to score all by FID", f"{num(d['fid_eval_seconds_total'], 1)} s"],
        ["evaluation time saved", f"**{pct(d['time_saved_fraction'], 0)}**"],
    ]
    rows = [[code(x["genome"]), times(x["macs_speedup"]), num(x["rfid"]), num(x["fid"])] for x in sorted(s, key=lambda x: (x["rfid"], x["genome"]))]
    return "\n\n".join(
        [
            f"Does rFID rank schedules like FID against real data? rFID on {d['n_rfid']} images (the search's sample "
            f"size) against the {d['teacher']} teacher's images from the same noise; FID on {d['n_fid']} images against "
            f"{d['n_real_reference']} held-out real digits; both with the `digits` features, seed {d['seed']}.",
            provenance(name, d),
            table(["measurement", "value"], summary),
            "The schedules, by rFID:",
            table(["genome", "MACs x", "rFID", "FID"], rows),
        ]
    )


SECTIONS = [Section("rfid_vs_fid", "rFID ranks schedules like FID", 30, ("rfid_vs_fid.json",), render)]
