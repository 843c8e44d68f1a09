"""`dtf eval`: score a model on a dataset (top-1, top-5, mean class accuracy, confusion matrix)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from dtfcli.cli import _common as shared
from dtfcli.cli._common import EXIT_SKIPPED, console, err_console

EXIT_INTERRUPTED = 130


class _SpeedColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- videos/s" if speed is None else f"{speed:.2f} videos/s", style="progress.data.speed")


class _Bar:
    """The progress callback: a rich bar with videos/s and the time left."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("eval", total=total, completed=done)
        else:
            self.progress.update(self.task, completed=done)


def _summary(report) -> None:
    m, c = report.metrics, report.counts

    def pct(value):
        return "-" if value is None else f"{value:.2f}%"

    console.print(f"[bold]{report.model['name']}[/] ({report.model['source']}) on {report.dataset['name']} "
                  f"{report.dataset['split']}, {shared.views_text(report.views)}, "
                  f"fusion {report.fusion}", highlight=False)
    table = Table("top-1", f"top-{m['topk']}", "mean class acc.", "evaluated", "skipped", "missing")
    table.add_row(pct(m["top1"]), pct(m["top5"]), pct(m["mean_class_accuracy"]), str(c["evaluated"]),
                  str(c["skipped"]), str(c["missing"]))
    console.print(table)
    with_videos = [row for row in report.per_class if row["support"]]
    if with_videos:
        few = len(with_videos) <= 20
        shown = with_videos if few else sorted(with_videos, key=lambda r: (r["top1"], -r["support"]))[:10]
        classes = Table("class" if few else "class (the 10 least accurate; all in per_class.csv)", "videos",
                        "top-1", f"top-{m['topk']}")
        for row in shown:
            classes.add_row(row["class"], str(row["support"]), pct(row["top1"]), pct(row["top5"]))
        console.print(classes)
    if c["excluded"]:
        console.print(f"{c['excluded']} videos of {len(report.excluded_classes)} classes the model lacks left out "
                      f"(e.g. {', '.join(report.excluded_classes[:3])})", highlight=False)
    if c["beyond_limit"]:
        console.print(f"{c['beyond_limit']} videos beyond --limit not evaluated", highlight=False)
    problems = [("skipped", item) for item in report.skipped] + [("missing", item) for item in report.missing]
    for kind, item in problems[:10]:
        console.print(f"  [yellow]{kind}[/] {item['path']}: {item['reason']}", highlight=False)
    if len(problems) > 10:
        console.print(f"  ... and {len(problems) - 10} more (see report.json)", highlight=False)
    if report.top_confusions:
        top = report.top_confusions[0]
        videos = f"{top['count']} video{'s' if top['count'] != 1 else ''}"
        console.print(f"most confused: {top['true']} -> {top['predicted']} ({videos})", highlight=False)
    speed = report.run["videos_per_second"]
    console.print(f"wrote {report.out_dir}/report.json, predictions.csv, per_class.csv, confusion.csv/.png"
                  + (f"  ({speed:.2f} videos/s)" if speed else ""), highlight=False)


def eval_command(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="Layout: kinetics400, ssv1, ssv2, ucf101, hmdb51, list or folder."),
    root: Path = typer.Option(..., "--root", help="The dataset's folder (for list: the list file or its folder)."),
    split: str = typer.Option("val", "--split", help="Split to evaluate (val, test, train)."),
    fold: int = typer.Option(1, "--fold", min=1, max=3, help="UCF101/HMDB51 split number."),
    model: str = shared.MODEL_OPTION,
    out: Path = typer.Option(None, "--out", "-o", help="Report folder (default runs/eval/<dataset>-<split>)."),
    clips: int = shared.CLIPS_OPTION,
    crops: int = shared.CROPS_OPTION,
    fast: bool = shared.FAST_OPTION,
    symmetries: bool = shared.SYMMETRIES_OPTION,
    fusion: str = shared.FUSION_OPTION,
    view_batch: int = shared.VIEW_BATCH_OPTION,
    workers: int = shared.WORKERS_OPTION,
    device: str = shared.DEVICE_OPTION,
    amp: bool = shared.AMP_OPTION,
    backend: str = shared.BACKEND_OPTION,
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N videos (a quick check)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable or missing video (exit 1)."),
    restart: bool = typer.Option(False, "--restart", help="Discard an earlier run in --out instead of resuming it."),
    ignore_missing_classes: bool = typer.Option(
        False, "--ignore-missing-classes", help="Leave out videos of classes the model has no output for."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Evaluate a model on a dataset: top-1, top-5, mean class accuracy, per-class table, confusion matrix.

    Writes report.json, predictions.csv (one row per video), per_class.csv and the confusion matrix
    (CSV, JSON, PNG) to --out. Running the same command again resumes an interrupted run.

    Exit codes: 0 every listed video evaluated; 3 some videos were unreadable or missing (listed in
    report.json); 1 error; 2 a bad command line. Several GPUs or nodes: start it with torchrun (see docs/evaluate.md).

    Examples:

      dtf eval --dataset ssv2 --root data/ssv2 --model hf://org/dtf-ssv2

      dtf eval --dataset kinetics400 --root data/k400 --model dtfnet_r50_k400 --fast --limit 200

      torchrun --standalone --nproc_per_node 4 -m dtfcli eval --dataset ucf101 --root data/ucf101 --model runs/ucf
    """
    from dtfcli.data import DATASETS
    from dtfcli.engine.distributed import env_rank
    from dtfcli.engine.evaluate import default_out_dir, evaluate

    if dataset not in DATASETS:
        raise typer.BadParameter(f"{dataset!r}: choose from {', '.join(DATASETS)}", param_hint="--dataset")
    shared.check_views(crops, fusion)
    out = out or default_out_dir(dataset, split, fold)
    main = env_rank() == 0
    if not main:  # under torchrun, rank 0 speaks for all processes
        import logging

        logging.getLogger("dtfcli").setLevel(logging.ERROR)
    columns = (TextColumn("eval"), BarColumn(), MofNCompleteColumn(), _SpeedColumn(), TextColumn("ETA"),
               TimeRemainingColumn(), TimeElapsedColumn())
    bar = Progress(*columns, console=err_console, transient=True, disable=as_json or not main)
    try:
        with bar:
            report = evaluate(model, dataset, root, split=split, fold=fold, out_dir=out, clips=clips, crops=crops,
                              fast=fast, symmetries=symmetries, fusion=fusion, view_batch=view_batch,
                              workers=workers, device=device, amp=amp, backend=backend, limit=limit, strict=strict,
                              restart=restart, ignore_missing_classes=ignore_missing_classes, progress=_Bar(bar))
    except KeyboardInterrupt:
        if main:
            err_console.print(f"interrupted: finished videos are saved in {out / 'predictions.csv'}; "
                              "run the same command again to continue", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if main:
        if as_json:
            console.print_json(json.dumps(report.to_dict()))
        else:
            _summary(report)
    # Only rank 0 reports skipped videos by its exit code: torchrun stops the other processes
    # as soon as one exits non-zero, which could cut rank 0 short while it prints.
    if report.problems and main:
        raise typer.Exit(EXIT_SKIPPED)

