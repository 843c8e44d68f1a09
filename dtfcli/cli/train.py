"""`dtf train`: parses the config and overrides, shows progress, maps the outcome to an exit code."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dtfcli.cli._common import console, err_console, fail


class RichReporter:
    """Progress for the terminal: a live bar (loss, LR, clips/s, ETA) or, when the output is
    not a terminal, one line every ``log_every`` steps."""

    def __init__(self, as_json: bool):
        self.log_every, self.quiet = 10, as_json
        self.live = console.is_terminal and not as_json
        self.progress: Progress | None = None
        self.task = None
        self.started, self.first_step, self.total = 0.0, 0, 0

    def _print(self, text: str) -> None:
        if not self.quiet:
            (self.progress.console if self.progress else console).print(text, highlight=False)

    def start(self, info: dict[str, Any]) -> None:
        self.total, self.first_step, self.started = info["total_steps"], info["start_step"], time.monotonic()
        self.log_every = int(info.get("log_every", self.log_every))  # the run's own (a resumed run's saved one)
        self._print(f"[bold]dtf train[/] -> {info['run_dir']}\n"
                    f"  {info['train_videos']} training videos, {info['val_videos']} validation videos, "
                    f"{info['classes']} classes; {info['epochs']} epochs x {info['steps_per_epoch']} steps of "
                    f"{info['global_batch']} clips; peak LR {info['lr']:g}\n"
                    f"  {info['world_size']} x {info['device']}, precision {info['amp']}; {info['init']}")
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} clips/s"),
                TimeRemainingColumn(), console=console, transient=False)
            self.progress.start()
            self.task = self.progress.add_task("training", total=self.total, completed=self.first_step,
                                               loss="-", lr="-", speed="-")

    def epoch(self, epoch: int, steps: int, done: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=f"epoch {epoch + 1}")

    def _eta(self, step: int) -> str:
        rate = (step - self.first_step) / max(time.monotonic() - self.started, 1e-9)
        left = (self.total - step) / rate if rate > 0 else 0
        return time.strftime("%H:%M:%S", time.gmtime(left))

    def step(self, row: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=row["step"], loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.3g}",
                                 speed=f"{row['clips_per_s']:.1f}")
        elif row["step"] % self.log_every == 0 or row["step"] == self.total:
            self._print(f"step {row['step']}/{self.total} (epoch {row['epoch']:.2f})  loss {row['loss']:.4f}  "
                        f"lr {row['lr']:.4g}  {row['clips_per_s']:.1f} clips/s  ETA {self._eta(row['step'])}")

    def validation(self, row: dict[str, Any]) -> None:
        self._print(f"validation after epoch {row['epoch']}: top-1 {row['top1']:.2f}%  top-5 {row['top5']:.2f}%  "
                    f"loss {row['loss']:.4f}  ({row['videos']} videos, {row['skipped']} skipped)")

    def message(self, text: str) -> None:
        self._print(text)

    def end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _keys_table() -> None:
    from dtfcli.engine.train_config import keys_table

    table = Table(title="dtf train config keys")
    for col in ("key", "default", "meaning"):
        table.add_column(col, overflow="fold")
    for row in keys_table():
        table.add_row(*row)
    console.print(table)


def train_command(
    overrides: list[str] | None = typer.Argument(
        None, help="Config keys to set, as key=value (e.g. lr=0.01 epochs=3); `--keys` lists them.",
        show_default=False),
    config: Path | None = typer.Option(None, "--config", "-c", help="A TOML preset (see examples/configs)."),
    set_: list[str] | None = typer.Option(None, "--set", "-s", help="key=value; repeatable (same as the arguments)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this folder from its last "
                                                              "checkpoint (or from a checkpoint folder)."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Start a new run in a run_dir that holds one, "
                                                            "replacing its checkpoints and logs."),
    keys: bool = typer.Option(False, "--keys", help="List the config keys with their defaults and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of progress."),
) -> None:
    """Train a DTF model with the paper's recipe (SGD, cosine LR with warm-up, linear LR scaling).

    A preset, then key=value overrides; the resolved config is saved as RUN_DIR/train_config.toml.
    Checkpoints: RUN_DIR/checkpoints/{last,best}; the trained model: RUN_DIR/final (Hub layout).
    Several processes or GPUs: launch with torchrun.

    Examples:

      dtf data synth --out data/synth-plain --style plain -n 40 --workers 2

      dtf train --config examples/configs/synth-plain.toml

      dtf train --config examples/configs/ssv2.toml root=/data/ssv2 batch_size=16 accumulate=2

      dtf train --config examples/configs/synth-plain.toml --set lr=0.01 --set epochs=3

      dtf train --resume runs/dtfnet_tiny-synth-plain

      torchrun --nproc_per_node 8 -m dtfcli train --config examples/configs/kinetics400.toml root=/data/k400

      dtf predict clip.mp4 --model runs/dtfnet_tiny-synth-plain/final

    Exit codes: 0 finished; 1 error; 4 the loss became NaN or infinite (checkpoints/last stays the
    last good step); 130 stopped by Ctrl-C (SIGINT), 143 by SIGTERM, each after saving a checkpoint.
    """
    from dtfcli.engine.train import NonFiniteLossError, train
    from dtfcli.engine.train_config import build_config, parse_overrides

    if keys:
        _keys_table()
        return
    items = list(overrides or []) + list(set_ or [])
    if resume is not None:
        if config is not None:
            fail("--config and --resume: a resumed run keeps the config it was started with "
                 "(RUN_DIR/train_config.toml)", 2)
        values: Any = parse_overrides(items)
    else:
        values = build_config(config, items)
    reporter = RichReporter(as_json)
    try:
        result = train(values, resume=resume, exist_ok=exist_ok, reporter=reporter)
    except NonFiniteLossError as exc:
        reporter.end()
        from dtfcli.engine.train import EXIT_DIVERGED

        fail(str(exc), EXIT_DIVERGED)
    except KeyboardInterrupt:  # a second Ctrl-C: no waiting for the step to finish
        reporter.end()
        fail("interrupted twice: stopped without saving this step; the last checkpoint is kept "
             "(dtf train --resume RUN_DIR)", 130)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one process speaks
        pass
    elif as_json:
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items() if k != "config"}
        console.print_json(json.dumps(out))
    elif result.status == "interrupted":
        err_console.print(f"stopped by {result.signal} after step {result.global_step}; checkpoint "
                          f"{result.last_checkpoint}; continue with: dtf train --resume {result.run_dir}",
                          highlight=False)
    else:
        best = f", best top-1 {result.best_top1:.2f}%" if result.best_top1 is not None else ""
        console.print(f"finished {result.global_step} steps in {_duration(result.elapsed_s)}{best}; "
                      f"model: {result.final_dir}", highlight=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
