"""`dtf predict`: classify videos (files, folders, globs, list files) with a model."""

from __future__ import annotations

import csv
import io
import json
import sys
import warnings
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dtfcli.cli import _common as shared
from dtfcli.cli._common import EXIT_ERROR, EXIT_OK, EXIT_SKIPPED, DTFError, console, err_console


def predict_command(
    paths: list[str] = typer.Argument(
        ..., help="Video files, folders, glob patterns or @list.txt (one path per line).", show_default=False),
    model: str = shared.MODEL_OPTION,
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Search folders' sub-folders too."),
    clips: int = shared.CLIPS_OPTION,
    crops: int = shared.CROPS_OPTION,
    fast: bool = shared.FAST_OPTION,
    symmetries: bool = shared.SYMMETRIES_OPTION,
    fusion: str = shared.FUSION_OPTION,
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Classes to show per video."),
    view_batch: int = shared.VIEW_BATCH_OPTION,
    workers: int = shared.WORKERS_OPTION,
    device: str = shared.DEVICE_OPTION,
    amp: bool = shared.AMP_OPTION,
    backend: str = shared.BACKEND_OPTION,
    window: float = typer.Option(None, "--window", min=0.01, help="Seconds: one prediction per window of a video."),
    stride: float = typer.Option(None, "--stride", min=0.01, help="Seconds between windows (default: the window)."),
    as_json: bool = typer.Option(False, "--json", help="Write one JSON document for the run."),
    as_csv: bool = typer.Option(False, "--csv", help="Write CSV: one row per video (or per window)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the JSON/CSV here instead of the terminal."),
) -> None:
    """Classify videos: the top classes of each, with probabilities.

    Each video is scored from the model's test views (10 clips x 3 crops for DTF-Net,
    4 x 3 for DTF-Transformer; for the embedded model 1 x 3, each also mirrored and played
    backwards), fused as the mean of the views' softmax probabilities.
    Unreadable files are skipped and listed with their reasons.

    Exit codes: 0 every video classified; 3 some skipped; 1 none classified or an error; 2 a bad
    command line.

    Examples:

      dtf predict clip.mp4

      dtf predict videos/ -r --fast --model runs/synth/final

      dtf predict 'clips/*.webm' --json -o predictions.json

      dtf predict long.mp4 --window 4 --stride 2 --csv

      dtf predict @todo.txt --model hf://org/dtf-ssv2@v1.0 --device cuda --amp
    """
    from dtfcli.engine.predict import predict, prediction_rows

    shared.check_views(crops, fusion)
    if stride is not None and window is None:
        raise DTFError("--stride needs --window")
    if as_json and as_csv:
        raise DTFError("choose one of --json and --csv")
    if output is not None and not (as_json or as_csv):
        as_json, as_csv = output.suffix.lower() != ".csv", output.suffix.lower() == ".csv"
    machine = as_json or as_csv

    progress = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TimeRemainingColumn(), console=err_console, transient=True,
                        disable=not err_console.is_terminal)
    task = progress.add_task("videos", total=None, rate="")

    def on_video(done, total, pred, skipped):
        elapsed = progress.tasks[0].elapsed or 0.0
        rate = f"{done / elapsed:.2f} videos/s" if elapsed > 0 else ""
        progress.update(task, completed=done, total=total, rate=rate)

    with warnings.catch_warnings(record=True) as caught, progress:
        warnings.simplefilter("always")
        result = predict(paths, model=model, recursive=recursive, clips=clips, crops=crops, fast=fast,
                         symmetries=symmetries, fusion=fusion, k=top_k, view_batch=view_batch, workers=workers,
                         device=device, amp=amp, backend=backend, window=window, stride=stride, on_video=on_video)
    for w in caught:
        if issubclass(w.category, UserWarning):
            err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False)

    if as_json:
        text = json.dumps(result.to_dict(), indent=2)
    elif as_csv:
        rows = prediction_rows(result, top_k)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["path"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if machine:
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
            err_console.print(f"wrote {output}", highlight=False)
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        _print_table(result, top_k)
    for path, reason in result.skipped:
        err_console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    if result.skipped:
        err_console.print(f"{len(result.skipped)} of {len(result.skipped) + len(result.predictions)} inputs skipped",
                          highlight=False)
    if not result.predictions:
        raise typer.Exit(EXIT_ERROR)
    raise typer.Exit(EXIT_SKIPPED if result.skipped else EXIT_OK)


def _topk_cell(best: list[dict]) -> str:
    return "\n".join(f"{b['prob'] * 100:5.1f}%  {b['label']}" for b in best)


def _print_table(result, k: int) -> None:
    views = result.views
    model = result.model
    console.print(f"model [bold]{model['source']}[/] ({model['name']}), {shared.views_text(views)}, "
                  f"{result.fusion} fusion, {result.device}",
                  highlight=False)
    if not result.predictions:
        return
    table = Table(show_lines=True)
    table.add_column("video", overflow="fold", ratio=1)
    table.add_column(f"top {k}", overflow="fold", ratio=2)
    for pred in result.predictions:
        table.add_row(pred.path, _topk_cell(pred.topk))
    console.print(table)
    for pred in result.predictions:
        if pred.segments:
            seg_table = Table(title=f"{pred.path}: segments", title_justify="left")
            seg_table.add_column("from (s)", justify="right")
            seg_table.add_column("to (s)", justify="right")
            seg_table.add_column("label", overflow="fold")
            seg_table.add_column("mean prob", justify="right")
            for seg in pred.segments:
                seg_table.add_row(f"{seg['start']:.2f}", f"{seg['end']:.2f}", seg["label"],
                                  f"{seg['mean_prob'] * 100:.1f}%")
            console.print(seg_table)
    n = len(result.predictions)
    console.print(f"{n} video{'' if n == 1 else 's'} in {result.seconds:.1f} s "
                  f"({result.videos_per_second:.2f} videos/s)", style="dim", highlight=False)
