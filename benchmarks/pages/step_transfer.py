"""One search for every step count (``benchmarks/step_transfer.py``): a schedule searched at one T moved to others by
``flexdiff.schedule.for_steps``, beside a search at each T and its best baseline. Owns every ``step_transfer*.json`` (one
per teacher), each headed by its model when there are several; docs/search.md carries the UNet's table."""

from __future__ import annotations

from typing import Any

from ._format import ROOT, Doc, Docs, num, provenance, table
from ._section import Embed, Section


def step_transfer_table(d: Doc) -> str:
    """A schedule searched at T0 moved to other step counts, beside a search at each and its best baseline."""
    labels = {
        "transferred": f"searched at T = {d['searched_at']}, moved",
        "searched_here": "searched at this T",
        "best_baseline": "best baseline at this T",
        "best_peer": "best caching peer at this T",
    }
    rows = []
    for e in d["steps"]:
        for key, label in labels.items():
            r = e.get(key)
            if r is not None:
                rows.append([str(e["T"]), label, f"`{r['name']}`", f"{r['macs_speedup']:.2f}x", num(r["rfid"], 3), num(r["fid"], 2), num(e["teacher_fid"], 2)])

    def verdict(e: dict[str, Any], key: str, who: str) -> str:
        """The moved plan against one rival at one T: cheaper (MACs) and closer (validated rFID), or which it is not."""
        moved, rival = e["transferred"], e.get(key)
        if rival is None:
            return f"no {who} within the budget"
        cheaper, better = moved["macs_speedup"] >= rival["macs_speedup"], moved["rfid"] < rival["rfid"]
        if cheaper == better:
            return f"the moved plan is cheaper and closer (rFID) than the {who}" if better else f"**the {who} is cheaper and closer**"
        return (
            f"the moved plan is cheaper ({moved['macs_speedup']:.2f}x against {rival['macs_speedup']:.2f}x), **the {who} closer**"
            if cheaper
            else f"the moved plan is closer, the {who} cheaper ({rival['macs_speedup']:.2f}x against {moved['macs_speedup']:.2f}x)"
        )

    rivals = [("best_baseline", "baseline")] + ([("best_peer", "peer")] if d.get("peers") else [])
    verdicts = "; ".join(f"T = {e['T']}: " + ", ".join(verdict(e, key, who) for key, who in rivals) for e in d["steps"])
    speedups = [e["transferred"]["macs_speedup"] for e in d["steps"]]
    s = d["search_settings"]
    solver = f"`{d['solver']}`" if d.get("solver") else "the sampler's own steps"  # '' / None: --solver '' (the DiT)
    return (
        f"`{d['model']}`, teacher `{d['sampler']}` at each T, candidates under {solver}; every search with the demo's settings ({s['n']} images, "
        f"{s['trials']} trials, budget 1/{s['speedup']:g}, rungs {', '.join(map(str, s['rungs']))}, reuse); the picks by search rFID within the budget, "
        f"re-scored on {d['validate_n']} images no search saw. The schedule searched at T = {d['searched_at']} (`{d['origin']}`) moved to each T by "
        "`flexdiff.schedule.for_steps` (segments of the searched length in steps, round(S T / T0) of them, each with the searched plan's share of "
        f"active steps over its part of the trajectory: the MACs share is kept, to rounding): the moved plan runs at {min(speedups):.2f}x to "
        f"{max(speedups):.2f}x. "
        + (
            f"The caching peers ({', '.join(f'`{p}`' for p in d['peers'])}) run from their own code at every setting of their sweep at each T; "
            f"the best within the budget by paired distance on {d['peer_n']} noises, re-scored with the rest. "
            if d.get("peers")
            else "The caching peers were not run for this file (`--peers`, a transformer only: on a UNet diffusers' block caches do not apply; DeepCache is among the baselines). "
        )
        + "Per T: "
        + verdicts
        + ".\n\n"
        + table(["T", "schedule", "name", "MACs x", "rFID", "FID", "teacher FID"], rows)
    )


def render(name: str, d: Doc, docs: Docs) -> str:
    return step_transfer_table(d) + "\n\n" + provenance(name, d)


SECTIONS = [
    Section(
        "step_transfer",
        "One search for every step count",
        160,
        ("step_transfer*.json",),
        render,
        subtitle=lambda name, d: f"`{d['model']}`, teacher `{d['sampler']}`",
    )
]
EMBEDS = [
    Embed(ROOT / "docs" / "search.md", "step_transfer", step_transfer_table),
    Embed(ROOT / "docs" / "search.md", "step_transfer_dit", step_transfer_table),
]
