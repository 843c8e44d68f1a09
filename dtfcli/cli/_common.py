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


# Errors are printed with ``soft_wrap``: one line whatever the terminal's width (the terminal
# wraps it on screen), so that a log or a pipe gets the whole message on the line it starts.


class DTFError(Exception):
    """An error meant for the user: printed as one line, without a traceback."""


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors whose message is meant for the user. The weights errors only when their module is
    loaded (it imports torch; a command that never loaded it cannot have raised one)."""
    kinds: list[type[BaseException]] = [DTFError, ValueError, FileNotFoundError, KeyError]
    errors = sys.modules.get("dtfcli.hub.errors")
    if errors is not None:
        kinds.append(errors.WeightsError)
    return tuple(kinds)


def run_guarded(app: typer.Typer) -> None:
    """Run the app; known errors become one line (the traceback only with DTF_DEBUG=1 or --debug)."""
    debug = "--debug" in sys.argv or os.environ.get("DTF_DEBUG") == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        os.environ["DTF_DEBUG"] = "1"  # the video readers then let FFmpeg's and decord's logs through
    try:
        app(standalone_mode=True, prog_name="dtf")  # `python -m dtfcli` is `dtf` too
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, _user_error_types()):
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            # escaped: a message may hold brackets (pip extras, shapes) that are not markup
            err_console.print(f"[bold red]error:[/] {escape(str(msg))}", highlight=False, soft_wrap=True)
        else:  # a bug or an environment problem: one line, the traceback with --debug
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {first} "
                              "(run again with --debug for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(EXIT_ERROR)
