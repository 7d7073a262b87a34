"""What the default search costs at real scale (``benchmarks/search_cost_at_scale.py``), in teacher-image equivalents from
published configs' MACs; the same table is generated into docs/search.md and a one-line headline into the README."""

from __future__ import annotations

from ._format import ROOT, Doc, Docs, provenance, table
from ._section import Embed, Section


def scale_cost_table(d: Doc) -> str:
    """The default search's teacher-image equivalents per phase on real-scale transformers (MACs of published configs),
    with today's defaults and those before the search frontier."""
    rows = []
    for name, by_setting in d["models"].items():
        for setting, m in by_setting.items():
            c = m["settings"]
            what = (
                f"{c['objective']} on {c['n']} images, {c['trials']} trials, "
                + (f"rungs {', '.join(map(str, c['rungs']))}, " if c["rungs"] else "")
                + ("every baseline, " if c["all_baselines"] else "baselines within the budget, ")
                + f"validation {c['validate_n']} x {c['validate_top']}"
            )
            rows.append(
                [
                    name,
                    f"{setting}: {what}",
                    *(f"{m['teacher_image_equivalents'][k]:,.0f}" for k in ("reference", "baselines", "search", "validation")),
                    f"**{m['total_teacher_image_equivalents']:,.0f}**",
                    f"{m['total_pmacs']:,.0f}",
                    f"{m['gpu_hours_at_assumed_seconds']:,.1f}" if m.get("gpu_hours_at_assumed_seconds") is not None else "–",
                ]
            )
    cfg = d["settings"]
    return (
        f"`flexdiff search` at its defaults ({cfg['steps']} steps, budget 1/{cfg['speedup']:g}) on a {d['resolution']} folder, now and before the "
        "search frontier was measured, in teacher-image equivalents (images generated x their MACs / the teacher's MACs per image: what "
        "`search --dry-run` prints), from the published configs' MACs (`transformer_cost.json`); nothing generated. GPU-hours convert them at an "
        f"**assumed** {d['assumed_seconds_per_image']:g} s per FLUX.1-dev image ({d['assumption']}).\n\n"
        + table(["model", "defaults", "reference", "baselines", "search", "validation", "total", "PMACs", "GPU-hours (assumed s/image)"], rows)
    )


def scale_cost_headline(d: Doc) -> str:
    """The README's line: the default search's teacher-image equivalents at real scale, before and now."""
    return (
        "; ".join(
            f"{name}: {m['before']['total_teacher_image_equivalents']:,.0f} before, **{m['now']['total_teacher_image_equivalents']:,.0f}** now"
            for name, m in d["models"].items()
        )
        + f" teacher-image equivalents ({d['resolution']}, {d['settings']['steps']} steps, budget 1/{d['settings']['speedup']:g})."
    )


def render(name: str, d: Doc, docs: Docs) -> str:
    return scale_cost_table(d) + "\n\n" + provenance(name, d)


SECTIONS = [Section("search_cost_at_scale", "What a search costs at real scale", 150, ("search_cost_at_scale.json",), render)]
EMBEDS = [Embed(ROOT / "docs" / "search.md", "search_cost_at_scale", scale_cost_table), Embed(ROOT / "README.md", "search_cost_at_scale", scale_cost_headline)]
