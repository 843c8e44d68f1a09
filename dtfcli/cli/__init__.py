"""The `dtf` command line. Parses arguments, calls the engine, prints; no model math here."""

from __future__ import annotations

import sys

import typer

from dtfcli import __version__
from dtfcli.cli._common import console, fail, run_guarded
from dtfcli.cli.benchmark import benchmark_command
from dtfcli.cli.data import app as data_app
from dtfcli.cli.eval import eval_command
from dtfcli.cli.export import export_command
from dtfcli.cli.models import models_command
from dtfcli.cli.predict import predict_command
from dtfcli.cli.train import train_command
from dtfcli.cli.visualize import visualize_command
from dtfcli.engine.runtime import apply_cpu_settings

app = typer.Typer(
    name="dtf",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"dtf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Video classification with Dynamic Temporal Filtering (DTF-Net, DTF-Transformer).

    Examples:

      dtf predict clip.mp4 --model runs/synth/final

      dtf eval --dataset ssv2 --root data/ssv2 --model runs/ssv2/final

      dtf train --config examples/configs/synth-plain.toml

      dtf models 'dtfnet_*'

    Add --debug to any command for the full traceback of an error.
    """


app.command("predict")(predict_command)
app.command("eval")(eval_command)
app.command("train")(train_command)
app.command("export")(export_command)
app.command("visualize")(visualize_command)
app.command("models")(models_command)
app.add_typer(data_app, name="data")
app.command("benchmark")(benchmark_command)


def _only_help(args: list[str]) -> bool:
    return not args or any(a in ("--help", "-h", "--version") for a in args)


def main() -> None:
    # Before any tensor exists (dtfcli/engine/runtime.py); help and --version need no torch.
    if not _only_help(sys.argv[1:]):
        apply_cpu_settings()
    run_guarded(app)


__all__ = ["app", "main", "fail"]
