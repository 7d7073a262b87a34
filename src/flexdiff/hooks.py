"""Partial steps (DeepCache) on unmodified diffusers UNets, through diffusers' public hook layer.

The UNet's own ``forward`` is never copied. Every *unit* of the UNet's body — each down/up resnet, attention and
resampler, and the whole mid block — gets a :class:`PartialStepHook` (a diffusers ``ModelHook``) under one name,
so ``HookRegistry.remove_hook(HOOK_NAME)`` takes all of them off again.

Skip branches: the UNet's skip connections ``S[0..B-1]`` in the order the down path produces them (``conv_in``,
then each down resnet/attention output, then each downsampler output); branch ``b`` joins ``S[b]`` to the up resnet
that consumes it. A partial step at branch ``b`` (DeepCache, Ma et al. 2024, §3.2) runs only the units shallower than
that branch: the units strictly between the producer of ``S[b]`` and its consumer are *deep*; each deep unit replays
the output it recorded at the latest full step instead of computing. Replaying the last deep unit's output is exactly
DeepCache's cached main-branch feature; the shallow units recompute with the new ``x_t`` and timestep embedding.

A deep unit whose output only feeds other deep units (the next unit and, for a skip producer, the up resnet that
consumes that skip) is *hollow*: in a partial step it replays a zero-channel view ``(N, 0, H, W)`` of its cached
output instead of the output itself. The values are never read (their consumers replay too), but the up blocks'
``torch.cat([hidden, skip])`` then copies nothing: on a CPU those copies of replayed 16x16 features were a large
share of a shallow partial step's time. The last deep unit (feeding the first shallow one) replays the real tensor.

The executor owns the clock: it sets :class:`StepState` (full / partial and branch) before each UNet call.
Nothing here looks at timestep values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

from flexdiff.errors import FlexdiffError

HOOK_NAME = "flexdiff.partial_step"


@dataclass
class StepState:
    """Set by the executor before every UNet call. ``deep`` holds the unit indices that replay the cache."""

    mode: str = "off"  # off (plain model) | full (compute, record `record`) | partial (replay `deep`)
    deep: range = range(0)
    hollow: frozenset[int] = frozenset()  # deep units that may replay a zero-channel view (see module docstring)
    record: range = range(0)
    cache: dict[int, Any] = field(default_factory=dict)
    calls: int = 0  # UNet bodies actually computed, for tests and accounting

    def enter_full(self, record: range) -> None:
        """The next UNet call computes everything and caches the outputs of the units in ``record``."""
        self.mode, self.record, self.deep, self.hollow = "full", record, range(0), frozenset()

    def enter_partial(self, branch: "Branch", hollow: bool = True) -> None:
        """The next UNet call replays ``branch``'s deep units (``hollow=False``: always the real cached tensors)."""
        self.mode, self.deep, self.hollow = "partial", branch.deep, branch.hollow if hollow else frozenset()

    def reset(self) -> None:
        self.mode, self.deep, self.hollow, self.record, self.calls = "off", range(0), frozenset(), range(0), 0
        self.cache.clear()


def _hollow_view(output: Any) -> Any:
    """``(N, C, H, W)`` -> a ``(N, 0, H, W)`` view (no copy); tuples element-wise; anything else unchanged."""
    if isinstance(output, torch.Tensor) and output.dim() >= 2:
        return output[:, :0]
    if isinstance(output, tuple):
        return tuple(_hollow_view(o) for o in output)
    return output


class PartialStepHook(ModelHook):
    """Wraps one unit: computes (and records) in full steps, replays the recorded output when deep in a partial step."""

    _is_stateful = True

    def __init__(self, index: int, state: StepState) -> None:
        super().__init__()
        self.index, self.state = index, state

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        state = self.state
        if state.mode == "partial" and self.index in state.deep:
            try:
                cached = state.cache[self.index]
            except KeyError:
                raise FlexdiffError("a partial step", "a full step before it that cached this branch", "start each segment with a full step") from None
            return _hollow_view(cached) if self.index in state.hollow else cached
        output = self.fn_ref.original_forward(*args, **kwargs)
        if state.mode == "full" and self.index in state.record:
            state.cache[self.index] = output
        return output

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state.cache.clear()
        return module


@dataclass(frozen=True)
class Branch:
    """Skip connection ``index``: produced after unit ``producer`` (-1 = conv_in), consumed by unit ``consumer``."""

    index: int
    label: str  # e.g. "conv_in", "down0.layer1", "down1.downsample"
    producer: int
    consumer: int
    hollow: frozenset[int] = frozenset()  # deep units whose outputs feed only deep units

    @property
    def deep(self) -> range:
        """Units a partial step at this branch replays from the cache."""
        return range(self.producer + 1, self.consumer)


