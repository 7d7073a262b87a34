"""Step types (``benchmarks/step_types.py``): the search ranks schedules by MACs, so this page shows how far measured
wall-clock follows MACs on the built-in model, per schedule and per branch of a partial step."""

from __future__ import annotations

from ._format import Doc, Docs, code, mega, num, pct, provenance, signed, table, times, yes
from ._schedules import counts_text
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    rows = []
    for s in d["schedules"]:
        rows.append(
            [
                code(s["schedule"]),
                counts_text(s),
                times(s["macs_speedup"]),
                times(s["wall_speedup"]),
                pct(s["wall_vs_macs_gap"]),
                yes(s["within_15pct"]),
                num(s["rfid_vs_teacher"]),
                num(s["fid_vs_heldout"]),
            ]
        )
    full = d["full_step_macs_per_sample"]
    lat = d["step_latency"]
    brows = []
    for b, macs in enumerate(d["partial_step_macs_per_sample"]):
        brows.append([str(b), mega(macs), pct(macs / full), f"{num(lat['partial'][b], 3)} s", pct(lat["partial"][b] / lat["full"])])
    text = [
        f"Measured wall-clock speed-up against MACs speed-up on the built-in model ({d['n']} images, {d['teacher']} "
        f"teacher, seed {d['seed']}): the whole sampling loop is timed (median of {d['repeats']} repeats, schedules "
        "interleaved so drift hits all alike) and compared with the plain loop without hooks. rFID is FID against "
        "the teacher's own images from the same noise, FID against the held-out digits (at this sample size FID "
        "against real data is noisy, which is why the search scores rFID).",
        provenance(name, d),
        f"Plain loop: {num(d['plain_loop_wall_seconds'], 1)} s (median; all: "
        + ", ".join(num(x, 1) for x in d["plain_loop_wall_seconds_all"])
        + " s). Hook overhead of an all-full schedule: "
        f"**{signed(100 * d['hook_overhead_all_full'], 1)} %** (`hook_overhead_under_3pct`: {yes(d['hook_overhead_under_3pct'])}). "
        f"Teacher FID at this n: {num(d['fid_teacher_vs_heldout'])}. The gap is `wall_vs_macs_gap` "
        "(1 - wall speed-up / MACs speed-up); `within_15pct` is the benchmark's own check.",
        table(["schedule", "full / partial / null", "MACs x", "wall x", "gap", "within_15pct", "rFID", "FID"], rows),
        f"Cost of one step per branch (full step: {mega(full)}MACs per sample; per-call latency at batch "
        f"{lat['batch_size']}: full {num(lat['full'], 3)} s). A partial step at a shallow branch costs a larger share "
        "of a full step's time than of its MACs on this CPU: its few convolutions have few channels, where oneDNN "
        "runs far below its peak, and the SiLU / GroupNorm passes do not shrink with the MACs.",
        table(["branch", "partial-step MACs", "share of full (MACs)", "latency", "share of full (time)"], brows),
    ]
    return "\n\n".join(text)


SECTIONS = [Section("step_types", "Step types: wall-clock against MACs", 20, ("step_types.json",), render)]
