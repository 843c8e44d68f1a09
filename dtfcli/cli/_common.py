"""What every command shares: the console, one-line errors, exit codes."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3  # the command finished, but some inputs were skipped


class DTFError(Exception):
    """An error meant for the user: printed as one line, without a traceback."""


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def run_guarded(app: typer.Typer) -> None:
    """Run the app; known errors become one line (the traceback only with DTF_DEBUG=1 or --debug)."""
    debug = "--debug" in sys.argv or os.environ.get("DTF_DEBUG") == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        os.environ["DTF_DEBUG"] = "1"  # the video readers then let FFmpeg's and decord's logs through
    from dtfcli.hub.errors import WeightsError

    try:
        app(standalone_mode=True)
    except (DTFError, WeightsError, ValueError, FileNotFoundError, KeyError) as exc:
        if debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        # escaped: a message may hold brackets (pip extras, shapes) that are not markup
        err_console.print(f"[bold red]error:[/] {escape(str(msg))}", highlight=False)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as exc:  # a bug or an environment problem: one line, the traceback with --debug
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {first} "
                          "(run again with --debug for the traceback)", highlight=False)
        sys.exit(EXIT_ERROR)
