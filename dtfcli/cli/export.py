"""`dtf export`: a model as a Hub folder, an ONNX graph or a torch.export program, checked
against PyTorch on a real clip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.markup import escape

from dtfcli.cli._common import EXIT_ERROR, EXIT_OK, console, err_console, fail

#: The export was written but its logits differ from PyTorch's by more than the tolerance.
EXIT_MISMATCH = 4


def export_command(
    model: str = typer.Argument(
        ..., help="A folder saved by dtf train, a .safetensors file, hf://org/repo\\[@rev], a manifest or model name.",
        show_default=False),
    fmt: str = typer.Option(..., "--format", "-f", help="hub, onnx or pt2.", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Folder to write (default: <model name>-<format>)."),
    video: Path = typer.Option(None, "--video", help="Clip to check the export on (default: a synthetic clip)."),
    tolerance: float = typer.Option(
        1e-4, "--tolerance", help="Largest allowed logit difference, relative to the largest |logit|."),
    push: str = typer.Option(None, "--push", help="org/repo: upload the Hub folder after the check (--format hub)."),
    onnx_exporter: str = typer.Option(
        "torchscript", "--onnx-exporter", help="torchscript (fast) or dynamo (torch.export-based, needs onnxscript)."),
    opset: int = typer.Option(17, "--opset", min=7, help="ONNX opset (TorchScript exporter)."),
    as_json: bool = typer.Option(False, "--json", help="Write the report as one JSON document."),
) -> None:
    """Export a model for deployment outside dtf, and check it.

    hub: the Hub-ready folder (config.json, model.safetensors, labels.txt, model card).
    onnx: model.onnx, batch axis free, runs in onnxruntime on the CPU.
    pt2: model.pt2, a torch.export program (torch.export.load).

    The ONNX graph and the program take normalised float32 views (N, 3, T, S, S);
    preprocessing.json beside them says how a video becomes views, and `dtf predict
    --model FOLDER` (or the file) uses it. Every export is checked on a real clip: the
    largest logit difference against PyTorch is printed.

    Exit codes: 0 exported and checked; 4 exported but outside the tolerance; 1 an error.

    Examples:

      dtf export runs/synth/final --format onnx --out exports/synth

      dtf export hf://org/dtf-ssv2 --format pt2 --video clip.mp4

      dtf export runs/synth/final --format hub --out hub/synth --push org/dtf-synth
    """
    from dtfcli.engine.export import FORMATS, ParityError, export_model
    from dtfcli.engine.exported import MissingExtraError

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")

    def on_step(line: str) -> None:
        if err_console.is_terminal:
            err_console.print(f"[dim]{line}...[/]", highlight=False)

    try:
        report = export_model(model, fmt, out, video=video, tolerance=tolerance, push=push,
                              onnx_exporter=onnx_exporter, opset=opset, on_step=on_step)
    except MissingExtraError as exc:
        _fail(str(exc), EXIT_ERROR)
    except ParityError as exc:
        _print(exc.report, as_json)
        _fail(str(exc), EXIT_MISMATCH)
    _print(report, as_json)
    raise typer.Exit(EXIT_OK)


def _print(report, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return
    p = report.parity
    verdict = "[green]ok[/]" if p.passed else "[bold red]too large[/]"
    console.print(f"exported {report.source} -> {report.path} ({report.format}, {report.size_bytes / 1e6:.1f} MB) "
                  f"in {report.export_seconds:.1f} s with {report.exporter}", highlight=False, soft_wrap=True)
    batches = " and ".join(str(b) for b in p.batches)
    console.print(f"checked on {p.video}: {p.views} views in batches of {batches}; max abs diff {p.max_abs:.3g}, "
                  f"max rel diff {p.max_rel:.3g} (tolerance {p.tolerance:g}): {verdict}", highlight=False,
                  soft_wrap=True)
    if report.spec:
        console.print(f"preprocessing spec: {report.spec}", highlight=False, soft_wrap=True)
    for note in report.notes:
        err_console.print(f"[yellow]warning:[/] {note}", highlight=False)
    if report.pushed:
        console.print(f"pushed: {report.pushed}", highlight=False, soft_wrap=True)


def _fail(message: str, code: int) -> None:
    """One line however long (paths), without markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
