"""``flexdiff search``'s settings (:class:`SearchConfig`) and every check that needs no work, done before any work."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flexdiff.data import load_images
from flexdiff.errors import FlexdiffError
from flexdiff.measuring.features import get_feature_network
from flexdiff.models.conditioning import check_guidance, parse_labels, read_prompt_file
from flexdiff.running.own_loop import check_batch_size, check_image_count
from flexdiff.samplers import AUTO, PIPELINE, check_sampler
from flexdiff.search.fidelity import DEFAULT_MARGIN, FrontPruner, check_rungs
from flexdiff.search.space import GenomeSpace
from flexdiff.search.strategies import STRATEGIES
from flexdiff.search.study import check_storage_url, open_storage
from flexdiff.utils.device import resolve_dtype


@dataclass(frozen=True)
class SearchConfig:
    out: Path
    model: str = "builtin:digits"
    sampler: str = "ddim"  # the teacher's sampler (its reference images, the classic baselines); "auto": by the model's noise kind
    steps: int = 50
    solver: str | None = None  # the sampler searched schedules run with on the teacher's grid; None = ``sampler`` (the paper)
    speedup: float | None = 3.0
    max_macs: float | None = None
    elite_speedups: tuple[float, ...] = ()  # further budgets the evolution keeps an elite for (benchmarks over several budgets)
    # 4 noises, the paired distance, best.json chosen on validate_n = 16 fresh noises: within the earlier default's (rFID
    # on 256 images) 3-seed spread at every budget on the built-in DiT at 1/14.8 of its cost, on the built-in UNet at
    # every budget but 1/3 (as with 64 noises) at 1/8.9 (benchmarks/results/search_frontier_*.json)
    n: int = 4
    objective: str = (
        "paired"  # what the search minimises on its n images: paired (the mean distance to each image's teacher twin; unbiased at few images), or rfid
    )
    trials: int = 120
    strategy: str = "evolution"
    storage: str | None = None
    study: str | None = None
    workers: int = 1
    seed: int = 0
    segments: tuple[int, ...] = tuple(range(4, 26))  # every count from 4 to 25: DDIM-k (k in range) are genomes; fine cost steps
    forecast: bool = False  # a reuse/forecast gene per segment (forecast partial steps: TaylorSeer's first order)
    fidelity: tuple[
        int, ...
    ] = ()  # rungs (image counts < n) of the multi-fidelity evaluation; () = every candidate on all n (search/fidelity.py; the CLI's default: DEFAULT_RUNGS)
    prune_margin: float = DEFAULT_MARGIN  # relative paired-distance margin of the front pruner at 64 images; inf: the rungs recorded, nothing stopped
    reuse: bool = False  # exact trajectory reuse: a candidate starts where the stored run sharing its longest prefix was (flexdiff/trajectory.py)
    reuse_mb: int = 512  # bound of the stored runs (per worker process)
    peers: tuple[str, ...] = ()  # caching peers (search/peers.py) scored as baselines of the same study, at every setting of their sweep
    spacings: tuple[float, ...] = (1.0,)  # segment-boundary powers (Genome.segment_lengths); (1.0,) = the paper's equal segments (benchmarks/spacing.py)
    features: str = "digits"
    features_path: str | None = None  # local weights of the feature network (--clip DIR / --inception FILE)
    prompts: str | None = None  # prompt file of a text-to-image pipeline (flexdiff.models.conditioning)
    negative_prompt: str | None = None
    guidance: float | None = None  # None: 7.5 with prompts, else 1 (no guidance)
    labels: str | None = None  # class labels "0,3,7" of a class-conditional UNet (default: round-robin)
    validate_n: int = 16  # fresh noises best.json is chosen on (paired distance): out of the spread where 64 is, at a lower cost
    validate_top: int = 2
    reference: str | None = None  # real images for FID; default: the built-in model's held-out set
    baseline_intervals: tuple[int, ...] = (2, 3, 4, 5, 6)
    baseline_branches: tuple[int, ...] | None = None  # None = every branch
    all_baselines: bool = False  # also the baselines costlier than every budget (context rows; search/context.py: affordable)
    ddim_ks: tuple[int, ...] = (5, 8, 10, 13, 17, 20, 25)
    batch_size: int | None = None
    device: str = "cpu"
    control_images: str | None = None  # a ControlNet pipeline's conditioning images (folder or .npz)
    torch_dtype: str | None = None  # fp32 / fp16 / bf16 (diffusers' torch_dtype); None: the weights as stored
    variant: str | None = None  # weights variant (diffusion_pytorch_model.<variant>.safetensors)
    call_options: dict[str, Any] = field(default_factory=dict)  # height, width, num_frames, --pipeline-kwargs of a pipeline-driven model
    progress: bool = True

    @property
    def candidate_sampler(self) -> str:
        return self.solver or self.sampler

    @property
    def cuts(self) -> tuple[int, ...]:
        """Image counts at which evaluation batches end: the rungs where a candidate may be stopped there (a finite
        ``prune_margin``); none when the rungs are only recorded (``prune_margin`` inf) or absent."""
        return self.fidelity if math.isfinite(self.prune_margin) else ()

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], **overrides: Any) -> "SearchConfig":
        """The inverse of :meth:`to_json` (a worker process gets its config this way)."""
        tuples = ("segments", "spacings", "baseline_intervals", "ddim_ks", "elite_speedups", "baseline_branches", "peers", "fidelity")
        fields = {k: (tuple(v) if k in tuples and v is not None else v) for k, v in data.items()}
        return cls(**{**fields, "out": Path(data["out"]), **overrides})


#: what a search may minimise (``--objective``): rFID (Flexiffusion's; a Fréchet distance, biased at small n) or the
#: paired distance (mean per-image feature distance to the teacher's image from the same noise: BudCache's setting
#: of a few noises, since a mean over images is unbiased at any n)
OBJECTIVES = ("rfid", "paired")


def objective_of(row: dict[str, Any], objective: str) -> float:
    """A scored row's value of ``objective`` (rows hold both rFID and the paired distance)."""
    return float(row[objective])


