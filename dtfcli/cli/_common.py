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


# The options `dtf predict` and `dtf eval` share: the same flag, default and help in both.
MODEL_OPTION = typer.Option(
    None, "--model", "-m",
    help="A folder saved by dtf train, a .safetensors file, hf://org/repo\\[@rev], a manifest or model name "
         "(default: the embedded model).")
CLIPS_OPTION = typer.Option(None, "--clips", min=1, help="Clips per video (default: the model's, e.g. 10).")
CROPS_OPTION = typer.Option(None, "--crops", help="Crops per clip: 1 or 3 (default: the model's).")
FAST_OPTION = typer.Option(False, "--fast", help="One centre clip, one centre crop per video.")
SYMMETRIES_OPTION = typer.Option(
    True, "--symmetries/--no-symmetries",
    help="Also score each view mirrored and played backwards, mapping the answer back to the classes "
         "(models whose config lists such symmetries, like the embedded one; others are unaffected).")
FUSION_OPTION = typer.Option("prob", "--fusion", help="prob: mean of the views' softmax; logit: mean logit.")
VIEW_BATCH_OPTION = typer.Option(None, "--view-batch", min=1, help="Views per forward pass (default by device).")
WORKERS_OPTION = typer.Option(2, "--workers", "-j", min=0, help="Decoding processes (0: decode in this one).")
DEVICE_OPTION = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
AMP_OPTION = typer.Option(False, "--amp", help="Half-precision autocast (bfloat16, or float16 where needed).")
BACKEND_OPTION = typer.Option("auto", "--backend", help="Video decoder: auto, pyav or decord.")


def check_views(crops: int | None, fusion: str) -> None:
    """The checks of the shared view options that Typer cannot express."""
    if crops is not None and crops not in (1, 3):
        raise typer.BadParameter("1 or 3", param_hint="--crops")
    if fusion not in ("prob", "logit"):  # engine.inference.FUSIONS, not imported: it would load torch here
        raise typer.BadParameter("prob or logit", param_hint="--fusion")


class DTFError(Exception):
    """An error meant for the user: printed as one line, without a traceback."""


def views_text(views: dict) -> str:
    """"1 clips x 3 crops", and " x 8 (reverse, vflip, hflip)" for symmetric views, from a
    report's ``views`` (ViewSpec.to_dict)."""
    names = list(views.get("symmetries") or ())
    symmetric = f" x {2 ** len(names)} ({', '.join(names)})" if names else ""
    return f"{views['clips']} clips x {views['crops']} crops{symmetric}"


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
