"""Packaging: the light runtime works without the search extra, a missing extra is one line, `import flexdiff` is
light, `python -m flexdiff` and `--version` exist, and the package leaves the user's torch alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
#: make the search extra's packages unimportable in a subprocess, as on a machine with `pip install flexdiff` only
BLOCK_SEARCH_EXTRA = "import sys\nfor m in ('optuna', 'torchmetrics', 'sklearn', 'matplotlib'):\n    sys.modules[m] = None\n"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)


def test_the_package_dependencies_are_ranges_and_torch_is_not_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    assert not any("==" in d for d in deps), deps
    assert any(d.startswith("torch>=") for d in deps)
    assert any(d.startswith("diffusers>=") and "<" in d for d in deps)  # an upper bound: the hooks rely on diffusers.hooks
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()  # this machine's pin lives here (and in the Makefile)
    light = " ".join(deps)
    assert not any(p in light for p in ("optuna", "torchmetrics", "scikit-learn", "matplotlib"))  # the search extra


@pytest.mark.slow
def test_the_light_runtime_samples_with_a_schedule_without_the_search_extra() -> None:
    code = BLOCK_SEARCH_EXTRA + (
        "import flexdiff\n"
        "m = flexdiff.load_model('builtin:digits', 'cpu')\n"
        "plan = flexdiff.deepcache_uniform(flexdiff.teacher_timesteps(m, 'ddim', 10), interval=3, branch=0)\n"
        "x = flexdiff.sample(m, 2, seed=0, schedule=plan)\n"
        "print(tuple(x.shape), flexdiff.measure_macs(m).speedup(plan) > 1)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 1, 16, 16) True"


@pytest.mark.slow
def test_a_missing_extra_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    code = BLOCK_SEARCH_EXTRA + f"import sys\nsys.argv = ['flexdiff', 'search', '--out', {str(tmp_path / 'run')!r}]\nfrom flexdiff.cli import main\nmain()\n"
    result = run_python(code)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "error: optuna: expected the optional package optuna (the schedule search); pip install 'flexdiff[search]'"
    assert not (tmp_path / "run").exists()


def test_import_flexdiff_is_light() -> None:
    """The public API is imported on first use: `import flexdiff` loads neither torch nor diffusers nor optuna."""
    result = run_python(
        "import sys, flexdiff\nprint(sorted(m for m in ('torch', 'diffusers', 'optuna', 'matplotlib') if m in sys.modules))\nprint(flexdiff.__version__)"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "[]"
    from importlib import metadata

    assert lines[1] == metadata.version("flexdiff")


def test_an_unknown_attribute_of_the_package_is_an_attribute_error() -> None:
    import flexdiff

    with pytest.raises(AttributeError, match="no_such_name"):
        flexdiff.no_such_name  # noqa: B018
    assert {"load_model", "sample", "Schedule", "ddim_2m", "condition", "apply_schedule"} <= set(dir(flexdiff))


@pytest.mark.slow
def test_python_dash_m_and_version() -> None:
    from importlib import metadata

    version = subprocess.run([sys.executable, "-m", "flexdiff", "--version"], capture_output=True, text=True, env=ENV, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"flexdiff {metadata.version('flexdiff')}"
    helped = subprocess.run([sys.executable, "-m", "flexdiff", "search", "--help"], capture_output=True, text=True, env={**ENV, "COLUMNS": "200"}, timeout=120)
    assert helped.returncode == 0
    from flexdiff.measuring.features import feature_network_names
    from flexdiff.samplers import sampler_names
    from flexdiff.search.strategies import strategy_names

    for names in (sampler_names(), strategy_names(), feature_network_names()):  # --help lists each registry
        assert all(n in helped.stdout for n in names), names