def default_segments(steps: int) -> tuple[int, ...]:
    """The segment counts a genome may use by default for ``steps`` teacher steps: 4..25, capped at ``steps``."""
    return tuple(n for n in SearchConfig.segments if n <= steps) or (max(1, steps),)


def check_config(config: SearchConfig, connect: bool = True) -> None:
    """Every option that can be checked without work, checked before any work (no half-done run on a typo).
    ``connect=False`` (a dry run): a ``--storage`` URL is checked for its form and driver only, never opened, since
    opening one creates it (a SQLite file, a server's tables) and a dry run writes nothing."""
    check_sampler(config.sampler, auto=True)
    resolve_dtype(config.torch_dtype)
    if config.solver is not None:
        check_sampler(config.solver, fix="pick one with --solver")
        if PIPELINE in (config.sampler, config.solver) and config.solver != config.sampler:
            raise FlexdiffError(
                f"--sampler {config.sampler} --solver {config.solver}",
                f"with {PIPELINE}, the teacher and the searched schedules in the same (pipeline's) loop",
                "drop --solver",
            )
    STRATEGIES.get(config.strategy)
    if config.objective not in OBJECTIVES:
        raise FlexdiffError(
            f"--objective {config.objective}", f"one of {', '.join(OBJECTIVES)}", "pass --objective rfid (Flexiffusion's) or paired (few noises)"
        )
    if config.peers:
        from flexdiff.search.peers import PEERS

        for name in config.peers:
            PEERS.get(name, "pass --peers all, or a comma-separated list of them")
    check_image_count(config.n, "--n", least=2)  # rFID needs two images per side
    check_image_count(config.validate_n, "--validate-n", least=2)
    check_batch_size(config.batch_size)
    check_rungs(config.fidelity, config.n)
    FrontPruner(config.prune_margin)
    if config.reuse and config.reuse_mb < 1:
        raise FlexdiffError(f"--reuse-mb {config.reuse_mb}", "at least 1 MiB of stored runs", "pass e.g. --reuse-mb 512, or drop --reuse")
    if config.trials < 0:
        raise FlexdiffError(config.trials, "--trials >= 0", "pass the number of schedules to evaluate")
    cores = os.cpu_count() or 1
    if not 1 <= config.workers <= cores:  # more processes than cores only slow each other down (and can exhaust the machine)
        raise FlexdiffError(
            f"--workers {config.workers}",
            f"1 to {cores} worker processes (this machine's cores)",
            "pass a smaller --workers, or start workers on other machines with --storage",
        )
    if config.speedup is not None and not 1 <= config.speedup < math.inf:  # written so that NaN fails too
        raise FlexdiffError(f"--speedup {config.speedup}", "a target speed-up >= 1", "pass e.g. --speedup 3")
    if config.max_macs is not None and not 0 < config.max_macs < math.inf:
        raise FlexdiffError(f"--max-macs {config.max_macs}", "a positive MACs budget per sample", "see `flexdiff inspect` for the full-step MACs")
    if config.validate_top < 1:
        raise FlexdiffError(f"--validate-top {config.validate_top}", "at least 1 Pareto schedule to re-score", "pass e.g. --validate-top 6")
    GenomeSpace(config.steps, config.segments, 1, config.spacings)  # segment counts in [1, T], positive spacings
    reachable = config.steps / min(config.segments)  # the cheapest searched schedule: one full step per segment, nothing else
    if config.speedup is not None and config.speedup > reachable:
        raise FlexdiffError(
            f"--speedup {config.speedup}",
            f"at most {reachable:g}x, the cheapest searched schedule at --steps {config.steps} (one full step in each of {min(config.segments)} segments)",
            "pass a smaller --speedup, or more --steps / fewer --segments",
        )
    if config.features != AUTO:  # auto: decided by the model's images (flexdiff.search.context.resolve_features)
        get_feature_network(config.features, path=config.features_path)
    check_conditioning_options(config)
    if config.storage is not None:
        check_storage_url(config.storage)
        if connect:
            open_storage(config.storage)  # a user's URL: reachable? (the default SQLite file is created with the run)


def check_budget(config: SearchConfig, full_step_macs: float) -> None:
    """``--max-macs`` below the cheapest searched schedule (one full step in each of the fewest segments; nothing
    cheaper exists in the space) is refused before any work, as ``--speedup`` above it is in :func:`check_config`:
    otherwise the whole search runs and ends with no schedule within the budget. Needs the model's full-step MACs."""
    cheapest = full_step_macs * min(config.segments)
    if config.max_macs is not None and config.max_macs < cheapest:
        raise FlexdiffError(
            f"--max-macs {config.max_macs:g}",
            f"at least {cheapest:.0f} MACs per sample, the cheapest searched schedule at --steps {config.steps} "
            f"(one full step of {full_step_macs:.0f} MACs in each of {min(config.segments)} segments)",
            "pass a larger --max-macs, or fewer --segments",
        )


def check_conditioning_options(config: SearchConfig) -> None:
    """Prompt file, labels and guidance checked before any work (the model decides later whether it takes them)."""
    if config.prompts is not None:
        read_prompt_file(config.prompts)
    if config.labels is not None:
        parse_labels(config.labels, None)
    if config.control_images is not None:
        load_images(config.control_images)  # a readable image set (whether the model takes it is checked at load)
    check_guidance(config.guidance)
