"""The ``flexdiff`` command line: one module per command (adding a command is adding a module here), all under the
error net of :mod:`._app`: every bad input ends in one line on stderr and exit code 2."""

from __future__ import annotations

import os
import sys

import typer

from flexdiff._version import __version__
from flexdiff.cli._app import DEBUG, app
from flexdiff.utils.registry import import_submodules

import_submodules(__name__, __path__)


def _version(value: bool) -> None:
    if value:
        print(f"flexdiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit"),
    debug: bool = typer.Option(False, "--debug", help="show the traceback of a failure that is not a bad input (also FLEXDIFF_DEBUG=1)"),
) -> None:
    DEBUG["on"] = debug or os.environ.get("FLEXDIFF_DEBUG", "") not in ("", "0")  # the app's help is _app.HELP


def main() -> None:
    """The ``flexdiff`` entry point. Usage errors (an unknown option, ``--n abc``, a missing ``--out``) end in one line
    and exit code 2 as well, instead of the framed usage box; ``--help`` and bare commands still print help."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:  # Ctrl-C
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        # click's UsageError family, whichever click typer runs on (it vendors its own since 0.2x): exit code 2 and
        # format_message(); NoArgsIsHelpError is one of them and shows the help instead
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            raise SystemExit(2) from None
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "flexdiff"
        print(f"error: {exc.format_message().rstrip('.')}; see `{command} --help`".replace("\n", " "), file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code or 0)


__all__ = ["app", "main"]
