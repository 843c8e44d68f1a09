"""`dtf data ...`: dataset tools (synthetic motion data, what a reader sees in a video)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dtfcli.cli._common import DTFError, console

app = typer.Typer(help="Dataset tools: synthetic motion data, inspection.", no_args_is_help=True)


def _parse_classes(text: str | None) -> list[int] | None:
    from dtfcli.data.synth import SYNTH_CLASSES

    if not text:
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        if part.isdigit():
            out.append(int(part))
        elif part in SYNTH_CLASSES:
            out.append(SYNTH_CLASSES.index(part))
        else:
            raise DTFError(f"--classes: {part!r} is neither a class index (0-11) nor one of the class names")
    return out


@app.command("synth")
def synth_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the dataset into (SSv2 layout)."),
    videos_per_class: int = typer.Option(20, "--videos-per-class", "-n", min=1, help="Training videos per class."),
    val_per_class: int | None = typer.Option(
        None, "--val-per-class", min=0, help="Validation videos per class (default: a quarter of -n, at least 1)."
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same dataset."),
    classes: str | None = typer.Option(
        None, "--classes", help="Only these classes: indices or names, comma-separated."
    ),
    min_side: int = typer.Option(64, "--min-side", min=16, help="Smallest short side of a video, pixels."),
    max_side: int = typer.Option(128, "--max-side", min=16, help="Largest short side of a video, pixels."),
    codec: list[str] | None = typer.Option(
        None, "--codec", help="Codecs to draw from (vp9, vp8, h264, mpeg4, mjpeg; default: the style's); repeatable."
    ),
    style: str = typer.Option(
        "varied", "--style", help="varied: natural-image-like scenes, lighting, blur; plain: the simple first look."
    ),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Encoding processes."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write a synthetic motion dataset (12 classes told apart only by temporal order).

    Examples:

      dtf data synth --out data/synth -n 50 --seed 0 --workers 2

      dtf data synth --out /tmp/mini -n 1 --val-per-class 0 --classes 0,1
    """
    from dtfcli.data.synth import CODECS, STYLES, synthesize_dataset

    if min_side > max_side:
        raise DTFError("--min-side must not exceed --max-side")
    if style not in STYLES:
        raise DTFError(f"--style {style!r}: choose from {', '.join(STYLES)}")
    codecs = tuple(codec) if codec else None
    for c in codecs or ():
        if c not in CODECS:
            raise DTFError(f"--codec {c!r}: choose from {', '.join(CODECS)}")
    if out.exists() and any(out.iterdir()) and not (out / "labels").is_dir():
        raise DTFError(f"{out}: exists and is not an earlier synth dataset; choose an empty folder")
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("videos", total=None)
        summary = synthesize_dataset(
            out, videos_per_class, seed, val_videos_per_class=val_per_class, classes=_parse_classes(classes),
            min_side=min_side, max_side=max_side, codecs=codecs, style=style, workers=workers,
            progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        console.print(f"wrote {summary['train']} training and {summary['validation']} validation videos "
                      f"({len(summary['classes'])} classes) to {out}  [read it with --dataset ssv2]")


@app.command("info")
def info_command(
    paths: list[Path] = typer.Argument(..., help="Video files (or SSv1-style frame folders)."),
    backend: str = typer.Option("auto", "--backend", help="auto, pyav or decord."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show what a video reader sees: frames, frame rate, duration, size, rotation, codec.

    Examples:

      dtf data info examples/synth-mini/20bn-something-something-v2/*

      dtf data info clip.mp4 --backend decord --json
    """
    from dtfcli.data.video import VideoDecodeError, open_video

    rows, failures = [], 0
    for path in paths:
        try:
            with open_video(path, backend) as reader:
                first = reader.get_frames([0])
                index = reader.index
                rows.append({"path": str(path), "backend": getattr(reader, "used_backend", reader.backend),
                             "container": index.format_name, "codec": index.codec_name,
                             "frames": reader.num_frames, "header_frames": index.header_frames,
                             "fps": round(reader.fps, 3), "duration_s": round(reader.duration, 3),
                             "height": int(first.shape[1]), "width": int(first.shape[2]),
                             "stored": f"{index.stored_size[0]}x{index.stored_size[1]}"})
        except VideoDecodeError as exc:
            failures += 1
            rows.append({"path": str(path), "error": exc.reason})
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        table = Table("path", "backend", "container/codec", "frames (header)", "fps", "seconds", "H x W (stored)")
        for r in rows:
            if "error" in r:
                table.add_row(r["path"], "-", f"[red]{r['error']}[/]", "", "", "", "")
            else:
                table.add_row(r["path"], r["backend"], f"{r['container']}/{r['codec']}",
                              f"{r['frames']} ({r['header_frames'] or '?'})", f"{r['fps']:.2f}",
                              f"{r['duration_s']:.2f}", f"{r['height']}x{r['width']} ({r['stored']})")
        console.print(table)
    if failures:
        from dtfcli.cli._common import EXIT_ERROR, EXIT_SKIPPED

        raise typer.Exit(EXIT_ERROR if failures == len(paths) else EXIT_SKIPPED)
