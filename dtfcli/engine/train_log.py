"""Metrics of a run: CSV files always (flushed every row), TensorBoard when it is installed.

``metrics.csv``: one row per optimiser step (step, epoch, lr, loss, clips_per_s, elapsed_s);
the LR is the one that step used.  ``val.csv``: one row per validation.  On resume, rows
after the checkpoint's step (written before the interruption, then redone) are removed, so
the files read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRAIN_FIELDS = ("step", "epoch", "lr", "loss", "clips_per_s", "elapsed_s")
VAL_FIELDS = ("step", "epoch", "top1", "top5", "loss", "videos", "skipped")


def _truncate_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(kept)


class _CsvLog:
    def __init__(self, path: Path, fields: tuple[str, ...], resume_step: int | None):
        if resume_step is not None:
            _truncate_after(path, resume_step)
        new = not path.is_file() or path.stat().st_size == 0
        self.fh = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.fh, fieldnames=fields)
        if new:
            self.writer.writeheader()
            self.fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class MetricsLog:
    """Rank 0's metrics writer.  ``resume_step``: the step a resumed run continues after."""

    def __init__(self, run_dir: Path, *, resume_step: int | None = None, tensorboard: bool = True):
        self.train = _CsvLog(run_dir / "metrics.csv", TRAIN_FIELDS, resume_step)
        self.val = _CsvLog(run_dir / "val.csv", VAL_FIELDS, resume_step)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra dtfcli[tensorboard] is not installed
                log.info("tensorboard is not installed: metrics go to the CSV files only")
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def step(self, row: dict[str, Any]) -> None:
        # The LR is written exactly (repr), so that curves of two runs can be compared bit for bit.
        self.train.write({**row, "lr": repr(float(row["lr"]))})
        if self.tb is not None:
            for name in ("loss", "lr", "clips_per_s"):
                self.tb.add_scalar(f"train/{name}", row[name], row["step"])

    def validation(self, row: dict[str, Any]) -> None:
        self.val.write(row)
        if self.tb is not None:
            for name in ("top1", "top5", "loss"):
                self.tb.add_scalar(f"val/{name}", row[name], row["step"])

    def close(self) -> None:
        self.train.close()
        self.val.close()
        if self.tb is not None:
            self.tb.close()
