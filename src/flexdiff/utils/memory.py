"""Memory bounds checked before the work: a run whose arrays cannot fit is refused in one line, not killed.

A count option (``--n``, ``--val-n``, ``--batch-size`` ...) that is too large for the machine used to surface as the
kernel's OOM killer (exit 137, nothing said, minutes lost) or a torch allocation failure half-way through a run. Each
command instead estimates the bytes of its large allocations from their shapes (images x C x H x W x 4 bytes,
recorded activations, one network call's working set measured at one image), compares them with the memory the
machine has free *now* (``MemAvailable``, a cgroup's limit, a GPU's free memory) times :data:`SAFETY`, and names the
option and the largest value of it that fits. The estimates leave out the small things (weights are already loaded
when the check runs, so the free memory has them counted); the safety factor covers the rest.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from flexdiff.errors import FlexdiffError

#: the share of the free memory a run may plan to fill: the estimates count the large arrays only (allocator
#: slack, Python objects, the page cache other processes need are not in them)
SAFETY = 0.75

#: bytes of a float32 element: images, noise and activations are float32 in flexdiff's loop
FLOAT32 = 4


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None off Linux or on a kernel without it)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What a cgroup v2 memory limit leaves (``memory.max - memory.current``): a container may allow far less than
    the machine's ``MemAvailable``, and its OOM killer is the one that fires."""
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((root / "memory.current").read_text().strip()), 0)
    except (OSError, ValueError):
        return None


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Bytes free for new allocations on ``device`` now: host memory for ``cpu`` (the smaller of ``MemAvailable``
    and a cgroup limit's headroom), free GPU memory for ``cuda``; None when the platform does not say (then nothing
    is refused: a check that cannot know must not stop a run)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    known = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    return min(known) if known else None


def format_bytes(n: float) -> str:
    """``n`` bytes for a one-line message (binary units: what ``free -h`` shows)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover - the loop returns


@dataclass(frozen=True)
class Count:
    """One count option a memory estimate depends on: its flag, its value, the least value it may take, and whether
    the user gave it (``shown``: how a value the user did not pass reads, e.g. "all 5000 images at once").
    ``same_result``: lowering it changes no result (a batch size), so it is the fix named first when it alone fits."""

    option: str
    value: int
    least: int = 1
    shown: str | None = None
    same_result: bool = False

    def label(self) -> str:
        return f"{self.option} {self.value}" if self.shown is None else f"{self.option} ({self.shown})"


def largest_fitting(need: Callable[[int], int], budget: int, least: int, most: int) -> int | None:
    """The largest ``v`` in ``[least, most]`` with ``need(v) <= budget`` (``need`` non-decreasing), or None."""
    if need(least) > budget:
        return None
    lo, hi = least, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_memory(
    counts: Sequence[Count],
    needs: Mapping[str, Callable[[dict[str, int]], int]],
    what: str = "a run",
    available: Callable[[str], int | None] | None = None,
) -> None:
    """Refuse, before any large allocation, counts whose estimated bytes exceed :data:`SAFETY` x the free memory.

    ``needs[device](values)``: the estimated peak bytes on ``device`` ("cpu", "cuda:0") for the count values
    ``values`` (option -> value), non-decreasing in each. The error names one count and the largest value of it that
    fits with the others as given: a count whose lowering changes no result (``same_result``) if it alone can fit,
    else the one that matters most (whose least value frees the most); when none alone can fit, it says so. ``available``: :func:`available_bytes` unless given (tests pretend a small machine)."""
    available = available or available_bytes
    values = {c.option: c.value for c in counts}
    for device, need in needs.items():
        free = available(device)
        if free is None:
            continue
        budget = int(free * SAFETY)
        total = need(values)
        if total <= budget:
            continue
        place = "memory" if device == "cpu" else f"{device} memory"
        expected = f"{what} that fits the {format_bytes(budget)} of {place} free for it (this one needs about {format_bytes(total)})"

        def alone(c: Count) -> Callable[[int], int]:
            return lambda v: need({**values, c.option: v})

        ranked = sorted(counts, key=lambda c: (not c.same_result, alone(c)(c.least)))  # batch sizes, then what matters most
        for count in ranked:
            fit = largest_fitting(alone(count), budget, count.least, count.value)
            if fit is not None:
                raise FlexdiffError(count.label(), expected, f"pass {count.option} {fit} or less (or free memory)")
        options = ", ".join(c.option for c in counts)
        raise FlexdiffError(", ".join(c.label() for c in counts), expected, f"lower several of {options}, free memory or use a machine with more")


def _key(t: torch.Tensor) -> int:
    """The identity of ``t``'s storage (views share it)."""
    return t.untyped_storage().data_ptr() if t.device.type != "meta" else 0


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensors created under it that are alive at once (its ``peak``): storages are counted
    once (views share them) and leave the count when torch frees them (a storage's Python object lives as long as
    the storage, so a finalizer on it fires exactly then)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        if key in self.seen:
            self.seen.discard(key)
            self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if nbytes and key not in self.seen and key not in inputs:  # an in-place op's result is its input's storage
                    self.seen.add(key)
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, nbytes)
        return out


def working_bytes(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """``fn()``'s result and the most bytes of new tensors it held at once: what one call needs beyond its inputs
    and the weights (measured on a one-image call, it scales with the batch). None when the call cannot be watched
    (a compiled graph, an op the dispatch mode refuses): the caller then skips the bound it would have checked."""
    mode = _LiveBytes()
    try:
        with mode:
            result = fn()
    except FlexdiffError:
        raise
    except Exception:  # noqa: BLE001 - a probe that cannot be watched bounds nothing; the real run reports its own errors
        return None, None
    return result, mode.peak


def images_bytes(n: int, shape: Sequence[int], copies: float = 1.0) -> int:
    """Bytes of ``copies`` float32 arrays of ``n`` images of ``shape`` (C, H, W)."""
    return int(copies * n * math.prod(shape) * FLOAT32)
