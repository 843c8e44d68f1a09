"""`dtf data ...`: dataset tools (synthetic motion data, what a reader sees in a video)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
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
    contrast_share: float = typer.Option(
        0.85, "--contrast-share", min=0.0, max=1.0,
        help="Varied style: the share of clips whose object is lighter or darker than the scene; "
             "in the others random colours can hide it.",
    ),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Encoding processes."),
    append: bool = typer.Option(
        False, "--append", help="Add the videos to the dataset in --out (use another --seed than its own)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write a synthetic motion dataset (12 classes told apart only by temporal order).

    Examples:

      dtf data synth --out data/synth -n 50 --seed 0 --workers 2

      dtf data synth --out /tmp/mini -n 1 --val-per-class 0 --classes 0,1

      dtf data synth --out data/synth --append --classes 6,7 -n 100 --val-per-class 0 --seed 1
    """
    from dtfcli.data.synth import CODECS, CONTRAST_SHARE, STYLES, synthesize_dataset

    if min_side > max_side:
        raise DTFError("--min-side must not exceed --max-side")
    if style not in STYLES:
        raise DTFError(f"--style {style!r}: choose from {', '.join(STYLES)}")
    if style == "plain" and contrast_share != CONTRAST_SHARE:
        raise DTFError("--contrast-share applies to the varied style only")
    codecs = tuple(codec) if codec else None
    for c in codecs or ():
        if c not in CODECS:
            raise DTFError(f"--codec {c!r}: choose from {', '.join(CODECS)}")
    if out.exists() and any(out.iterdir()) and not (out / "labels").is_dir():
        raise DTFError(f"{out}: exists and is not an earlier synth dataset; choose an empty folder")
    if append and not (out / "labels" / "train.json").is_file():
        raise DTFError(f"{out}: --append needs a dataset there ({out / 'labels' / 'train.json'} is missing)")
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("videos", total=None)
        summary = synthesize_dataset(
            out, videos_per_class, seed, val_videos_per_class=val_per_class, classes=_parse_classes(classes),
            min_side=min_side, max_side=max_side, codecs=codecs, style=style, contrast_share=contrast_share,
            workers=workers, append=append,
            progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        console.print(f"{'added' if append else 'wrote'} {summary['train']} training and {summary['validation']} "
                      f"validation videos ({len(summary['classes'])} classes) to {out}  [read it with --dataset ssv2]")


_VERDICT_STYLE = {"ok": "green", "cut": "yellow", "damaged": "yellow", "unreadable": "red"}


def _video_cell(check) -> str:
    if not check.frames:
        return "-"
    frames = f"{check.frames} frames"
    if check.expected_frames > check.frames:
        frames += f" of {check.expected_frames} expected"
    size = f"{check.height}x{check.width}" if check.height else check.stored
    return (f"{check.codec}/{check.container}, {frames}, {check.fps:.2f} fps, {check.duration_s:.2f} s, {size}"
            f", {check.backend}")


@app.command("info")
def info_command(
    paths: list[Path] = typer.Argument(
        ..., help="Video files, frame folders (SSv1), or folders of videos (files with a video extension)."),
    verify: bool = typer.Option(False, "--verify", help="Decode every frame, not only the first and the last."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look for videos in subfolders too."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Files checked at once, in separate processes."),
    backend: str = typer.Option("auto", "--backend", help="auto, pyav or decord."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: one object per file and a summary."),
) -> None:
    """Show what a video reader sees in each file, and whether the file is whole.

    Per file: codec/container, frames, fps, seconds, size, and a verdict:
    - [bold]ok[/];
    - [bold]cut[/]: the frames that decode stop early, or the file is shorter than it says;
    - [bold]damaged[/]: frames in the middle do not decode;
    - [bold]unreadable[/]: nothing decodes (with the reason).

    By default the first and the last frame are decoded and the container's own
    sizes are checked: that already catches a cut download, cheaply.
    [bold]--verify[/] decodes every frame (64 at a time) and says which decode.

    Exit code: 0 every file is ok; 3 some are not; 1 none is, or nothing to check
    (e.g. a folder without videos); 2 an unknown option.

    File names that begin with '-' (some Kinetics ids do): put them after '--',
    or write them as './-name.mp4'.

    Examples:

      dtf data info examples/synth-mini/20bn-something-something-v2/*

      dtf data info --verify -r -j 4 k400/val

      dtf data info --json -- -abc123_000010_000020.mp4
    """
    from dtfcli.cli._common import EXIT_ERROR, EXIT_SKIPPED, err_console
    from dtfcli.data.verify import check_videos, collect_videos
    from dtfcli.data.video import BACKENDS

    if backend not in BACKENDS:
        raise DTFError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}")
    videos, empty = collect_videos(paths, recursive)
    if empty and not videos:
        hint = "" if recursive else " (add -r to look in subfolders)"
        raise DTFError(f"no video files in {', '.join(str(p) for p in empty)}{hint}")
    for folder in empty:
        err_console.print(f"[yellow]warning:[/] no video files in {folder}", highlight=False)
    with Progress(TextColumn("checking" if verify else "opening"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=as_json or len(videos) < 2 or not err_console.is_terminal) as bar:
        task = bar.add_task("files", total=len(videos))
        report = check_videos(videos, backend, full=verify, jobs=jobs,
                              progress=lambda done, total: bar.update(task, completed=done))
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        table = Table("file", "video", "verdict")
        for column in table.columns:
            column.overflow = "fold"  # wrap long paths and reasons, never cut them off
        for check in report.files:
            style = _VERDICT_STYLE[check.verdict]
            verdict = check.verdict if check.ok else f"{check.verdict}: {check.reason}"
            table.add_row(escape(check.path), escape(_video_cell(check)), f"[{style}]{escape(verdict)}[/]")
        console.print(table)
        if len(report.files) > 1:
            console.print(report.summary(), highlight=False)
    if report.bad:
        raise typer.Exit(EXIT_ERROR if report.bad == len(report.files) else EXIT_SKIPPED)
