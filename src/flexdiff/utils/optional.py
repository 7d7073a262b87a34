"""Optional dependencies: imported on first use, with a one-line error naming the package and the extra to install.

``transformers`` (text encoders of Stable Diffusion pipelines, the ``clip`` feature network) is the ``sd`` extra;
flexdiff's core never needs it, so importing flexdiff stays fast and works without it.
"""

from __future__ import annotations

from types import ModuleType

from flexdiff.errors import FlexdiffError


def require_transformers(purpose: str) -> ModuleType:
    """``transformers``, quietened (no progress bars, no load reports on stderr: the CLI prints one line per error)."""
    try:
        import transformers
    except ImportError:
        raise FlexdiffError("transformers", f"the optional package transformers ({purpose})", "pip install 'flexdiff[sd]'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers
