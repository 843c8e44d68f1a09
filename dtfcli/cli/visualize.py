"""`dtf visualize`: Grad-CAM pictures and the DTF blocks' learnt temporal filters for a video."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import typer

from dtfcli.cli._common import console, err_console


def visualize_command(
    video: Path = typer.Argument(..., help="A video file (or a folder of frames).", show_default=False),
    gradcam: bool = typer.Option(False, "--gradcam", help="Grad-CAM over the clip: a grid PNG and an animation."),
    filters: bool = typer.Option(False, "--filters",
                                 help="A DTF block's learnt frequency filter and 1D kernel at the most and the "
                                      "least activated locations (the paper's Fig. 7)."),
    model: str = typer.Option(
        None, "--model", "-m",
        help="A folder saved by dtf train, a .safetensors file, hf://org/repo\\[@rev], a manifest or model name "
             "(default: the embedded model)."),
    class_: str = typer.Option(None, "--class", help="Class name or index to explain (default: the top prediction)."),
    layer: str = typer.Option(None, "--layer",
                              help="Module to take Grad-CAM at, e.g. layer3 or features.5 (default: the last "
                                   "stage, or the deepest with a map of 4x4 or more)."),
    cam_method: str = typer.Option("gradcam++", "--cam-method",
                                   help="gradcam++ or gradcam (Grad-CAM++ puts the peak on the moving object "
                                        "more often)."),
    block: str = typer.Option(None, "--block",
                              help="DTF block for --filters, e.g. layer4.0.temporal2 (default: the last one)."),
    group: int = typer.Option(None, "--group", min=0,
                              help="Filter group to plot (default: the strongest at the most activated location)."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for the pictures (default: visualize/<video name>)."),
    animation: str = typer.Option("gif", "--animation", help="gif, mp4 or none."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers (maps, filters, kernels) as JSON."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    backend: str = typer.Option("auto", "--backend", help="Video decoder: auto, pyav or decord."),
) -> None:
    """Show what a model looks at in a video, and what its DTF blocks' filters do there.

    The video's centre clip and centre crop (what `dtf predict --fast` classifies) goes through
    the model once. --gradcam draws the class evidence (Grad-CAM) on every frame of the clip;
    --filters plots the frequency filter a DTF block learnt at the most and the least
    activated locations, and the 1D temporal kernel it equals.

    Examples:

      dtf visualize clip.mp4 --gradcam

      dtf visualize clip.mp4 --gradcam --class "Moving something up" --layer layer3 --animation mp4

      dtf visualize clip.mp4 --filters --model runs/synth/final --json > filters.json
    """
    from dtfcli.engine.visualize import visualize

    if not (gradcam or filters):
        gradcam = True
    if cam_method.lower() not in ("gradcam++", "gradcam"):  # engine.visualize.CAM_METHODS, without torch here
        raise typer.BadParameter("gradcam++ or gradcam", param_hint="--cam-method")
    if not video.exists():
        raise FileNotFoundError(f"{video}: no such file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = visualize(str(video), model=model, gradcam_maps=gradcam, filters=filters, layer=layer,
                           class_index=class_, block=block, group=group, out_dir=None if out is None else str(out),
                           animation=animation.lower(), device=device, backend=backend,
                           method=cam_method.lower())
    for w in caught:
        if issubclass(w.category, UserWarning):
            err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _print_summary(report)
    for path in report.files:
        err_console.print(f"wrote {path}", highlight=False)


def _print_summary(report) -> None:
    cam = report.gradcam or (report.filters.gradcam if report.filters else None)
    if cam is not None:
        console.print(f"{report.video}: [bold]{cam.class_name}[/] (p = {cam.probability:.3f}), frames "
                      f"{report.frame_indices[0]}-{report.frame_indices[-1]}", highlight=False)
    if report.gradcam is not None:
        t, h, w = report.gradcam.feature_shape
        console.print(f"{report.gradcam.method_title} at {report.gradcam.layer}: {t} x {h} x {w} "
                      "(time x height x width)", highlight=False)
    if report.filters is not None:
        f = report.filters
        console.print(f"filters of {f.block}, group {f.group}:", highlight=False)
        for loc in f.locations:
            mags = ", ".join(f"{abs(v):.3f}" for v in loc.filter)
            console.print(f"  {loc.name:>15}: row {loc.row}, col {loc.col}, |S_c| per bin [{mags}]", highlight=False)
