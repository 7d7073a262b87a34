"""Compression (``flexdiff compress`` runs, ``benchmarks/compress_ablation.py``, ``benchmarks/compress_combined.py``): the
student's MACs, parameters and FID against the teacher's, the DiffNAS ablations, and a student with a schedule searched
for it, each against the target it was run for."""

from __future__ import annotations

from ._format import Doc, Docs, code, integer, machine_text, mega, minsec, num, pct, provenance, rel, table, times, yes
from ._schedules import schedule_label
from ._section import Section

RUN_TITLES = {
    "compress_run.json": "The acceptance run",
    "compress_run_dynamic.json": "The same budget with the default decaying alpha",
    "compress_run_constant.json": "A shorter constant-alpha run",
}


def related_machine(name: str, d: Doc, docs: Docs) -> str | None:
    """A ``flexdiff compress`` ``results.json`` records no machine: name the one recorded by a file that reuses its run folder."""
    out = d.get("config", {}).get("out")
    for other, od in sorted(docs.items()):
        if other != name and od.get("base_run") == out and od.get("machine"):
            return (
                f"not recorded in this file (a `flexdiff compress` `results.json`); {code(other)}, which reuses "
                f"this run's folder `{out}`, records {machine_text(od['machine'])}"
            )
    return None


def render_run(name: str, d: Doc, docs: Docs) -> str:
    c, t, s = d["config"], d["teacher"], d["student"]
    secs = d["seconds"]
    phases = [k for k in secs if k != "this_process"]
    hist = d["retrain"]["history"]
    intro = (
        f"`flexdiff compress` on `{c['model']}` with data `{c['data']}`: budget {num(c['macs_ratio'])} of the "
        f"teacher's MACs and {num(c['params_ratio'])} of its parameters, `--minutes {num(c['minutes'], 0)}`, "
        f"`--alpha {c['alpha']}`, seed {c['seed']}; FID with DDIM-50, {c['fid_n']} samples against "
        f"`{c['reference']}` (`{c['features']}` features). {c['distill_steps_per_block']} distillation steps per "
        f"block; retraining planned for {c['retrain_steps']} steps, last logged step {hist[-1]['step']} "
        f"(`cut_by_deadline`: {yes(d['retrain']['cut_by_deadline'])})."
    )
    main = [
        ["teacher", mega(t["macs"]), integer(t["params"]), num(t["fid"]), ""],
        [
            "student",
            f"{mega(s['macs'])} (**{pct(s['macs_ratio'])}**)",
            f"{integer(s['params'])} (**{pct(s['params_ratio'])}**)",
            f"**{num(s['fid'])}**",
            rel(s["fid"] / t["fid"]),
        ],
    ]
    blocks = [
        [
            b["block"],
            b["choice"],
            f"{mega(b['macs'])} / {mega(b['teacher_macs'])}",
            pct(b["macs"] / b["teacher_macs"], 0),
            f"{integer(b['params'])} / {integer(b['teacher_params'])}",
            num(b["loss"], 4),
        ]
        for b in d["blocks"]
    ]
    tsec = [[k, num(secs[k], 1) + " s"] for k in phases]
    tsec.append(["sum of phases", f"{num(sum(secs[k] for k in phases), 1)} s ({minsec(sum(secs[k] for k in phases))})"])
    tsec.append(["this process (`this_process`)", f"{num(secs['this_process'], 1)} s ({minsec(secs['this_process'])})"])
    return "\n\n".join(
        [
            intro,
            provenance(name, d, related_machine(name, d, docs)),
            table(["", "MACs per step", "parameters", "FID", "vs teacher"], main),
            "Per-block choices (width of each residual layer relative to the teacher's; block loss relative to the teacher's output power):",
            table(["block", "choice", "MACs student / teacher", "share", "parameters student / teacher", "loss"], blocks),
            "Phase wall-clock:",
            table(["phase", "seconds"], tsec),
        ]
    )


