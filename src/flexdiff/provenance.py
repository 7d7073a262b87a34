"""What produced the numbers: the command line, package versions and machine, recorded when a run writes its results
(search, compress, sample).

A number without the command, versions and machine behind it cannot be checked or reproduced, so every results file
carries them (:func:`run_provenance`), and the report shows them; a run written before this existed gets its command
rebuilt from its config, marked as such.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from flexdiff.utils.io import read_json_or_none
from flexdiff.utils.text import mask_password

PACKAGES = ("flexdiff", "torch", "diffusers", "optuna", "torchmetrics", "numpy", "matplotlib")

#: search config fields that are ``flexdiff search`` options (the rest are internal defaults).
SEARCH_OPTIONS = (
    "model",
    "sampler",
    "steps",
    "solver",
    "speedup",
    "max_macs",
    "n",
    "trials",
    "strategy",
    "storage",
    "study",
    "workers",
    "seed",
    "segments",
    "validate_n",
    "validate_top",
    "baseline_branches",
    "features",
    "batch_size",
    "device",
    "out",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Package versions and the machine, now (call it where the numbers are produced)."""
    import torch

    cuda = torch.cuda.is_available()
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
    }
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"date": date, "versions": {p: _version(p) for p in PACKAGES}, "machine": machine}


def current_command() -> list[str]:
    """``sys.argv`` with the program reduced to its name (``flexdiff``, not the venv path) and any password in a URL
    (``--storage postgresql://user:password@host/db``) masked: results files are shared."""
    return [Path(sys.argv[0]).name or "python", *map(mask_password, sys.argv[1:])] if sys.argv else []


def run_provenance(previous_results: Path, command: list[str] | None = None) -> dict[str, Any]:
    """The entries a results file gets: this command (``command``, default :func:`current_command`), the earlier ones of
    the same folder (resumed runs), the environment.

    A resumed run keeps the work of its earlier commands, so those commands produced numbers too.
    """
    command = command if command is not None else current_command()
    earlier: list[list[str]] = []
    old = read_json_or_none(previous_results)
    old = old if isinstance(old, dict) else {}
    previous = old.get("earlier_commands")
    for cmd in [*(previous if isinstance(previous, list) else []), old.get("command")]:
        cmd = [mask_password(str(a)) for a in cmd] if isinstance(cmd, list) else cmd  # an older flexdiff masked fewer forms
        if isinstance(cmd, list) and cmd and cmd != command and cmd not in earlier:
            earlier.append(cmd)
    return {"command": command, "earlier_commands": earlier, "environment": environment()}


def command_text(results: dict[str, Any], program: str = "search") -> tuple[list[str], bool]:
    """The shell lines of the run's commands and whether they were recorded (``False``: rebuilt from the config)."""
    recorded = [c for c in [*results.get("earlier_commands", []), results.get("command")] if isinstance(c, list) and c]
    if recorded:
        return [shlex.join(str(a) for a in c) for c in recorded], True
    config = results.get("config")
    if not isinstance(config, dict):
        return [], False
    args = ["flexdiff", program]
    for key in SEARCH_OPTIONS if program == "search" else tuple(config):
        value = config.get(key)
        if value is None or isinstance(value, (dict, bool)):
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        args += [f"--{key.replace('_', '-')}", text]
    return [shlex.join(args)], False
