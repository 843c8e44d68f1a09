"""`dtf data ...`: dataset tools (filled in by the video-data work)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Dataset tools: synthetic motion data, inspection.", no_args_is_help=True)
