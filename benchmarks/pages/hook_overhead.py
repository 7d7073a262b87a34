"""Hook overhead per network call (``benchmarks/hook_overhead.py``): the whole-loop overhead on the step-types page
compares loops timed minutes apart, so this times plain and hooked calls interleaved in rounds; the page shows every
round, so a reader can see whether the median overhead stands out of the round-to-round spread."""

from __future__ import annotations

from ._format import Doc, Docs, code, num, provenance, rel, signed, table
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    plain, hooked = d["plain_seconds"], d["hooked_seconds"]
    rows = [[str(r), num(p, 3), num(h, 3), rel(h / p) + (" (warm-up, dropped)" if r == 0 else "")] for r, (p, h) in enumerate(zip(plain, hooked))]
    lo, mid, hi = d["hook_overhead_min"], d["hook_overhead_median"], d["hook_overhead_max"]
    noise = (
        f" The paired rounds range from {signed(100 * lo, 1)} % to {signed(100 * hi, 1)} %, both signs: on this machine the overhead is within "
        "the round-to-round noise."
        if lo < 0 < hi
        else ""
    )
    return "\n\n".join(
        [
            f"The cost of flexdiff's hooks themselves on {code(d['model'])}: each round times {d['calls_per_round']} plain network calls on one batch "
            f"of {d['batch']}, then the same calls through an all-full schedule's hooks; {d['rounds']} rounds, the first dropped as warm-up. The "
            "overhead is the median over the paired rounds of hooked / plain - 1 (the hooked calls always run second in a round, so any warm-up "
            "favours them). It refines the whole-loop figure of [step types](#step_types), whose two loops are timed minutes apart.",
            provenance(name, d),
            f"Hook overhead per call: **{signed(100 * mid, 1)} %** (`hook_overhead_median`, over the {len(plain) - 1} paired rounds after the first).{noise}",
            table(["round", "plain s", "hooked s", "hooked vs plain"], rows),
        ]
    )


SECTIONS = [Section("hook_overhead", "Hook overhead per network call", 200, ("hook_overhead.json",), render)]
