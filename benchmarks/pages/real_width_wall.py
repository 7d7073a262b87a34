"""Wall-clock at real width (``benchmarks/real_width_wall.py``): the built-in models are too narrow for their wall-clock
to follow MACs, so the searched step mixes are timed on real-width denoisers (random weights); the README carries a line."""

from __future__ import annotations

from flexdiff.schedule import Step

from ._format import ROOT, Doc, Docs, provenance, table
from ._section import Embed, Section


def real_width_headline(d: Doc) -> str:
    """The README's line on wall-clock at real width: wall / MACs of the searched mixes per model."""
    parts = []
    for key, m in d["models"].items():
        searched = [r for r in d["summary"][key] if r["family"] == "searched"]
        ratios = ", ".join(f"{r['budget']} {r['macs_speedup']:.2f}x MACs -> {r['predicted_wall_speedup']:.2f}x wall" for r in searched)
        e2e = "; ".join(f"{e['macs_speedup']:.2f}x MACs measured {e['measured_wall_speedup']:.2f}x whole-loop" for e in m["end_to_end"])
        parts.append(f"- {m['model'].split(' (')[0]}: {ratios} (per-kind sums; {e2e})")
    return f"Searched step mixes at real width, random weights, {d['machine'].get('cpu', d['device'])} ({d['device']}):\n\n" + "\n".join(parts)


def real_width_table(d: Doc) -> str:
    """Wall-clock against MACs speed-up of the searched step mixes on real-width models (random weights)."""
    parts = []
    for key, m in d["models"].items():
        rows = [
            [f"`{r['mix']}`", r["family"], r["budget"] or "–", f"{r['macs_speedup']:.2f}x", f"{r['predicted_wall_speedup']:.2f}x", f"{r['wall_over_macs']:.2f}"]
            for r in d["summary"][key]
        ]
        e2e = "; ".join(
            f"`{e['name']}`: measured {e['measured_wall_speedup']:.2f}x (paired median {e['measured_wall_speedup_paired_median']:.2f}x) against "
            f"{e['predicted_wall_speedup']:.2f}x predicted, MACs {e['macs_speedup']:.2f}x"
            for e in m["end_to_end"]
        )
        full = next(k for k in m["kinds"] if Step.parse(k["kind"]).info.fills_cache)
        parts.append(
            f"**{m['model']}** (`{m['class']}`, {m['parameters'] / 1e6:,.0f} M parameters, latent {'x'.join(map(str, m['latent_shape']))}, "
            f"{m['sampler']}-{m['T']}): a full step {m['full_step_gmacs']:,.1f} GMACs, {full['seconds_min']:.2f} s (best of {d['repeats']}). "
            f"Whole sampling loops, interleaved: {e2e}.\n\n" + table(["step mix", "family", "budget", "MACs x", "wall x (per-kind sum)", "wall / MACs"], rows)
        )
    return (
        f"Real-width denoisers built from published configs with random weights on `{d['device']}`: {d['timing']}. Mixes: the built-in teachers' "
        f"searched schedules with their branches mapped to the real model ({d['mapping_rule']['unet']}; {d['mapping_rule']['transformer']}), and "
        "uniform DeepCache / DDIM-k plans for context.\n\n" + "\n\n".join(parts)
    )


def render(name: str, d: Doc, docs: Docs) -> str:
    return real_width_table(d) + "\n\n" + provenance(name, d)


SECTIONS = [Section("real_width_wall", "Wall-clock at real width", 180, ("real_width_wall.json",), render)]
EMBEDS = [Embed(ROOT / "README.md", "real_width_wall", real_width_headline)]
