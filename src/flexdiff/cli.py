"""The ``flexdiff`` command line. Every bad input ends in one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from flexdiff.errors import FlexdiffError, output_folder

if TYPE_CHECKING:
    from flexdiff.schedule import Schedule

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
F = TypeVar("F", bound=Callable[..., Any])

MODEL = typer.Option("builtin:digits", "--model", help="builtin:digits or a local diffusers folder")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda")
SEED = typer.Option(0, "--seed", min=0, max=2**63 - 1, help="one seed drives noise and training")  # torch.Generator takes 64 bits
NO_REPORT = typer.Option(False, "--no-report", help="skip OUT/report.html (write it later with `flexdiff report OUT`)")
# conditioning of real pipelines (flexdiff.pipelines) and feature networks from local files
PROMPTS = typer.Option(None, "--prompts", help="prompt file of a text-to-image pipeline: one prompt per line, or SEED<TAB>prompt; image i takes prompt i mod P")
NEGATIVE_PROMPT = typer.Option(None, "--negative-prompt", help="negative prompt: the unconditional half of classifier-free guidance (default: empty)")
GUIDANCE = typer.Option(None, "--guidance", help="classifier-free guidance scale (default: 7.5 with --prompts, else 1 = none)")
LABELS = typer.Option(None, "--labels", help="class labels of a class-conditional UNet, e.g. 0,3,7, cycled over the images (default: round-robin)")
CLIP = typer.Option(None, "--clip", help="local CLIP folder (transformers CLIPModel, safetensors) for --features clip and the CLIP score")
INCEPTION = typer.Option(None, "--inception", help="local FID Inception weights file for --features inception (needs torch-fidelity)")


def _guard(fn: F) -> F:
    """A :class:`FlexdiffError` raised by ``fn`` becomes one stderr line and exit code 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlexdiffError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError too
            if not _out_of_memory(exc):
                raise
            detail = (str(exc).splitlines() or [""])[-1].strip()[:160]
            print(f"error: out of memory ({detail}): expected a job that fits this machine; lower --n or --batch-size", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failure (host or GPU): too large an --n or --batch-size for the machine, not a flexdiff bug."""
    import torch

    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(exc)


def _command(fn: F) -> F:
    return app.command()(_guard(fn))  # type: ignore[return-value]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


@_command
def sample(
    out: Path = typer.Option(..., "--out", help="folder for samples.npz, grid.png and run.json"),
    model: str = MODEL,
    sampler: str = typer.Option("ddim", "--sampler", help="ddim, dpmpp-2m or ddim-2m"),
    steps: int = typer.Option(50, "--steps", help="number of uniform sampler steps"),
    n: int = typer.Option(64, "--n", help="number of images"),
    seed: int = SEED,
    batch_size: int | None = typer.Option(None, "--batch-size", help="images per UNet call (default: all)"),
    eta: float = typer.Option(0.0, "--eta", help="DDIM stochasticity (0 = deterministic)"),
    schedule: Path | None = typer.Option(None, "--schedule", help="schedule JSON (flexdiff schedule ...); sets sampler and steps"),
    prompts: Path | None = PROMPTS,
    negative_prompt: str | None = NEGATIVE_PROMPT,
    guidance: float | None = GUIDANCE,
    labels: str | None = LABELS,
    clip: Path | None = CLIP,
    device: str = DEVICE,
) -> None:
    """Generate images; writes OUT/samples.npz (key images, float32 NCHW in [-1, 1]) and OUT/grid.png.

    With --schedule it also prints the schedule's MACs speed-up over its all-full teacher and the wall time.
    Latent pipelines save decoded images. With --prompts and --clip, run.json gets the CLIP score.
    """
    from flexdiff.data import save_grid, save_npz
    from flexdiff.models import load_model
    from flexdiff.samplers import check_eta, get_sampler
    from flexdiff.sampling import sample as run_sample, teacher_timesteps

    from flexdiff.cost import measure_macs
    from flexdiff.hooks import unet_layout
    from flexdiff.schedule import Schedule

    plan = Schedule.load(schedule) if schedule is not None else None
    sampler = plan.sampler if plan else sampler
    get_sampler(sampler)
    if n < 1:
        raise FlexdiffError(n, "--n >= 1", "ask for at least one image")
    m = load_model(model, device)
    from flexdiff.pipelines import condition, conditioning_summary, image_prompts

    condition(m, prompts=prompts, negative_prompt=negative_prompt, guidance=guidance, labels=labels)
    scorer = None
    if clip is not None:
        from flexdiff.clip import load_clip

        if prompts is None:
            raise FlexdiffError("--clip", "--prompts as well (the CLIP score compares images with their prompts)", "pass --prompts FILE or drop --clip")
        scorer = load_clip(clip, m.device)
    if plan is None:
        teacher_timesteps(m, sampler, steps)  # validates --steps before any work
    else:
        plan.check_branches(unet_layout(m.unet).num_branches)
        plan.check_timesteps(m.noise.num_train_timesteps, where=schedule)
    check_eta(eta)  # before any work (the sampler checks it again)
    output_folder(out, create=False)  # a file in the way is refused now; the folder is made once there are samples
    start = time.perf_counter()
    images = run_sample(m, n, sampler=sampler, steps=steps, seed=seed, eta=eta, batch_size=batch_size, schedule=plan, progress=True)
    wall = time.perf_counter() - start
    output_folder(out)
    save_npz(out / "samples.npz", images)
    save_grid(out / "grid.png", images[:64], scale=4 if images.shape[-1] <= 64 else 1)
    config = {"command": "sample", "model": model, "sampler": sampler, "steps": steps, "n": n, "seed": seed, "eta": eta, "batch_size": batch_size, "device": str(m.device), "wall_seconds": round(wall, 3)}
    if m.conditioning is not None:
        config["conditioning"] = conditioning_summary(m)
    if scorer is not None:
        config["clip_score"] = round(scorer.score(images, image_prompts(m, n)), 4)
        print(f"CLIP score {config['clip_score']:.2f} ({n} images vs their prompts)")
    if plan is not None:
        costs = measure_macs(m)
        config.update(schedule=plan.to_dict(), steps=plan.T, macs_per_sample=costs.schedule(plan), macs_speedup=round(costs.speedup(plan), 3))
        print(f"schedule {plan.name or schedule}: {plan.counts()} -> MACs speed-up {costs.speedup(plan):.2f}x over full-{plan.T}")
    _write_json(out / "run.json", config)
    print(f"{n} images in {wall:.1f} s -> {out / 'samples.npz'}, {out / 'grid.png'}")


@_command
def eval(  # noqa: A001 - the command is called eval
    samples: str = typer.Option(..., "--samples", help=".npz, image folder or builtin:digits-train|heldout"),
    reference: str = typer.Option("builtin:digits-heldout", "--reference", help="reference image set"),
    features: str = typer.Option("digits", "--features", help="feature network for FID"),
    n: int | None = typer.Option(None, "--n", help="use only the first N images of --samples"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    clip: Path | None = CLIP,
    inception: Path | None = INCEPTION,
    device: str = DEVICE,
) -> None:
    """FID between two image sets (.npz, image folders or builtin:digits-train / builtin:digits-heldout)."""
    from flexdiff.data import load_images
    from flexdiff.device import resolve_device
    from flexdiff.features import get_feature_network
    from flexdiff.metrics import frechet_distance

    net = get_feature_network(features, resolve_device(device), _features_path(features, clip, inception))
    if n is not None and n < 2:
        raise FlexdiffError(n, "--n >= 2 (FID needs two images per side)", "pass a larger --n or drop it")
    a, b = load_images(samples)[:n], load_images(reference)
    value = frechet_distance(net(b), net(a))
    result = {"fid": round(value, 4), "n_samples": len(a), "n_reference": len(b), "features": features}
    print(json.dumps(result) if as_json else f"FID {value:.3f}  ({len(a)} samples vs {len(b)} reference, {features} features)")


def _features_path(features: str, clip: Path | None, inception: Path | None) -> Path | None:
    """The local weights for ``--features``: --clip for clip, --inception for inception; refused for another network."""
    for option, path, name in (("--clip", clip, "clip"), ("--inception", inception, "inception")):
        if path is not None and features != name:
            raise FlexdiffError(f"{option} {path}", f"--features {name} (it holds that network's weights)", f"pass --features {name} or drop {option}")
    return clip if features == "clip" else inception if features == "inception" else None


@_command
def inspect(model: str = MODEL, device: str = DEVICE, as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the model's skip branches with their partial-step MACs and share of a full step."""
    from rich.table import Table

    from flexdiff.cost import measure_macs
    from flexdiff.hooks import unet_layout
    from flexdiff.models import load_model
    from flexdiff.progress import stdout

    m = load_model(model, device)
    layout = unet_layout(m.unet)
    costs = measure_macs(m)
    info = {
        "model": model,
        "class": type(m.unet).__name__,
        "sample_shape": list(m.sample_shape),
        "parameters": m.num_parameters,
        "decoder": type(getattr(m.decoder, "vae", m.decoder)).__name__ if m.decoder is not None else None,  # latent pipelines
        "text_encoder": m.prompt_encoder is not None,
        "full_step_macs": costs.full,
        "branches": [{"branch": b.index, "skip": b.label, "partial_macs": costs.partial[b.index], "share_of_full": round(costs.partial[b.index] / costs.full, 4)} for b in layout.branches],
    }
    if as_json:
        print(json.dumps(info))
        return
    latent = f" (latents; decoder {info['decoder']})" if m.decoder is not None else ""
    stdout.print(f"{model}: {info['class']} {tuple(m.sample_shape)}{latent}, {m.num_parameters:,} parameters, full step {costs.full / 1e6:.2f} MMACs per sample")
    table = Table("branch", "skip connection", "partial MMACs", "share of full")
    for row in info["branches"]:
        table.add_row(str(row["branch"]), row["skip"], f"{row['partial_macs'] / 1e6:.3f}", f"{row['share_of_full']:.1%}")
    stdout.print(table)


schedule_app = typer.Typer(no_args_is_help=True, help="Write schedule files (the teacher, the baselines, a Flexiffusion genome).")
app.add_typer(schedule_app, name="schedule")
TEACHER_STEPS = typer.Option(50, "--steps", help="T, the teacher's number of steps")
SAMPLER = typer.Option("ddim", "--sampler", help="ddim, dpmpp-2m or ddim-2m")
SCHEDULE_OUT = typer.Option(..., "--out", help="schedule JSON file to write")


def _schedule_command(fn: F) -> F:
    return schedule_app.command(fn.__name__.removeprefix("schedule_"))(_guard(fn))  # type: ignore[return-value]


def _teacher(model: str, sampler: str, steps: int) -> list[int]:
    from flexdiff.models import load_model
    from flexdiff.samplers import DEFAULT_SPACING, get_sampler, uniform_timesteps

    get_sampler(sampler)
    return uniform_timesteps(load_model(model, "cpu").noise.num_train_timesteps, steps, DEFAULT_SPACING[sampler])


def _write_schedule(plan: "Schedule", out: Path, model: str) -> None:
    from flexdiff.hooks import unet_layout
    from flexdiff.models import load_model

    plan.check_branches(unet_layout(load_model(model, "cpu").unet).num_branches)
    plan.save(out)
    print(f"{plan.name}: {plan.counts()} -> {out}")


@_schedule_command
def schedule_full(out: Path = SCHEDULE_OUT, model: str = MODEL, sampler: str = SAMPLER, steps: int = TEACHER_STEPS) -> None:
    """The teacher: every one of the T steps full."""
    from flexdiff.schedule import full

    _write_schedule(full(_teacher(model, sampler, steps), sampler), out, model)


@_schedule_command
def schedule_ddim(
    k: int = typer.Option(..., "--k", help="number of active (full) steps, evenly spread"),
    out: Path = SCHEDULE_OUT, model: str = MODEL, sampler: str = SAMPLER, steps: int = TEACHER_STEPS,
) -> None:
    """DDIM-k: k evenly spread full steps, the rest null (the sampler jumps over them)."""
    from flexdiff.schedule import ddim_k

    _write_schedule(ddim_k(_teacher(model, sampler, steps), k, sampler), out, model)


@_schedule_command
def schedule_deepcache(
    interval: int = typer.Option(..., "--interval", help="N: one full step every N steps"),
    branch: int = typer.Option(0, "--branch", help="skip branch of the partial steps (0 = shallowest)"),
    center: int | None = typer.Option(None, "--center", help="non-uniform: full steps cluster around this step"),
    power: float = typer.Option(1.4, "--power", help="non-uniform: clustering power p"),
    out: Path = SCHEDULE_OUT, model: str = MODEL, sampler: str = SAMPLER, steps: int = TEACHER_STEPS,
) -> None:
    """DeepCache 1:N, uniform (default) or non-uniform (--center)."""
    from flexdiff.schedule import deepcache_nonuniform, deepcache_uniform

    ts = _teacher(model, sampler, steps)
    plan = deepcache_uniform(ts, interval, branch, sampler) if center is None else deepcache_nonuniform(ts, interval, branch, center, power, sampler)
    _write_schedule(plan, out, model)


@_schedule_command
def schedule_genome(
    segments: str = typer.Option(..., "--segments", help="per segment BRANCH:INTERVAL, comma-separated, e.g. 0:3,1:2,0:4; append @POWER for unequal segments (e.g. 0:3,1:2,0:4@1.5)"),
    out: Path = SCHEDULE_OUT, model: str = MODEL, sampler: str = SAMPLER, steps: int = TEACHER_STEPS,
) -> None:
    """A Flexiffusion genome: T cut into segments (equal, or at a spacing power), each full -> (interval - 1) partials -> nulls."""
    from flexdiff.schedule import Genome

    _write_schedule(Genome.parse(segments).expand(_teacher(model, sampler, steps), sampler), out, model)


def _default_segments(steps: int) -> tuple[int, ...]:
    from flexdiff.search.run import SearchConfig

    return tuple(n for n in SearchConfig.segments if n <= steps) or (max(1, steps),)


def _floats(text: str, option: str) -> tuple[float, ...]:
    """``"1,1.5,2"`` -> (1.0, 1.5, 2.0)."""
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        values = ()
    if not values:
        raise FlexdiffError(f"{option} {text}", "comma-separated numbers, e.g. 1,1.5,2", f"fix {option}")
    return values


def _ints(text: str, option: str) -> tuple[int, ...]:
    """``"5,10,25"`` or ranges ``"4-25"`` (inclusive), mixed freely."""
    try:
        values: tuple[int, ...] = ()
        for part in (p.strip() for p in text.split(",") if p.strip()):
            low, dash, high = part.partition("-")
            values += tuple(range(int(low), int(high) + 1)) if dash and low else (int(part),)
    except ValueError:
        raise FlexdiffError(f"{option} {text}", "comma-separated integers or ranges, e.g. 5,10,25 or 4-25", f"fix {option}") from None
    if not values:
        raise FlexdiffError(f"{option} {text!r}", "at least one integer", f"fix {option}")
    return values


@_command
def search(
    out: Path = typer.Option(..., "--out", help="run folder: study.db, teacher cache, results.json, best.json, schedules/"),
    model: str = MODEL,
    sampler: str = SAMPLER,
    steps: int = TEACHER_STEPS,
    solver: str | None = typer.Option(None, "--solver", help="sampler the searched schedules run with on the teacher's steps (default: --sampler): dpmpp-2m, or ddim-2m (DDIM corrected to the teacher's error where it skips steps); DDIM-k and DeepCache are then also scored under it"),
    speedup: float = typer.Option(3.0, "--speedup", help="target MACs speed-up: the budget is teacher MACs / X"),
    max_macs: float | None = typer.Option(None, "--max-macs", help="budget in MACs per sample (overrides --speedup)"),
    n: int = typer.Option(256, "--n", help="images per rFID evaluation during the search"),
    trials: int = typer.Option(100, "--trials", help="searched schedules to evaluate (baselines come on top)"),
    strategy: str = typer.Option("evolution", "--strategy", help="evolution (Flexiffusion), nsga2 or random"),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL shared by workers (default: sqlite in OUT)"),
    study: str | None = typer.Option(None, "--study", help="study name (default: derived from the setup, so reruns resume)"),
    workers: int = typer.Option(1, "--workers", help="worker processes on this machine"),
    seed: int = SEED,
    segments: str | None = typer.Option(None, "--segments", help="segment counts the genome may use: a list (5,7,10) or a range (default 4-25, capped at --steps)"),
    spacings: str = typer.Option("1", "--spacings", help="segment-boundary powers the genome may use, e.g. 0.8,1,1.5: 1 = equal segments (Flexiffusion), >1 = shorter segments towards the clean end, <1 = towards the noisy end"),
    validate_n: int = typer.Option(1000, "--validate-n", help="images per schedule in the final validation"),
    validate_top: int = typer.Option(6, "--validate-top", help="Pareto schedules re-scored in the final validation"),
    baseline_branches: str | None = typer.Option(None, "--baseline-branches", help="DeepCache baseline branches (default: all)"),
    features: str = typer.Option("digits", "--features", help="feature network of rFID / FID"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    prompts: Path | None = PROMPTS,
    negative_prompt: str | None = NEGATIVE_PROMPT,
    guidance: float | None = GUIDANCE,
    labels: str | None = LABELS,
    clip: Path | None = CLIP,
    inception: Path | None = INCEPTION,
    device: str = DEVICE,
    no_report: bool = NO_REPORT,
) -> None:
    """Flexiffusion search: the schedules closest to the teacher (rFID) for each cost, baselines beside."""
    from flexdiff.search.run import SearchConfig, search as run_search
    from flexdiff.search.table import print_results

    config = SearchConfig(
        out=out, model=model, sampler=sampler, steps=steps, solver=solver, speedup=None if max_macs is not None else speedup, max_macs=max_macs, n=n,
        trials=trials, strategy=strategy, storage=storage, study=study, workers=workers, seed=seed, segments=_ints(segments, "--segments") if segments else _default_segments(steps),
        spacings=_floats(spacings, "--spacings"),
        features=features, validate_n=validate_n, validate_top=validate_top, batch_size=batch_size, device=device,
        baseline_branches=_ints(baseline_branches, "--baseline-branches") if baseline_branches else None,
        features_path=str(p) if (p := _features_path(features, clip, inception)) else None, prompts=str(prompts) if prompts else None,
        negative_prompt=negative_prompt, guidance=guidance, labels=labels,
    )
    print_results(run_search(config, report=not no_report))


@_command
def report(
    run_dir: Path = typer.Argument(..., help="run folder: the --out of `flexdiff search` (or `flexdiff compress`)"),
    out: Path | None = typer.Option(None, "--out", help="HTML file to write (default: RUN_DIR/report.html)"),
    n: int = typer.Option(16, "--n", help="images per row of the image grids (generated now from the run's config)"),
    device: str = DEVICE,
) -> None:
    """One self-contained HTML report (images embedded): Pareto plots, image grids, schedule strips, search progress, compress results, provenance."""
    from flexdiff.report import write_report

    path = write_report(run_dir, out, n_images=n, device=device, progress=True)
    print(f"report -> {path} ({path.stat().st_size / 1e3:.0f} kB)")


def _train_into(out: Path, work: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Check ``out`` before any work, train into a hidden sibling folder and move what training wrote into ``out``
    only on success: an earlier model, and any other file in ``out`` (a model card), is never lost."""
    from flexdiff.training import check_model_out, replace_model_files, scratch_folder

    check_model_out(out)
    tmp = scratch_folder(out)
    try:
        stats = work(tmp)
        replace_model_files(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


@_command
def train(
    out: Path = typer.Option(..., "--out", help="folder for the trained model (diffusers pipeline format)"),
    seed: int = SEED,
    minutes: float | None = typer.Option(None, "--minutes", help="wall-time cap (> 0); the step count reached is recorded"),
    steps: int = typer.Option(8000, "--steps", help="optimizer steps; the learning rate decays to zero over them (with --minutes: whichever ends first)"),
    data: str = typer.Option("builtin:digits-train", "--data", help="training images (.npz, folder or builtin set)"),
    device: str = DEVICE,
) -> None:
    """Train the built-in digits teacher (DDPM, EMA weights) reproducibly from a seed."""
    from flexdiff.data import load_images
    from flexdiff.device import resolve_device
    from flexdiff.progress import progress_bar
    from flexdiff.training import TeacherRecipe, train_teacher

    recipe = TeacherRecipe(seed=seed, steps=steps, minutes=minutes)  # checks --steps and --minutes before any work
    images = load_images(data)
    target = resolve_device(device)

    def work(tmp: Path) -> dict[str, Any]:
        # the bar starts only once _train_into has accepted --out: a refused --out is the only stderr line
        with progress_bar("training teacher", steps) as advance:
            return train_teacher(tmp, recipe, images, on_step=lambda s, loss: advance(1, f"loss {loss:.4f}"), device=target)

    print(json.dumps(_train_into(out, work)))


@_command
def train_features(
    out: Path = typer.Option(None, "--out", help="safetensors file (default: the packaged digits classifier)"),
    seed: int = SEED,
    epochs: int = typer.Option(40, "--epochs", help="training epochs (>= 1)"),
) -> None:
    """Train the `digits` feature network (a small CNN classifier) and report its held-out accuracy."""
    from flexdiff.features import DIGITS_CLASSIFIER
    from flexdiff.progress import progress_bar
    from flexdiff.training import check_classifier_args, train_classifier

    target = out or DIGITS_CLASSIFIER
    check_classifier_args(target, epochs)  # before the progress bar, so a refusal is the only stderr line
    with progress_bar("training digits classifier", epochs) as advance:
        stats = train_classifier(target, seed=seed, epochs=epochs, on_epoch=lambda e, loss: advance(1, f"loss {loss:.4f}"))
    print(json.dumps(stats))


@_command
def compress(
    out: Path = typer.Option(..., "--out", help="run folder: records, trained blocks, checkpoints, student/, results.json"),
    model: str = MODEL,
    data: str = typer.Option("builtin:digits-train", "--data", help="training images (.npz, folder or builtin set) of the model's size"),
    macs_ratio: float = typer.Option(0.5, "--macs-ratio", help="student MACs budget as a share of the teacher's, in (0, 1]"),
    params_ratio: float | None = typer.Option(None, "--params-ratio", help="parameter budget as a share of the teacher's (default: --macs-ratio)"),
    minutes: float = typer.Option(40.0, "--minutes", help="wall-time budget of the whole run; phases get shares of it"),
    seed: int = SEED,
    alpha: str = typer.Option("dynamic", "--alpha", help="retraining weight of the block loss: dynamic (cosine 1 -> 0), dynamic:START,END (cosine START -> END) or constant:X"),
    fid_n: int = typer.Option(1000, "--fid-n", help="images per FID (DDIM-50, teacher and student); 0 skips FID"),
    reference: str | None = typer.Option(None, "--reference", help="real images for FID (default: held-out digits for builtin:digits)"),
    record_n: int = typer.Option(4096, "--record-n", help="noised training images whose teacher block features train the blocks"),
    val_n: int = typer.Option(256, "--val-n", help="recorded rows that score the candidates"),
    distill_steps: int | None = typer.Option(None, "--distill-steps", help="supernet steps per block (default: from --minutes)"),
    retrain_steps: int | None = typer.Option(None, "--retrain-steps", help="retraining steps (default: from --minutes)"),
    device: str = DEVICE,
    no_report: bool = NO_REPORT,
) -> None:
    """DiffNAS: distil the model into a student with at most --macs-ratio of its MACs (and parameters).

    Resumable: rerunning the same command continues the phase a killed run was in. The student in OUT/student/ loads
    like any model (flexdiff sample / eval / inspect / search --model OUT/student).
    """
    from flexdiff.nas.compress import CompressConfig, compress as run_compress, prepare
    from flexdiff.nas.report import print_summary

    config = CompressConfig(
        out=out, model=model, data=data, macs_ratio=macs_ratio, params_ratio=params_ratio, minutes=minutes, seed=seed, alpha=alpha,
        fid_n=fid_n, reference=reference, record_n=record_n, val_n=val_n, distill_steps=distill_steps, retrain_steps=retrain_steps,
        device=device, command=tuple(["flexdiff", *sys.argv[1:]]),
    )
    print_summary(run_compress(config, prepare(config)))
    if not no_report:
        from flexdiff.report import write_run_report

        write_run_report(out, device=device)


def main() -> None:
    """The ``flexdiff`` entry point. Usage errors (an unknown option, ``--n abc``, a missing ``--out``) end in one line
    and exit code 2 as well, instead of the framed usage box; ``--help`` and bare commands still print help."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:  # Ctrl-C
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        # click's UsageError family, whichever click typer runs on (it vendors its own since 0.2x): exit code 2 and
        # format_message(); NoArgsIsHelpError is one of them and shows the help instead
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            raise SystemExit(2) from None
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "flexdiff"
        print(f"error: {exc.format_message().rstrip('.')}; see `{command} --help`".replace("\n", " "), file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code or 0)