def render_ablation(name: str, d: Doc, docs: Docs) -> str:
    a, b = d["a_alpha"], d["b_search"]
    arms = [("(a) " + a["base_alpha"] + " (the run's own)", a["base_alpha"], "local", a["base"])]
    for k, v in a["arms"].items():
        arms.append(("(a) " + k, k, "local (same)", v))
    g = b["global"]
    arms.append((f"(b) global ranking of {g['samples']} sampled whole students (output loss, shared weights)", a["base_alpha"], "global", g))
    best = min(v["student_fid"] for *_, v in arms)
    rows = []
    for label, alpha, choice, v in arms:
        fid = num(v["student_fid"])
        rows.append(
            [
                label,
                code(alpha),
                choice,
                f"{pct(v['macs_ratio'])} / {pct(v['params_ratio'])}",
                f"**{fid}**" if v["student_fid"] == best else fid,
                rel(v["student_fid"] / v["teacher_fid"]),
                num(v["final_loss"]["feature"], 3),
                num(v["final_loss"]["output"], 4),
            ]
        )
    best_label = [label for label, *_, v in arms if v["student_fid"] == best][0]
    loc, glo = b["local"], b["global"]
    lg = "local" if loc["student_fid"] < glo["student_fid"] else "global"
    return "\n\n".join(
        [
            f"DiffNAS ablations on the built-in teacher. One {num(d['minutes'], 0)}-minute `flexdiff compress` run "
            f"(budget {num(d['macs_ratio'])}, seed {d['seed']}, `--alpha {d['base_alpha']}`, run dir `{d['base_run']}`); "
            "the other arms reuse its recorded features and trained supernets and retrain for the same number of steps "
            f"({a['base']['retrain_steps']}) with the same seed, differing in one thing: (a) the retraining loss weight "
            "alpha, (b) block-wise local search against one global ranking of whole sampled students. FID: DDIM-50, "
            f"{d['fid_n']} samples against held-out digits (teacher {num(a['base']['teacher_fid'])}). The `--alphas` "
            "value is one quoted argument when rerun.",
            provenance(name, d),
            table(["arm", "alpha", "block choice", "MACs / params", "FID", "vs teacher", "final block feature loss", "final output loss"], rows),
            f"- Lowest FID: {best_label}.\n"
            f"- (b) {lg} search wins: local {num(loc['student_fid'])} against global {num(glo['student_fid'])}. Scoring "
            f"every candidate block by block took {num(b['local_search_scoring_seconds'], 1)} s, ranking {glo['samples']} "
            f"whole students {num(glo['ranking_seconds'], 1)} s.",
        ]
    )


def render_combined(name: str, d: Doc, docs: Docs) -> str:
    c = d["c_combined"]
    pick = c["best"]
    rows = []
    for r in sorted(c["rows"], key=lambda r: (r["kind"] != "searched", -r["total_speedup"], r["name"])):
        is_pick = r["name"] == pick["name"]
        notes = []
        if is_pick:
            notes.append("**the pick**")
        elif r["kind"] == "baseline":
            if r["fid"] < pick["fid"] and r["total_speedup"] >= pick["total_speedup"]:
                notes.append("**baseline: lower FID at equal or higher reduction**")
            if r["rfid_vs_student"] < pick["rfid_vs_student"]:
                notes.append("**baseline: lower rFID than the pick**")
        label = schedule_label(r["name"], r["sampler"], bold=False) if r["kind"] == "searched" else f"{code(r['name'])} (baseline)"
        rows.append([label, times(r["total_speedup"]), num(r["fid"]), rel(r["fid_ratio"]), num(r["rfid_vs_student"]), "; ".join(notes)])
    tgt = c["target"]
    return "\n\n".join(
        [
            f"The Flexiffusion search on a compressed student (base run `{d['base_run']}`, `--alpha {d['base_alpha']}`, "
            f"{pct(c['student_macs_ratio'])} of the teacher's MACs) at a schedule speed-up of "
            f"{times(c['schedule_speedup_on_student'])} on the student, so that the total against the teacher's DDIM-50 "
            "reaches the target. Every validated schedule is listed with its total MACs reduction and FID against "
            f"held-out digits ({d['fid_n']} samples; teacher {num(c['teacher_fid'])}); the pick is the lowest validated "
            "rFID against the student's own DDIM-50 images, never FID.",
            provenance(name, d),
            table(["schedule on the student", "total MACs reduction", "FID", "vs teacher", "rFID vs student", "note"], rows),
            f"Target: total MACs reduction at least {times(tgt['total_speedup'])} with FID at most "
            f"{rel(tgt['fid_ratio_max'])} of the teacher's. **Met: {yes(c['met'])}** ({times(pick['total_speedup'])} at "
            f"FID {num(pick['fid'])}, {rel(pick['fid_ratio'])}). Best baseline by the benchmark's pick: "
            f"`{c['best_baseline']['name']}` ({times(c['best_baseline']['total_speedup'])}, FID {num(c['best_baseline']['fid'])}).",
        ]
    )


SECTIONS = [
    Section(
        "compress_run",
        "Compression runs on the built-in teacher",
        110,
        ("compress_run*.json",),
        render_run,
        subtitle=lambda name, d: RUN_TITLES.get(name),
        first=tuple(RUN_TITLES),
    ),
    Section("compress_ablation", "DiffNAS ablations", 120, ("compress_ablation.json",), render_ablation),
    Section("compress_combined", "Student plus a schedule searched for it", 130, ("compress_combined.json",), render_combined),
]
