"""The caching peers as baselines, run from their own code: diffusers' ``FirstBlockCache``, ``TaylorSeer``,
``PyramidAttentionBroadcast`` and ``MagCache`` hooks, applied with their ``apply_*`` functions, and cache-dit's DBCache
(alone and with its TaylorSeer calibrator; where the ``peers`` extra installed it), applied to the unmodified
denoiser and driven by flexdiff's own sampling loop on the reference noise, at a sweep of their settings.

Each call runs inside a diffusers ``CacheContext`` (name ``"cond"``, with the step index, step count, timestep and
sigma a pipeline gives it), and the hooks' state is reset before every batch, as a pipeline call does. What a peer
costs is what it computed: the MACs of the whole run are counted (``FlopCounterMode``) and divided by the number of
images, so a threshold-driven skip (FirstBlockCache, MagCache) is charged for exactly the blocks it ran. MagCache is
calibrated on the model as its documentation says: one calibration run of the teacher's grid prints the magnitude
ratios, which the sweep then uses.

Adding a peer is one :class:`PeerFamily` registered here (its sweep, how it builds its config, attaches and resets).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flexdiff.errors import FlexdiffError
from flexdiff.models import DiffusionModel
from flexdiff.running.cost import count_macs
from flexdiff.running.own_loop import generate
from flexdiff.utils.diffusers_private import (
    first_block_cache_hook_names,
    forget_child_registries,
    mag_cache_hook_names,
    pyramid_attention_broadcast_hook_names,
    set_cache_context,
    taylorseer_hook_names,
)
from flexdiff.utils.registry import Registry


@dataclass(frozen=True)
class PeerRun:
    """One peer at one setting: ``family`` (registered) and ``setting`` (its swept value)."""

    family: str
    setting: float

    @property
    def name(self) -> str:
        return f"{self.family}-{self.setting:g}"

    @property
    def key(self) -> str:
        """Its trial's key in the baselines study (never a schedule's: those start with their family's plan name)."""
        return self.name


@dataclass(frozen=True)
class PeerFamily:
    """A diffusers caching technique: its swept settings (for ``T`` steps) and how it builds and applies its config."""

    name: str
    description: str
    settings: Callable[[int], list[float]]
    #: (setting, model, grid, clock) -> diffusers config; ``clock()`` is the current model timestep (PAB's callback)
    config: Callable[[float, DiffusionModel, Sequence[float], Callable[[], float], dict[str, Any]], Any]
    #: ``(denoiser, config) -> detach``: puts the peer on the unmodified denoiser; ``detach()`` takes all of it off
    attach: Callable[[torch.nn.Module, Any], Callable[[], None]]
    #: ``(denoiser, config)``, before every batch: the state reset a pipeline call does (diffusers' stateful hooks)
    reset: Callable[[torch.nn.Module, Any], None]
    #: a calibration run the config needs first, ``(model, family, grid, sampler, noise) -> extras`` (MagCache's ratios)
    calibrate: Callable[..., dict[str, Any]] | None = None


PEERS: Registry[PeerFamily] = Registry("a caching peer", "pick one of the registered peers")


def register_peer(family: PeerFamily) -> PeerFamily:
    return PEERS.register(family.name, family)


def _diffusers_hooks(apply: Callable[[torch.nn.Module, Any], None], hook_names: Callable[[], tuple[str, ...]]) -> dict[str, Any]:
    """``attach`` / ``reset`` of a diffusers hook technique: ``apply_*`` on, its hooks removed by name, the stateful
    hooks reset as a pipeline call does."""
    from diffusers.hooks import HookRegistry

    def attach(module: torch.nn.Module, config: Any) -> Callable[[], None]:
        registry = HookRegistry.check_if_exists_or_initialize(module)
        apply(module, config)
        forget_child_registries(registry)  # diffusers caches the list of hooked submodules once; this peer added others

        def detach() -> None:
            for name in hook_names():
                registry.remove_hook(name, recurse=True)
            forget_child_registries(registry)

        return detach

    def reset(module: torch.nn.Module, config: Any) -> None:
        HookRegistry.check_if_exists_or_initialize(module).reset_stateful_hooks(recurse=True)

    return {"attach": attach, "reset": reset}


def _fbc() -> PeerFamily:
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

    return PeerFamily(
        "first-block-cache",
        "skip the remaining blocks while the first block's residual changes less than the threshold (relative L1)",
        lambda T: [0.02, 0.05, 0.08, 0.12, 0.2, 0.3, 0.5, 0.8],
        lambda s, m, g, clock, extra: FirstBlockCacheConfig(threshold=s),
        **_diffusers_hooks(apply_first_block_cache, first_block_cache_hook_names),
    )


