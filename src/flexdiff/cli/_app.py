"""The ``flexdiff`` application: the Typer app, the error net every command runs under, and the shared options."""

from __future__ import annotations

import errno
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from flexdiff.errors import FlexdiffError
from flexdiff.measuring.features import feature_network_names
from flexdiff.samplers import AUTO, DEFAULT_SAMPLERS, PIPELINE, sampler_names
from flexdiff.utils.text import escape, mask_password, shorten

HELP = "flexdiff: make pretrained diffusion models faster at the same quality. Every bad input ends in one line on stderr and exit code 2."
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=HELP)
F = TypeVar("F", bound=Callable[..., Any])

MODEL = typer.Option("builtin:digits", "--model", help="builtin:digits or a local diffusers folder")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda")
DTYPE = typer.Option(None, "--dtype", help="weights dtype, as diffusers' torch_dtype: fp32, fp16 or bf16 (default: as stored)")
VARIANT = typer.Option(None, "--variant", help="weights variant, as diffusers' variant: e.g. fp16 reads diffusion_pytorch_model.fp16.safetensors")
SEED = typer.Option(0, "--seed", min=0, max=2**63 - 1, help="one seed drives noise and training")  # torch.Generator takes 64 bits
NO_REPORT = typer.Option(False, "--no-report", help="skip OUT/report.html (write it later with `flexdiff report OUT`)")
# conditioning of real pipelines (flexdiff.models.conditioning) and feature networks from local files
PROMPTS = typer.Option(None, "--prompts", help="prompt file of a text-to-image pipeline: one prompt per line, or SEED<TAB>prompt; image i takes prompt i mod P")
NEGATIVE_PROMPT = typer.Option(None, "--negative-prompt", help="negative prompt: the unconditional half of classifier-free guidance (default: empty)")
GUIDANCE = typer.Option(None, "--guidance", help="classifier-free guidance scale (default: 7.5 with --prompts, else 1 = none)")
LABELS = typer.Option(None, "--labels", help="class labels of a class-conditional UNet, e.g. 0,3,7, cycled over the images (default: round-robin)")
CONTROL_IMAGES = typer.Option(
    None, "--control-images", help="a ControlNet pipeline's conditioning images: an image folder or .npz; image i takes control image i mod K"
)
HEIGHT = typer.Option(
    None, "--height", min=1, help="image height in pixels, for a pipeline its own call drives (transformers, video, SDXL); default: the pipeline's"
)
WIDTH = typer.Option(None, "--width", min=1, help="image width in pixels (as --height)")
FRAMES = typer.Option(None, "--frames", min=1, help="frames of a video pipeline (its num_frames); default: the pipeline's")
PIPELINE_KWARGS = typer.Option(None, "--pipeline-kwargs", help="more keywords of the pipeline's call as a JSON object, e.g. '{\"max_sequence_length\": 128}'")
CLIP = typer.Option(None, "--clip", help="local CLIP folder (transformers CLIPModel, safetensors) for --features clip and the CLIP score")
FEATURE_WEIGHTS = typer.Option(
    None,
    "--feature-weights",
    help="a local folder, or the repo id of a model in your Hugging Face cache (never downloaded), of the --features network: siglip, dinov2 (or clip)",
)
INCEPTION = typer.Option(None, "--inception", help="local FID Inception weights file for --features inception (needs torch-fidelity)")


SAMPLER = typer.Option(
    AUTO,
    "--sampler",
    help=f"sampler: {', '.join(sampler_names())} (flexdiff's loop), {PIPELINE} (the folder's own scheduler, through the diffusers pipeline's own call), or {AUTO}: {' / '.join(DEFAULT_SAMPLERS.values())} by the model's noise schedule",
)
FEATURES = typer.Option("digits", "--features", help=f"feature network of FID / rFID: {', '.join(feature_network_names())}")
SEARCH_FEATURES = typer.Option(
    AUTO,
    "--features",
    help=f"feature network of rFID / FID: {', '.join(feature_network_names())}, or {AUTO}: clip with --clip, "
    "inception with --inception, digits for grey images (the built-ins), else a one-line refusal",
)
TEACHER_STEPS = typer.Option(50, "--steps", help="T, the teacher's number of steps")


