"""Optional dependencies: imported on first use, with a one-line error naming the package and the extra to install.

The light runtime (``pip install flexdiff``: torch, diffusers, safetensors, numpy, pillow, typer, rich) loads models,
applies schedules and samples. What only the search, compress, FID and the report need is the ``search`` extra
(optuna, torchmetrics, scikit-learn, matplotlib); text encoders of Stable Diffusion pipelines and the ``clip`` feature
network are the ``sd`` extra (transformers).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from flexdiff.errors import FlexdiffError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported, or a one-line error: ``optuna: expected the optional package optuna (the schedule search);
    pip install 'flexdiff[search]'``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FlexdiffError(module, f"the optional package {module} ({purpose})", f"pip install 'flexdiff[{extra}]'") from None


def require_transformers(purpose: str) -> ModuleType:
    """``transformers``, quietened (no progress bars, no load reports on stderr: the CLI prints one line per error)."""
    transformers = require("transformers", "sd", purpose)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers
