"""Stable Diffusion v1.5 cost (``benchmarks/sd15_cost.py``): flexdiff's MACs beside the published figure, per op family so
a difference can be located, and partial steps' wall-clock against their MACs at a scale the built-in model cannot show."""

from __future__ import annotations

from ._format import Doc, Docs, code, giga, integer, minsec, num, pct, provenance, signed, table, times, yes
from ._schedules import counts_text
from ._section import Section


def render(name: str, d: Doc, docs: Docs) -> str:
    fam = d["full_step_gmacs_by_op_family"]
    b1, b2 = d["batch1"], d["batch2_cfg"]
    summary = [
        ["parameters (published)", f"{integer(d['parameters'])} ({integer(d['published_parameters'])})"],
        ["full step, one UNet call", f"**{num(d['full_step_gmacs'], 1)} GMACs**"],
        ["full step with CFG (batch 2)", f"{num(d['full_step_gmacs_cfg_batch2'], 1)} GMACs"],
    ]
    for k in sorted(fam):
        summary.append([f"of which {k}", f"{num(fam[k], 1)} GMACs"])
    summary += [
        ["convolutions + linear layers only (what module-based counters see)", f"**{num(d['full_step_gmacs_conv_and_linear_only'], 1)} GMACs**"],
        ["published figure", f"{num(d['published_gmacs'], 1)} GMACs"],
        ["convolutions + linear vs published", signed(100 * d["conv_and_linear_only_vs_published"], 2) + " %"],
        ["full step wall-clock, batch 1 / batch 2 (best of rounds)", f"{num(b1['full_seconds_min'], 1)} s / {num(b2['full_seconds_min'], 1)} s"],
        ["`all_within_15pct` (every wall ratio close to its MACs ratio, the benchmark's check)", yes(d["all_within_15pct"])],
        ["benchmark wall-clock", minsec(d["total_seconds"])],
    ]
    rows = []
    gaps = []
    for b in d["branches"]:
        w2 = pct(b["batch2_wall_ratio"]) if "batch2_wall_ratio" in b else ""
        g2 = signed(100 * b["batch2_wall_vs_macs"], 1) + " %" if "batch2_wall_vs_macs" in b else ""
        rows.append(
            [
                str(b["branch"]),
                code(b["skip"]),
                giga(b["partial_macs"]),
                pct(b["macs_ratio"]),
                pct(b["batch1_wall_ratio"]),
                w2,
                signed(100 * b["batch1_wall_vs_macs"], 1) + " % / " + (g2 or "-"),
                yes(b["within_15pct"]),
            ]
        )
        gaps.append((abs(b["batch1_wall_vs_macs"]), "batch 1", b["branch"]))
        if "batch2_wall_vs_macs" in b:
            gaps.append((abs(b["batch2_wall_vs_macs"]), "batch 2", b["branch"]))
    g = max(gaps)
    reach = d["reachable_speedups_batch1"]
    dc = [r for r in reach if r["schedule"].startswith("deepcache-")]
    ns = sorted({int(r["schedule"].split("-")[1][1:]) for r in dc})
    brs = sorted({int(r["schedule"].split("-b")[1]) for r in dc})
    cell = {(int(r["schedule"].split("-")[1][1:]), int(r["schedule"].split("-b")[1])): r for r in dc}
    rrows = [[f"N = {n}"] + [times(cell[(n, b)]["macs_speedup"]) if (n, b) in cell else "" for b in brs] for n in ns]
    ddim = sorted((r for r in reach if r["schedule"].startswith("ddim-")), key=lambda r: int(r["schedule"].split("-")[1]))
    pred = [
        [code(r["schedule"]), counts_text(r), times(r["macs_speedup"]), times(r["predicted_wall_speedup"])]
        for r in [cell[(n, brs[0])] for n in ns if (n, brs[0]) in cell] + ddim
    ]
    return "\n\n".join(
        [
            f"{d['model']}: cost only, no quality claim (cost does not depend on the weights). Input: one "
            f"{'x'.join(str(x) for x in d['latent_shape'])} latent with {'x'.join(str(x) for x in d['encoder_states'])} text "
            "encoder states; batch 2 is one image under classifier-free guidance (both halves in one UNet call). MACs "
            "come from flexdiff's cost model (FlopCounterMode plus the CPU fused-attention formula) per op family, so the "
            "difference to the published figure can be located. Wall-clock: each round runs one full step (which fills "
            "the cache of every branch) then a partial step at each branch through the same hooks as `flexdiff sample`; "
            "partial / full is the best-of-rounds ratio (robust to other jobs taking the CPU in bursts). `--macs-only` "
            "recounts the MACs in seconds on the meta device.",
            provenance(name, d),
            table(["measurement", "value"], summary),
            "Partial steps, share of a full step (MACs against measured wall-clock; batch 2 only where timed):",
            table(["branch", "skip", "GMACs", "MACs", "wall b1", "wall b2 (CFG)", "wall - MACs, b1 / b2", "within_15pct"], rows),
            f"Largest gap between a wall ratio and its MACs ratio: {signed(100 * g[0], 1)} % ({g[1]}, branch {g[2]}).",
            "Reachable MACs speed-ups over a DDIM-50 teacher, DeepCache uniform N at each branch (columns), batch 1:",
            table(["DeepCache"] + [f"b{b}" for b in brs], rrows),
            f"MACs against predicted wall-clock speed-up (from the measured step times, batch 1), DeepCache at branch {brs[0]} and DDIM-k:",
            table(["schedule", "full / partial / null", "MACs x", "predicted wall x"], pred),
        ]
    )


SECTIONS = [Section("sd15_cost", "Cost at Stable Diffusion v1.5 scale", 80, ("sd15_cost.json",), render)]