#: ``flexdiff --debug CMD`` (or ``FLEXDIFF_DEBUG=1``): failures outside flexdiff's own errors show their traceback
#: instead of one line; set by the root callback for each invocation
DEBUG = {"on": False}
#: the longest error line printed: a value quoted whole (a huge argument, a file's field) is cut around the middle
MAX_ERROR = 1000
#: the exit code of an interrupted command (128 + SIGINT, as a shell reports it)
INTERRUPTED = 130


def guard(fn: F) -> F:
    """The error net every command runs under: whatever ``fn`` raises ends in one stderr line and exit code 2 (130
    for Ctrl-C, after the command's own clean-up ran), never a traceback — unless ``--debug`` asks for one.

    A :class:`FlexdiffError` is printed as is; an OS error (a full disk, a read-only folder, a missing file) names
    the path and the OS's reason; an allocation failure the options that size the job; anything else is named by
    type and message with the way to its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlexdiffError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            print(
                "interrupted: what had finished is kept (a search's finished trials, a compress run's finished phases); rerun the same command to resume",
                file=sys.stderr,
            )
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            if DEBUG["on"]:
                raise
            _fail(describe_failure(exc))

    return wrapper  # type: ignore[return-value]


def _fail(line: str) -> None:
    print(f"error: {escape(shorten(mask_password(line), MAX_ERROR))}", file=sys.stderr)  # masked whole, then cut
    raise typer.Exit(2) from None


def describe_failure(exc: BaseException) -> str:
    """The one line for an exception that is not a :class:`FlexdiffError`: value, expectation and fix."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        space = getattr(exc, "errno", None) == errno.ENOSPC
        fix = (
            "free space on that disk (or choose another --out) and rerun" if space else "check the path and its permissions (or choose another --out) and rerun"
        )
        return f"{where}{reason}: expected a path this command can read and write; {fix}"
    if isinstance(exc, RecursionError):
        return "an input nested too deeply to read (Python's recursion limit): expected a flat schedule, config or JSON file; fix the file"
    if isinstance(exc, (MemoryError, RuntimeError)) and _out_of_memory(exc):  # torch.OutOfMemoryError is a RuntimeError too
        detail = (str(exc).splitlines() or [""])[-1].strip()[:160]
        return f"out of memory ({detail}): expected a job that fits this machine; lower the image counts (--n, --validate-n, --record-n, --val-n, --fid-n) or --batch-size"
    detail = " ".join(str(exc).split())[:200] or "no message"
    return f"{type(exc).__name__} ({detail}): expected no internal failure; rerun with `flexdiff --debug ...` for the traceback and report it"


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failure (host or GPU): too large an --n or --batch-size for the machine, not a flexdiff bug."""
    import torch

    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(exc)


def command(fn: F) -> F:
    """Register ``fn`` as a command of :data:`app`, under the error net."""
    return app.command()(guard(fn))  # type: ignore[return-value]


def choices(names: list[str]) -> str:
    """A registry's names for ``--help`` ("ddim, ddim-2m or dpmpp-2m")."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def features_path(features: str, clip: Path | None, inception: Path | None, weights: str | None = None) -> Path | str | None:
    """The weights for ``--features``: --clip for clip, --inception for inception, --feature-weights for any network
    that loads weights (a folder or a Hugging Face repo id); refused for another network (``auto`` takes the one
    given: :func:`auto_features`)."""
    if features == AUTO:
        features = auto_features(features, clip, inception)
    if weights is not None:
        if features in ("digits", AUTO) or clip is not None or inception is not None:
            raise FlexdiffError(
                f"--feature-weights {weights}",
                "a --features network that loads weights (siglip, dinov2, clip, inception), and no --clip / --inception beside it",
                "pass e.g. --features dinov2 --feature-weights facebook/dinov2-small",
            )
        return weights
    for option, path, name in (("--clip", clip, "clip"), ("--inception", inception, "inception")):
        if path is not None and features != name:
            raise FlexdiffError(f"{option} {path}", f"--features {name} (it holds that network's weights)", f"pass --features {name} or drop {option}")
    return clip if features == "clip" else inception if features == "inception" else None