def _taylorseer() -> PeerFamily:
    from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

    def config(s: float, m: DiffusionModel, g: Sequence[float], clock: Callable[[], float], extra: dict[str, Any]) -> Any:
        # a full step every `cache_interval` steps after two warm-up steps (a first-order factor needs two), first-order
        # Taylor forecasts of each block's attention and feed-forward outputs between, as the paper caches them. The
        # default identifiers (`...attn` by full match) miss DiT's and PixArt's `attn1` / `attn2`: named explicitly.
        return TaylorSeerCacheConfig(
            cache_interval=int(s),
            disable_cache_before_step=2,
            max_order=1,
            taylor_factors_dtype=torch.float32,
            cache_identifiers=[r"(single_)?transformer_blocks\.\d+\.(attn\d*|ff|ff_context|proj_mlp|proj_out)"],
        )

    return PeerFamily(
        "taylorseer",
        "full steps every N steps, first-order Taylor forecasts of every block's output between (TaylorSeer)",
        lambda T: [n for n in (2, 3, 4, 5, 6, 8, 10) if n < T],
        config,
        **_diffusers_hooks(apply_taylorseer_cache, taylorseer_hook_names),
    )


def _pab() -> PeerFamily:
    from diffusers.hooks import (
        PyramidAttentionBroadcastConfig,
        apply_pyramid_attention_broadcast,
    )

    def config(s: float, m: DiffusionModel, g: Sequence[float], clock: Callable[[], float], extra: dict[str, Any]) -> Any:
        # attention outputs reused for N - 1 of every N calls while the timestep is in (100, 800), as its default
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=int(s), spatial_attention_timestep_skip_range=(100, 800), current_timestep_callback=clock
        )

    return PeerFamily(
        "pyramid-attention-broadcast",
        "self-attention outputs broadcast for N - 1 of every N steps in the middle timesteps (PAB)",
        lambda T: [2, 3, 4, 6],
        config,
        **_diffusers_hooks(apply_pyramid_attention_broadcast, pyramid_attention_broadcast_hook_names),
    )


def _magcache() -> PeerFamily:
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    def config(s: float, m: DiffusionModel, g: Sequence[float], clock: Callable[[], float], extra: dict[str, Any]) -> Any:
        return MagCacheConfig(threshold=s, max_skip_steps=3, retention_ratio=0.2, num_inference_steps=len(g), mag_ratios=extra["mag_ratios"])

    return PeerFamily(
        "magcache",
        "skip the blocks while the accumulated magnitude-ratio error stays below the threshold (MagCache, calibrated)",
        lambda T: [0.01, 0.03, 0.06, 0.1, 0.16, 0.24, 0.4],
        config,
        **_diffusers_hooks(apply_mag_cache, mag_cache_hook_names),
        calibrate=_magcache_ratios,
    )


def peer_runs(T: int, families: Sequence[str] | None = None) -> list[PeerRun]:
    """Every registered peer (or those named) at every setting of its sweep for ``T`` steps."""
    names = list(families) if families is not None else PEERS.names()
    return [PeerRun(name, s) for name in names for s in PEERS.get(name).settings(T)]


@contextlib.contextmanager
def _applied(model: DiffusionModel, family: PeerFamily, config: Any) -> Iterator[None]:
    """The peer on the denoiser for the block; all of it taken off again after it."""
    detach = family.attach(model.denoiser, config)
    try:
        yield
    finally:
        detach()


def _denoise(
    model: DiffusionModel, family: PeerFamily, config: Any, grid: Sequence[float], clock: list[float]
) -> Callable[[], Callable[[torch.Tensor, float, int], torch.Tensor]]:
    """Per batch: the peer's state reset, then each call inside a ``CacheContext`` like a pipeline's loop."""
    from flexdiff.utils.diffusers_private import CacheContext

    module = model.denoiser

    def start() -> Callable[[torch.Tensor, float, int], torch.Tensor]:
        family.reset(module, config)

        def denoise(x: torch.Tensor, t: float, i: int) -> torch.Tensor:
            clock[0] = model.noise.model_timestep(t)
            sigma = float(t) if model.noise.kind == "flow" else None
            set_cache_context(module, CacheContext("cond", step_index=i, num_inference_steps=len(grid), timestep=clock[0], sigma=sigma))
            try:
                return model.eps(x, t)
            finally:
                set_cache_context(module, None)

        return denoise

    return start


