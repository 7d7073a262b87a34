"""Which diffusers pipelines ``flexdiff.enable`` covers (``benchmarks/coverage.py``): the suite's pipelines one row each and
the sweep over every exported pipeline class; docs/pipelines.md and docs/transformers.md carry the same block."""

from __future__ import annotations

from ._format import ROOT, Doc, Docs, code, pct, provenance, table, yes
from ._section import Embed, Section


def coverage_table(d: Doc) -> str:
    """The coverage suite's pipelines (benchmarks/coverage.py), one row each."""
    rows = []
    for key, r in d["pipelines"].items():
        nulls = r["null_steps"]
        nulls = "refused in one line" if nulls.startswith("refused") else nulls
        denoisers = ", ".join(f"`{v}`" + (f" ({a})" if len(r["denoisers"]) > 1 else "") for a, v in r["denoisers"].items())
        rows.append(
            [
                key,
                f"`{r['pipeline']}`" + (" (video)" if r["video"] else ""),
                denoisers,
                f"`{r['scheduler']}`",
                yes(r["all_full_equal"]),
                f"{yes(r['caching_changes_output'])}, {pct(r['caching_linear_share'], 0)} of the linear calls",
                nulls,
                yes(r["disable_restores"]),
            ]
        )
    return table(["case", "pipeline", "denoiser", "scheduler", "all-full = plain call", "caching schedule changes it", "null steps", "disable restores"], rows)


def coverage_sweep(d: Doc) -> str:
    """The sweep over every exported pipeline's denoiser: accepted transformer classes, refusals, unbuilt."""
    verdicts = d["sweep"]
    accepted = sorted(n for n, v in verdicts.items() if v == "accepted (transformer)")
    unets = sorted(n for n, v in verdicts.items() if v == "accepted")
    refused = sorted(n for n, v in verdicts.items() if v.startswith("refused"))
    unbuilt = sorted(n for n, v in verdicts.items() if v.startswith("not built"))
    return (
        f"Every pipeline class diffusers {d['diffusers']} exports, by its denoiser class ({len(verdicts)} classes, built on the meta device and "
        f"given flexdiff's hooks as `enable` gives them): **{len(accepted)} transformer classes accepted** ({', '.join(code(n) for n in accepted)}); "
        f"{len(unets)} UNet classes accepted ({', '.join(code(n) for n in unets)}); {len(refused)} refused in one line, each naming the class and the "
        f"reason ({', '.join(code(n) for n in refused)}); {len(unbuilt)} not built from their defaults ({', '.join(code(n) for n in unbuilt)}). None crashed."
    )


def coverage_block(d: Doc) -> str:
    """The block the hand-written pages carry: the suite's table and the sweep."""
    return coverage_table(d) + "\n\n" + coverage_sweep(d)


def render(name: str, d: Doc, docs: Docs) -> str:
    return "\n\n".join(
        [
            "`flexdiff.enable` on tiny pipelines built with diffusers' classes at the sizes of diffusers' own test dummy components "
            "(random weights, random prompt embeddings, `tests/coverage/`). The caching schedule alternates full steps with partial "
            "steps at branch 1 (DeepCache on a UNet, the (F, B) residual on a transformer), full wherever a second denoiser takes over; "
            "null steps drop every other step. Shares of linear-layer calls on tiny random models say which work is skipped, not how "
            "fast a real model runs.",
            coverage_table(d),
            coverage_sweep(d),
            provenance(name, d),
        ]
    )


SECTIONS = [Section("coverage", "Which diffusers pipelines enable covers", 140, ("coverage.json",), render)]
EMBEDS = [Embed(ROOT / "docs" / "pipelines.md", "coverage", coverage_block), Embed(ROOT / "docs" / "transformers.md", "coverage", coverage_block)]
