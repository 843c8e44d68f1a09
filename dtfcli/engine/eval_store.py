"""What an evaluation keeps on disk so that it can be resumed: predictions.csv and state.json.

``predictions.csv`` has one row per video as soon as it is done (flushed and fsync'd), so a
run killed at any moment keeps every finished video. A video that could not be read gets a
row too, with its reason in the ``error`` column and no predictions: a resumed run does not
try it again (``--restart`` does). A last line cut short by a kill is dropped on resume.

``state.json`` holds the run's fingerprint (model sha256, views, fusion, dataset, split,
fold, root, a hash of the dataset's sample list): a resumed run must match it, so rows of
another model or another protocol never mix into a report.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOPK_COLUMNS = 5
HEADER = (["index", "path", "label"] + [f"{kind}{k}" for k in range(1, TOPK_COLUMNS + 1) for kind in ("pred", "prob")]
          + ["error"])
STATE_FORMAT = 1
PREDICTIONS = "predictions.csv"
STATE = "state.json"
REPORT = "report.json"
#: What the end of a run writes beside the two files above.
OUTPUT_FILES = (REPORT, "per_class.csv", "confusion.csv", "confusion.json", "confusion.png")


class EvalError(ValueError):
    """An evaluation that cannot go on: one line for the user."""


@dataclass
class VideoResult:
    """One video's outcome: ``ranked`` model outputs (most probable first) and their
    ``probs``, or an ``error`` (then both are empty). ``target``: the true class's output."""

    index: int
    path: str
    target: int
    ranked: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    error: str | None = None

    def csv_row(self, labels: list[str]) -> list[str]:
        cells = [str(self.index), self.path, labels[self.target]]
        for k in range(TOPK_COLUMNS):
            if k < len(self.ranked):
                cells += [labels[self.ranked[k]], f"{self.probs[k]:.6f}"]
            else:
                cells += ["", ""]
        return cells + [self.error or ""]


def format_rows(results: list[VideoResult], labels: list[str], header: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(HEADER)
    for result in results:
        writer.writerow(result.csv_row(labels))
    return buffer.getvalue()


class PredictionWriter:
    """Appends rows to predictions.csv, each write flushed and fsync'd."""

    def __init__(self, path: Path, labels: list[str]):
        self.path, self.labels = path, labels
        fresh = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", encoding="utf-8", newline="")
        if fresh:
            self._write(format_rows([], labels, header=True))

    def _write(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write(self, results: list[VideoResult]) -> None:
        if results:
            self._write(format_rows(results, self.labels))

    def close(self) -> None:
        self._fh.close()


def read_predictions(path: Path, labels: list[str]) -> dict[int, VideoResult]:
    """Rows of an earlier run by video index. A last line without its newline (the run was
    killed while writing it) is cut off the file; any other malformed line is an error."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a partial last line
        with open(path, "r+b") as fh:
            fh.truncate(end)
        data = data[:end]
    text = data.decode("utf-8")
    output = {}
    for i, name in enumerate(labels):
        output.setdefault(name, i)
    results: dict[int, VideoResult] = {}
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return {}
    if header != HEADER:
        raise EvalError(f"{path}: not a predictions file of dtf eval (unexpected header); "
                        "use --restart or another --out")
    for row in reader:
        line = reader.line_num
        try:
            if len(row) != len(HEADER):
                raise ValueError(f"{len(row)} fields, expected {len(HEADER)}")
            index, video, label = int(row[0]), row[1], row[2]
            error = row[-1] or None
            ranked, probs = [], []
            for k in range(TOPK_COLUMNS):
                pred, prob = row[3 + 2 * k], row[4 + 2 * k]
                if pred:
                    ranked.append(output[pred])
                    probs.append(float(prob))
            results[index] = VideoResult(index, video, output[label], ranked, probs, error)
        except (ValueError, KeyError) as exc:
            raise EvalError(f"{path}:{line}: unreadable row ({exc}); use --restart to start over") from None
    return results


def rewrite_predictions(path: Path, results: list[VideoResult], labels: list[str]) -> None:
    """Replace predictions.csv by ``results`` in index order (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(format_rows(sorted(results, key=lambda r: r.index), labels, header=True))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, content: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(content, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


_WHAT = {"model_sha256": "model (weights sha256)", "views": "views", "fusion": "fusion", "amp": "--amp",
         "dataset": "dataset", "split": "split", "fold": "fold", "root": "dataset root",
         "samples_sha256": "dataset's video list", "labels": "model's labels"}


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:16] + "\u2026"


def load_state(out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The state of an earlier run in ``out_dir`` if it matches ``fingerprint``; None when
    there is none. A different run there is an error naming what differs."""
    state_path, csv_path = out_dir / STATE, out_dir / PREDICTIONS
    if not state_path.exists():
        if csv_path.exists() and csv_path.stat().st_size > 0:
            raise EvalError(f"{csv_path} exists without its {STATE}; use --restart to start over or another --out")
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        earlier = state["fingerprint"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise EvalError(f"{state_path}: unreadable; use --restart to start over") from None
    for key, value in fingerprint.items():
        if earlier.get(key) != value:
            raise EvalError(
                f"{out_dir} holds an evaluation with another {_WHAT.get(key, key)} ({_show(earlier.get(key))} there, "
                f"{_show(value)} now); use --restart to start over or another --out")
    return state


def clear_run(out_dir: Path) -> None:
    """Remove the files an evaluation writes (and nothing else) from ``out_dir``."""
    for name in (PREDICTIONS, STATE, *OUTPUT_FILES):
        for path in (out_dir / name, out_dir / (name + ".tmp")):
            if path.exists():
                path.unlink()
