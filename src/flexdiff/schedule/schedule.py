"""Schedules as data: one step per teacher timestep, validated once on construction, and their canonical JSON file.

The first step is always one that fills the cache (``full``). Samplers only ever see the active timesteps.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexdiff.errors import FlexdiffError, output_folder, unwritable
from flexdiff.samplers import check_sampler
from flexdiff.schedule.kinds import STEP_KINDS, Step, count_steps
from flexdiff.utils.io import read_json, write_text

FORMAT = "flexdiff.schedule"
VERSION = 1
#: the largest schedule file read: a T=1000 schedule with its genome and binding is ~30 KB, so 16 MiB is room for any
#: real one while a multi-gigabyte file (or ``/dev/zero`` behind a link) is refused from its size, unread
MAX_FILE_BYTES = 16 * 2**20
#: no diffusers noise schedule trains with a million timesteps; larger (or non-finite) values are damage, refused at
#: load instead of reaching a sampler (NaN even passes the decreasing check: every comparison with it is false)
MAX_TIMESTEP = 1_000_000
#: the largest ``meta`` a schedule carries (its genome, binding, family and scores are a few KB): ``meta`` is copied
#: into every ``run.json`` and report made with the schedule, so a bloated one is refused at load, not multiplied
MAX_META_BYTES = 64 * 2**10
#: meta key of the binding (:mod:`flexdiff.schedule.binding`), read here to check it names this file's sampler
BINDING_KEY = "bound_to"


@dataclass(frozen=True)
class Schedule:
    """The explicit per-step plan over the teacher's ``timesteps`` (decreasing, length T) for ``sampler``: integer
    timesteps, or for a flow-matching sampler the teacher's sigmas."""

    steps: tuple[Step, ...]
    timesteps: tuple[float, ...]
    sampler: str = "ddim"
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = self.name or "schedule"
        if len(self.steps) != len(self.timesteps):
            raise FlexdiffError(
                f"{where} with {len(self.steps)} steps", f"one step per teacher timestep ({len(self.timesteps)})", "regenerate the schedule for this T"
            )
        if not self.steps or not self.steps[0].valid() or not self.steps[0].info.fills_cache:
            raise FlexdiffError(
                f"{where} step 0 = {self.steps[0] if self.steps else 'nothing'}", "the first step to be 'full' (it fills the cache)", "make step 0 full"
            )
        bad = next(
            (t for t in self.timesteps if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 <= t <= MAX_TIMESTEP), None
        )  # NaN fails both bounds
        if bad is not None:
            raise FlexdiffError(
                f"{where} timestep {bad!r:.40}",
                f"finite timesteps in [0, {MAX_TIMESTEP:,}] (integer timesteps, or flow-matching sigmas)",
                "regenerate the schedule with `flexdiff schedule --model ...`",
            )
        if any(b >= a for a, b in zip(self.timesteps, self.timesteps[1:])):
            raise FlexdiffError(f"{where} timesteps", "strictly decreasing timesteps", "list them from noisy to clean")
        for i, step in enumerate(self.steps):
            if not step.valid():
                raise FlexdiffError(
                    f"{where} step {i} = {step}",
                    f"a step kind in {{{', '.join(STEP_KINDS.names())}}}, with a branch >= 0 where the kind takes one",
                    "fix that entry",
                )

    @property
    def T(self) -> int:  # noqa: N802 - the papers' name for the number of teacher steps
        return len(self.steps)

    @property
    def active_indices(self) -> list[int]:
        """Indices of the steps that call the network (full and partial); null steps are dropped."""
        return [i for i, s in enumerate(self.steps) if s.info.calls_network]

    @property
    def active_timesteps(self) -> list[float]:
        return [self.timesteps[i] for i in self.active_indices]

    @property
    def max_branch(self) -> int:
        return max((s.branch for s in self.steps if s.branch is not None), default=-1)

    @property
    def key(self) -> str:
        """Identity of the plan (steps, timesteps, sampler), whatever its name: equal keys run identically."""
        text = f"{self.sampler}|{','.join(map(str, self.timesteps))}|{','.join(map(str, self.steps))}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def counts(self) -> dict[str, int]:
        """Steps per kind: full, partial and null always, any other kind where the schedule has one."""
        return count_steps(self.steps)

    def check_timesteps(self, noise: Any, where: object = None) -> None:
        """The teacher grid must be one of the model's noise schedule (integer timesteps in its training range, or
        flow-matching sigmas in (0, 1]), checked before any sampling starts."""
        noise.check_grid(list(self.timesteps), where or self.name or "schedule")

    def check_branches(self, num_branches: int) -> None:
        """Every partial branch must exist in the model the schedule runs on."""
        if self.max_branch >= num_branches:
            step = next(i for i, s in enumerate(self.steps) if s.branch is not None and s.branch >= num_branches)
            raise FlexdiffError(
                f"{self.name or 'schedule'} step {step} = {self.steps[step]}",
                f"a branch in [0, {num_branches - 1}] for this model",
                "see `flexdiff inspect` for the model's branches",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "sampler": self.sampler,
            "T": self.T,
            "timesteps": list(self.timesteps),
            "steps": [str(s) for s in self.steps],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Any, where: object = "schedule") -> "Schedule":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FlexdiffError(where, f'a JSON object with "format": "{FORMAT}"', "write it with `flexdiff schedule`")
        if data.get("version") != VERSION:
            raise FlexdiffError(f"{where} version {data.get('version')!r}", f"schedule format version {VERSION}", "regenerate it with this flexdiff")
        steps, timesteps = data.get("steps"), data.get("timesteps")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise FlexdiffError(f"{where} steps", "a list of step strings", "fix the 'steps' field")
        if not isinstance(timesteps, list) or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in timesteps):
            raise FlexdiffError(f"{where} timesteps", "a list of integer timesteps (flow-matching models: sigmas)", "fix the 'timesteps' field")
        if data.get("T") != len(steps):
            raise FlexdiffError(f"{where} T={data.get('T')!r} with {len(steps)} steps", "T equal to the number of steps", "fix 'T' or 'steps'")
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise FlexdiffError(f"{where} meta", "a JSON object (or no 'meta' field)", "fix or drop the 'meta' field")
        size = len(json.dumps(meta, default=str))
        if size > MAX_META_BYTES:
            raise FlexdiffError(
                f"{where} meta of {size:,} bytes",
                f"at most {MAX_META_BYTES:,} bytes of meta (it is copied into every run.json made with the schedule)",
                "drop the large entries from the 'meta' field",
            )
        sampler = str(data.get("sampler", "ddim"))
        check_sampler(sampler, fix=f"fix the 'sampler' field of {where}")
        check_bound_sampler(sampler, meta.get(BINDING_KEY), where)
        return cls(tuple(Step.parse(s) for s in steps), tuple(timesteps), sampler, str(data.get("name", "")), dict(meta))

    def save(self, path: Path) -> None:
        """Write canonical JSON atomically (a failed write never leaves half a file, nor its temporary file)."""
        if path.is_dir():
            raise FlexdiffError(f"--out {path}", "a schedule file path, not a folder", f"pass e.g. --out {path / 'schedule.json'}")
        output_folder(path.parent)
        fields = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in self.to_dict().items())
        try:
            write_text(path, "{\n" + fields + "\n}\n")  # one field per line, lists on one line
        except OSError as exc:
            raise unwritable(path, "a writable schedule file path", exc) from None

    @classmethod
    def load(cls, path: str | Path) -> "Schedule":
        path = Path(path)
        if not path.exists():
            raise FlexdiffError(path, "an existing schedule JSON file", "write one with `flexdiff schedule ... --out FILE`")
        data = read_json(path, "a valid schedule JSON file", "regenerate it", max_bytes=MAX_FILE_BYTES)  # a FIFO, device or folder: refused unread
        return cls.from_dict(data, where=path)


def check_bound_sampler(sampler: str, binding: Any, where: object) -> None:
    """A file bound to flexdiff's own loop (``flexdiff:<sampler>``) must name that sampler: ``enable`` runs the
    binding's sampler in a pipeline while ``flexdiff sample`` runs the file's, so a file edited (or damaged) to say
    otherwise would give two different results under one name; it is refused at load. A file bound to a diffusers
    scheduler class runs with the pipeline's scheduler whatever its sampler field (a Python-made ``full(ts)`` bound to
    a user's pipeline says ``ddim``), so only flexdiff bindings are compared."""
    scheduler = binding.get("scheduler") if isinstance(binding, dict) else None
    if not isinstance(scheduler, str) or not scheduler.startswith("flexdiff:"):
        return
    own = scheduler.removeprefix("flexdiff:")
    if sampler != own:
        raise FlexdiffError(
            f"{where} sampler {sampler!r} bound to scheduler {scheduler!r:.60}",
            f"the sampler its binding records ({own})",
            "regenerate the file with `flexdiff schedule` / `flexdiff search`, or restore its 'sampler' field",
        )