@dataclass(frozen=True)
class UNetLayout:
    """The units of a UNet body in execution order, and its skip branches (0 = shallowest)."""

    units: tuple[tuple[str, torch.nn.Module], ...]
    branches: tuple[Branch, ...]

    @property
    def num_branches(self) -> int:
        return len(self.branches)


def _blocks(unet: torch.nn.Module) -> tuple[Any, Any, Any]:
    for name in ("down_blocks", "up_blocks"):
        if not hasattr(unet, name):
            raise FlexdiffError(type(unet).__name__, "a diffusers UNet2DModel or UNet2DConditionModel", "partial steps need a UNet with skip connections")
    if any(hasattr(b, "skip_conv") for b in [*unet.down_blocks, *unet.up_blocks]):
        raise FlexdiffError(type(unet).__name__, "UNet blocks without skip_conv (Skip*Block2D is not supported)", "use a UNet with standard down/up blocks")
    return unet.down_blocks, getattr(unet, "mid_block", None), unet.up_blocks


def unet_layout(unet: torch.nn.Module) -> UNetLayout:
    """Discover units and branches from the module tree of a diffusers UNet (no forward is run)."""
    down_blocks, mid, up_blocks = _blocks(unet)
    units: list[tuple[str, torch.nn.Module]] = []
    producers: list[tuple[str, int]] = [("conv_in", -1)]
    for d, block in enumerate(down_blocks):
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for j, (resnet, attn) in enumerate(zip(block.resnets, attentions)):
            units.append((f"down{d}.resnet{j}", resnet))
            if attn is not None:
                units.append((f"down{d}.attn{j}", attn))
            producers.append((f"down{d}.layer{j}", len(units) - 1))
        for k, sampler in enumerate(getattr(block, "downsamplers", None) or []):
            units.append((f"down{d}.downsample{k}", sampler))
        if getattr(block, "downsamplers", None):
            producers.append((f"down{d}.downsample", len(units) - 1))
    if mid is not None:
        units.append(("mid", mid))
    consumers: list[int] = []
    for u, block in enumerate(up_blocks):
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for r, (resnet, attn) in enumerate(zip(block.resnets, attentions)):
            units.append((f"up{u}.resnet{r}", resnet))
            consumers.append(len(units) - 1)
            if attn is not None:
                units.append((f"up{u}.attn{r}", attn))
        for k, sampler in enumerate(getattr(block, "upsamplers", None) or []):
            units.append((f"up{u}.upsample{k}", sampler))
    if len(consumers) != len(producers):
        raise FlexdiffError(type(unet).__name__, f"as many up resnets ({len(consumers)}) as skip connections ({len(producers)})", "this UNet layout is not supported")
    # the up path consumes skips last-in first-out: consumers[k] takes producers[B - 1 - k]
    consumer_of = {producer: consumers[len(producers) - 1 - j] for j, (_, producer) in enumerate(producers)}
    branches = []
    for b, (label, producer) in enumerate(producers):
        consumer = consumers[len(producers) - 1 - b]
        # unit k feeds unit k + 1 and, when it produces a skip, that skip's consumer: hollow when all of them are deep
        hollow = frozenset(k for k in range(producer + 1, consumer - 1) if consumer_of.get(k, producer + 1) in range(producer + 1, consumer))
        branches.append(Branch(b, label, producer, consumer, hollow))
    return UNetLayout(tuple(units), tuple(branches))


def apply_partial_steps(unet: torch.nn.Module, state: StepState | None = None) -> tuple[UNetLayout, StepState]:
    """Attach a :class:`PartialStepHook` to every unit; idempotent per UNet (raises if already applied)."""
    layout = unet_layout(unet)
    state = state or StepState()
    freeu = [i for i, block in enumerate(getattr(unet, "up_blocks", [])) if any(getattr(block, k, None) for k in ("s1", "s2", "b1", "b2"))]
    if freeu:  # FreeU rescales up-block features in place, between units: it would rewrite the cache (and the hollow views)
        raise FlexdiffError(f"FreeU on up_blocks {freeu}", "a UNet without FreeU for partial steps (it edits cached features in place)", "call unet.disable_freeu() first")
    if HookRegistry.check_if_exists_or_initialize(layout.units[0][1]).get_hook(HOOK_NAME) is not None:
        raise FlexdiffError(type(unet).__name__, "a UNet without flexdiff hooks", "remove the active schedule first (leave its `with` block)")
    for index, (_, module) in enumerate(layout.units):
        HookRegistry.check_if_exists_or_initialize(module).register_hook(PartialStepHook(index, state), HOOK_NAME)
    return layout, state


def remove_partial_steps(unet: torch.nn.Module) -> None:
    """Take every flexdiff hook off; the UNet then computes exactly as before they were applied."""
    for _, module in unet_layout(unet).units:
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            registry.remove_hook(HOOK_NAME, recurse=False)
