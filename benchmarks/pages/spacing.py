"""Spacing of the segment boundaries (``benchmarks/spacing.py``): the measurement behind the default of
``flexdiff search --spacings``, DDIM-k with its steps packed towards either end against equal segments."""

from __future__ import annotations

from ._format import Doc, Docs, num, provenance, table
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    ks = sorted({r["k"] for r in d["rows"]})
    powers = sorted({r["spacing"] for r in d["rows"]})
    by = {(r["k"], r["spacing"]): r for r in d["rows"]}
    ref = [p for p in powers if p == 1.0]
    headers = ["k"] + [(f"**p = {num(p, 2)}** (DDIM-k)" if p == 1.0 else f"p = {num(p, 2)}") for p in powers]
    rows = []
    notes = []
    for k in ks:
        rows.append([f"{k}: FID / rFID"] + [f"{num(by[(k, p)]['fid'])} / {num(by[(k, p)]['rfid'])}" if (k, p) in by else "" for p in powers])
        if ref and (k, ref[0]) in by:
            r0 = by[(k, ref[0])]
            both = [num(p, 2) for p in powers if (k, p) in by and p != ref[0] and by[(k, p)]["fid"] < r0["fid"] and by[(k, p)]["rfid"] < r0["rfid"]]
            fid_only = [num(p, 2) for p in powers if (k, p) in by and p != ref[0] and by[(k, p)]["fid"] < r0["fid"] and not by[(k, p)]["rfid"] < r0["rfid"]]
            rfid_only = [num(p, 2) for p in powers if (k, p) in by and p != ref[0] and by[(k, p)]["rfid"] < r0["rfid"] and not by[(k, p)]["fid"] < r0["fid"]]
            notes.append(
                f"- k = {k}: powers better than equal segments on both metrics: {', '.join(both) or 'none'}; "
                f"lower FID only: {', '.join(fid_only) or 'none'}; lower rFID only: {', '.join(rfid_only) or 'none'}."
            )
    best = ", ".join(f"k = {k}: p = {num(v, 2)}" for k, v in sorted(d["best_spacing_by_fid"].items(), key=lambda kv: int(kv[0])))
    return "\n\n".join(
        [
            "Does moving the segment boundaries help? DDIM-k with its k full steps at the starts of segments of spacing "
            "power p: segment s starts at floor(T (1 - (1 - s/k)^p)), so p > 1 packs the steps towards t = 0 and p < 1 "
            f"towards the noisy end; the equal-segment row is DDIM-k itself. {d['n']} samples from the same noise (seed "
            f"{d['seed']}); FID against held-out digits, rFID against the teacher's DDIM-50 images (teacher FID "
            f"{num(d['teacher_fid'])}). Quality only: the per-row seconds in the JSON are not a timing claim. This "
            "benchmark decides the default of `flexdiff search --spacings`.",
            provenance(name, d),
            table(headers, rows),
            "\n".join(notes) + f"\n- `best_spacing_by_fid`: {best}.",
        ]
    )


SECTIONS = [Section("spacing", "Spacing of the segment boundaries", 70, ("spacing.json",), render)]