def calibrate(model: DiffusionModel, grid: Sequence[float], sampler: str, noise: torch.Tensor, families: Sequence[str] | None = None) -> dict[str, Any]:
    """The calibration runs of every registered peer (or of those named) on ``noise`` over ``grid``: the extras their
    configs need."""
    extra: dict[str, Any] = {}
    for name in families if families is not None else PEERS.names():
        family = PEERS.get(name)
        if family.calibrate is not None:
            extra |= family.calibrate(model, family, grid, sampler, noise)
    return extra


def _magcache_ratios(model: DiffusionModel, family: PeerFamily, grid: Sequence[float], sampler: str, noise: torch.Tensor) -> dict[str, Any]:
    """MagCache's calibration run (``calibrate=True``: nothing skipped) on ``noise``; its printed ratios, as its docs
    ask the user to copy them."""
    from diffusers.hooks import MagCacheConfig

    clock = [0.0]
    printed = io.StringIO()
    config = MagCacheConfig(calibrate=True, num_inference_steps=len(grid))
    with _applied(model, family, config), contextlib.redirect_stdout(printed):
        generate(model, noise, grid, sampler, denoise=_denoise(model, family, config, grid, clock), decode=False)
    lists = [line for line in printed.getvalue().splitlines() if line.strip().startswith("[")]
    if not lists:
        raise FlexdiffError(family.name, "a calibration run that prints its magnitude ratios", "check the installed diffusers' MagCache")
    return {"mag_ratios": [float(v) for v in ast.literal_eval(lists[-1].strip())]}


def peer_images(
    model: DiffusionModel,
    run: PeerRun,
    noise: torch.Tensor,
    grid: Sequence[float],
    sampler: str,
    *,
    batch_size: int | None = None,
    extra: dict[str, Any] | None = None,
    on_step: Callable[[], None] | None = None,
    count: bool = True,
) -> tuple[torch.Tensor, float]:
    """Images in ``[-1, 1]`` of ``run`` from ``noise`` over the teacher's ``grid`` (all steps active), and the MACs per
    image it computed (counted over the whole run; 0 with ``count=False``)."""
    family = PEERS.get(run.family)
    clock = [0.0]
    config = family.config(run.setting, model, grid, lambda: clock[0], extra or {})
    images: list[torch.Tensor] = []

    def work() -> None:
        images.append(generate(model, noise, grid, sampler, batch_size=batch_size, denoise=_denoise(model, family, config, grid, clock), on_step=on_step))

    with _applied(model, family, config):
        macs = count_macs(work) if count else (work() or 0)
    return images[0].clamp(-1, 1), macs / len(noise)


def _cache_dit(calibrator: str | None) -> PeerFamily:
    """cache-dit's DBCache (``F1B0``: the first block decides by its residual's relative L1 change whether the others
    are reused, after two warm-up steps), alone or with its TaylorSeer calibrator (the residual forecast to first
    order), on the denoiser itself as its transformer-only mode does (``enable_cache(transformer)``, then
    ``refresh_context`` before every batch, ``disable_cache`` after). cache-dit is imported when a run uses it."""

    def cache_dit() -> Any:
        os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")  # it logs every context refresh at "info"
        import cache_dit

        return cache_dit

    def config(s: float, m: DiffusionModel, g: Sequence[float], clock: Callable[[], float], extra: dict[str, Any]) -> dict[str, Any]:
        lib = cache_dit()
        options = {
            "cache_config": lib.DBCacheConfig(
                Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=s, max_warmup_steps=2, num_inference_steps=len(g)
            )
        }
        return options | ({"calibrator_config": lib.TaylorSeerCalibratorConfig(taylorseer_order=1)} if calibrator else {})

    def attach(module: torch.nn.Module, options: dict[str, Any]) -> Callable[[], None]:
        cache_dit().enable_cache(module, **options)
        return lambda: cache_dit().disable_cache(module)

    name = "cache-dit-dbcache" + (f"-{calibrator}" if calibrator else "")
    what = "cache-dit's DBCache F1B0: the other blocks' residual reused while the first block's changes less than the threshold"
    return PeerFamily(
        name,
        what + (" and forecast by its TaylorSeer calibrator" if calibrator else ""),
        lambda T: [0.05, 0.08, 0.12, 0.2, 0.3, 0.5, 0.8],
        config,
        attach,
        lambda module, options: cache_dit().refresh_context(module, **options),
    )


for _factory in (_fbc, _taylorseer, _pab, _magcache):
    register_peer(_factory())
if importlib.util.find_spec("cache_dit") is not None:  # the `peers` extra (pip install "flexdiff[peers]")
    for _calibrator in (None, "taylorseer"):
        register_peer(_cache_dit(_calibrator))