def auto_features(features: str, clip: Path | None, inception: Path | None) -> str:
    """``--features auto`` with ``--clip`` is clip, with ``--inception`` inception; otherwise it stays ``auto`` (the
    search decides by the model's images: :func:`flexdiff.search.context.resolve_features`)."""
    if features != AUTO or (clip is None) == (inception is None):
        return features
    return "clip" if clip is not None else "inception"


def call_options(height: int | None, width: int | None, frames: int | None, pipeline_kwargs: str | None) -> dict[str, Any]:
    """``--height``, ``--width``, ``--frames`` and ``--pipeline-kwargs`` as the keywords every pipeline call gets."""
    extra: Any = {}
    if pipeline_kwargs is not None:
        try:
            extra = json.loads(pipeline_kwargs)
        except ValueError:
            extra = None
        if not isinstance(extra, dict):
            raise FlexdiffError(
                f"--pipeline-kwargs {shorten(pipeline_kwargs)}",
                "a JSON object of the pipeline call's keywords",
                "fix it, e.g. '{\"max_sequence_length\": 128}'",
            )
    named = {k: v for k, v in (("height", height), ("width", width), ("num_frames", frames)) if v is not None}
    return {**extra, **named}


def floats(text: str, option: str) -> tuple[float, ...]:
    """``"1,1.5,2"`` -> (1.0, 1.5, 2.0)."""
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        values = ()
    if not values:
        raise FlexdiffError(f"{option} {shorten(text)}", "comma-separated numbers, e.g. 1,1.5,2", f"fix {option}")
    return values


#: the most integers one option's list or ranges may stand for (every such option lists segment counts, rungs or
#: branches: a few dozen at most); checked before a range is expanded
MAX_INTS = 10_000


def ints(text: str, option: str, low: int | None = None, high: int | None = None, what: str = "integers") -> tuple[int, ...]:
    """``"5,10,25"`` or ranges ``"4-25"`` (inclusive), mixed freely. Each range is checked against ``[low, high]`` and
    the total against :data:`MAX_INTS` before it is expanded (``1-10000000`` would take gigabytes, and an error
    listing it a line of megabytes); errors show the text shortened."""
    bounds = f"in [{low}, {high}]" if low is not None and high is not None else f">= {low}" if low is not None else f"<= {high}"
    parts: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        first, dash, last = part.partition("-")
        try:
            a, b = (int(first), int(last)) if dash and first else (int(part),) * 2
        except ValueError:
            raise FlexdiffError(f"{option} {shorten(text)}", f"comma-separated {what} or ranges, e.g. 5,10,25 or 4-25", f"fix {option}") from None
        if b < a or (low is not None and a < low) or (high is not None and b > high):
            example = f" (e.g. {option} {low}-{high})" if low is not None and high is not None and low < high else ""
            raise FlexdiffError(
                f"{option} {shorten(part)}", f"{what} {bounds}" + (", a range low-high with low first" if b < a else ""), f"fix {option}{example}"
            )
        parts.append((a, b))
    if sum(b - a + 1 for a, b in parts) > MAX_INTS:
        raise FlexdiffError(f"{option} {shorten(text)}", f"at most {MAX_INTS} {what} in all", f"fix {option}")
    values = tuple(v for a, b in parts for v in range(a, b + 1))
    if not values:
        raise FlexdiffError(f"{option} {shorten(text)!r}", f"at least one of the {what}", f"fix {option}")
    return values
