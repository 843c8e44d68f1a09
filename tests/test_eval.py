"""`dtf eval` end to end: the real command on real encoded videos with a saved tiny model.

One uninterrupted single-process run is the reference that the torchrun run and the
killed-then-resumed run must reproduce video by video.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._videos import write_video

VIEWS = ["--clips", "2", "--crops", "1"]
VIDEOS = 7  # odd: two processes get 4 and 3


def _dtf(*args: str, launcher: list[str] | None = None, **popen) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable, "-m"]) + ["dtfcli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=600,
                          **popen)


def _in_process(*args: str) -> tuple[int, str, str]:
    """The real command line (parsing, one-line errors, exit codes) run in this process: it
    saves a second or more of imports per call on a busy machine. Returns (code, out, err)
    with runs of whitespace folded (the console wraps long lines)."""
    from dtfcli.cli import app
    from dtfcli.cli._common import run_guarded

    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["dtf", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
            run_guarded(app)
    finally:
        sys.argv = argv
    return int(exit_info.value.code or 0), out.getvalue(), " ".join(err.getvalue().split())


def _rows(out: Path) -> list[dict]:
    with open(out / "predictions.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 7-video SSv2-layout dataset, a saved c2d_tiny with the 12 synth labels, and a
    reference evaluation of it."""
    from dtfcli.data import synthesize_dataset
    from dtfcli.data.synth import SYNTH_CLASSES
    from dtfcli.hub import save_pretrained
    from dtfcli.models import create_model

    base = tmp_path_factory.mktemp("eval")
    synthesize_dataset(base / "data", videos_per_class=0, val_videos_per_class=1, seed=0,
                       classes=list(range(VIDEOS)), min_side=32, max_side=48)
    torch.manual_seed(0)
    save_pretrained(create_model("c2d_tiny", num_classes=12), base / "model", labels=list(SYNTH_CLASSES))
    torch.manual_seed(1)
    save_pretrained(create_model("c2d_tiny", num_classes=12), base / "other_model", labels=list(SYNTH_CLASSES))
    common = ["eval", "--dataset", "ssv2", "--root", str(base / "data"), "--model", str(base / "model"),
              *VIEWS, "--workers", "1"]
    code, out, err = _in_process(*common, "--out", str(base / "ref"))
    assert code == 0, err
    return {"base": base, "common": common, "ref": base / "ref", "stdout": " ".join(out.split())}


def test_report_agrees_with_its_own_predictions(world):
    ref = world["ref"]
    report, rows = _report(ref), _rows(ref)
    assert "top-1" in world["stdout"] and "report.json" in world["stdout"]
    assert report["counts"] == {"listed": VIDEOS, "missing": 0, "excluded": 0, "beyond_limit": 0,
                                "selected": VIDEOS, "evaluated": VIDEOS, "skipped": 0, "pending": 0}
    assert sorted(int(r["index"]) for r in rows) == list(range(VIDEOS)) and not any(r["error"] for r in rows)
    # Recompute the metrics from predictions.csv alone.
    labels = np.array([r["label"] for r in rows])
    preds = np.array([[r[f"pred{k}"] for k in range(1, 6)] for r in rows])
    assert report["metrics"]["top1"] == pytest.approx(100 * np.mean(preds[:, 0] == labels))
    assert report["metrics"]["top5"] == pytest.approx(100 * np.mean((preds == labels[:, None]).any(axis=1)))
    per_class = {c: 100 * np.mean(preds[labels == c, 0] == c) for c in set(labels)}
    assert report["metrics"]["mean_class_accuracy"] == pytest.approx(np.mean(list(per_class.values())))
    for row in rows:
        probs = [float(row[f"prob{k}"]) for k in range(1, 6)]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
    # The per-class table and the confusion matrix account for every evaluated video once.
    table = {row["class"]: row for row in report["per_class"]}
    assert sum(row["support"] for row in report["per_class"]) == VIDEOS
    for name, acc in per_class.items():
        assert table[name]["support"] == int(np.sum(labels == name)) and table[name]["top1"] == pytest.approx(acc)
    with open(ref / "confusion.csv", newline="") as fh:
        matrix_rows = list(csv.reader(fh))
    matrix = np.array([[int(x) for x in row[1:]] for row in matrix_rows[1:]])
    assert matrix.sum() == VIDEOS
    assert [int(x) for x in matrix.sum(axis=1)] == [table[row[0]]["support"] for row in matrix_rows[1:]]
    assert np.trace(matrix) == int(np.sum(preds[:, 0] == labels))
    assert (ref / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert report["model"]["sha256"] and report["views"]["clips"] == 2 and report["fusion"] == "prob"
    assert set(report["versions"]) >= {"dtf", "torch", "torchvision"} and report["run"]["device"] == "cpu"


def _same_predictions(rows_a: list[dict], rows_b: list[dict]) -> None:
    assert len(rows_a) == len(rows_b)
    for a, b in zip(rows_a, rows_b, strict=False):
        assert [a[k] for k in ("index", "path", "label", "pred1", "pred2", "pred3", "pred4", "pred5", "error")] == \
               [b[k] for k in ("index", "path", "label", "pred1", "pred2", "pred3", "pred4", "pred5", "error")]
        assert [float(a[f"prob{k}"]) for k in range(1, 6)] == pytest.approx([float(b[f"prob{k}"]) for k in range(1, 6)],
                                                                           abs=1e-5)


def test_torchrun_two_processes_resume_and_match_one(world):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    launcher = [torchrun, "--standalone", "--nproc_per_node", "2", "-m"] if Path(torchrun).exists() else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    out = world["base"] / "torchrun"
    # Start from what a killed run leaves: its state, two finished rows and a cut third one.
    # torchrun then shares the 5 videos left (3 and 2) and must do each of them once.
    out.mkdir()
    shutil.copy(world["ref"] / "state.json", out / "state.json")
    lines = (world["ref"] / "predictions.csv").read_text().splitlines(keepends=True)
    (out / "predictions.csv").write_text("".join(lines[:3]) + lines[3][:40])
    proc = _dtf(*world["common"], "--out", str(out), "--json", "--workers", "0", launcher=launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report, reference = _report(out), _report(world["ref"])
    assert report["run"]["processes"] == 2
    assert report["run"]["videos_this_run"] == VIDEOS - 2  # gathered rows: no video done twice
    assert report["counts"] == reference["counts"]
    assert report["metrics"] == pytest.approx(reference["metrics"])
    _same_predictions(_rows(out), _rows(world["ref"]))
    assert json.loads(proc.stdout)["counts"]["evaluated"] == VIDEOS  # one report, printed once


def test_killed_run_resumes_to_the_same_report(world):
    out = world["base"] / "killed"
    cmd = [sys.executable, "-m", "dtfcli", *world["common"], "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            csv_path = out / "predictions.csv"
            if csv_path.exists() and csv_path.read_text().count("\n") >= 3:  # header + 2 videos
                break
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(_rows(out))
    assert 2 <= done < VIDEOS and not (out / "report.json").exists()
    with open(out / "predictions.csv", "a") as fh:
        fh.write("6,/some/path.webm,Moving some")  # as if killed in the middle of writing a row

    code, _, err = _in_process(*world["common"], "--out", str(out), "--workers", "0")
    assert code == 0, err
    report, reference = _report(out), _report(world["ref"])
    assert report["counts"] == reference["counts"] and report["metrics"] == reference["metrics"]
    assert report["per_class"] == reference["per_class"]
    assert report["run"]["videos_this_run"] == VIDEOS - done
    _same_predictions(_rows(out), _rows(world["ref"]))
    assert json.loads((out / "state.json").read_text())["complete"] is True

    # Another model on the same folder is refused, and nothing there changes.
    before = (out / "predictions.csv").read_bytes()
    other = [a if a != str(world["base"] / "model") else str(world["base"] / "other_model") for a in world["common"]]
    code, _, err = _in_process(*other, "--out", str(out), "--workers", "0")
    assert code == 1 and "another model" in err and "--restart" in err and err.count("error:") == 1
    assert (out / "predictions.csv").read_bytes() == before
    code, _, err = _in_process(*other, "--out", str(out), "--workers", "0", "--restart")
    assert code == 0, err
    assert _report(out)["model"]["sha256"] != report["model"]["sha256"] and len(_rows(out)) == VIDEOS


@pytest.fixture(scope="module")
def bad_folder(world):
    """A list file naming two good videos, a cut-off file, a missing file and a text file."""
    from dtfcli.data.synth import SYNTH_CLASSES

    folder = world["base"] / "bad"
    folder.mkdir()
    write_video(folder / "a.mp4", 24, size=(48, 64))
    write_video(folder / "b.mp4", 24, size=(48, 64))
    (folder / "broken.mp4").write_bytes((folder / "a.mp4").read_bytes()[:300])
    (folder / "notes.mp4").write_text("not a video\n")
    (folder / "classes.txt").write_text(f"{SYNTH_CLASSES[0]}\n{SYNTH_CLASSES[1]}\n")
    (folder / "val.txt").write_text("a.mp4 0\nbroken.mp4 1\nmissing.mp4 0\nb.mp4 1\nnotes.mp4 0\n")
    (folder / "strict.txt").write_text("a.mp4 0\nbroken.mp4 1\nb.mp4 1\n")
    return folder


def test_bad_videos_are_skipped_counted_and_explained(world, bad_folder):
    out = world["base"] / "bad-out"
    code, stdout, stderr = _in_process("eval", "--dataset", "list", "--root", str(bad_folder), "--model",
                                       str(world["base"] / "model"), "--fast", "--workers", "0", "--out", str(out))
    assert code == 3, stderr
    assert "Traceback" not in stderr + stdout
    report = _report(out)
    assert report["counts"]["listed"] == 5 and report["counts"]["evaluated"] == 2
    assert report["counts"]["skipped"] == 2 and report["counts"]["missing"] == 1
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"] + report["missing"]}
    assert set(reasons) == {"broken.mp4", "notes.mp4", "missing.mp4"} and all(reasons.values())
    assert "broken.mp4" in stdout and "notes.mp4" in stdout
    rows = _rows(out)
    assert [Path(r["path"]).name for r in rows if not r["error"]] == ["a.mp4", "b.mp4"]
    assert sorted(Path(r["path"]).name for r in rows if r["error"]) == ["broken.mp4", "notes.mp4"]
    assert sum(row["support"] for row in report["per_class"]) == 2


def test_strict_stops_at_the_first_bad_video(world, bad_folder):
    model = str(world["base"] / "model")
    common = ["eval", "--dataset", "list", "--root", str(bad_folder), "--model", model, "--fast", "--workers", "0",
              "--strict"]
    code, _, err = _in_process(*common, "--split", "strict", "--out", str(world["base"] / "strict"))
    assert code == 1 and "broken.mp4" in err and "--strict" in err and "Traceback" not in err
    assert not (world["base"] / "strict" / "report.json").exists()
    code, _, err = _in_process(*common, "--out", str(world["base"] / "strict2"))
    assert code == 1 and "missing.mp4" in err  # listed but absent: refused before any video is read


def test_classes_the_model_lacks(world, bad_folder):
    from dtfcli.data.synth import SYNTH_CLASSES

    folder = world["base"] / "juggling"
    folder.mkdir()
    (folder / "classes.txt").write_text(f"{SYNTH_CLASSES[0]}\nJuggling balls\n")
    (folder / "val.txt").write_text("../bad/a.mp4 0\n../bad/b.mp4 1\n")
    args = ["eval", "--dataset", "list", "--root", str(folder), "--model", str(world["base"] / "model"), "--fast",
            "--workers", "0", "--out", str(world["base"] / "juggling-out")]
    code, _, err = _in_process(*args)
    assert code == 1 and "Juggling balls" in err and "--ignore-missing-classes" in err
    code, out, _ = _in_process(*args, "--ignore-missing-classes", "--json")
    report = json.loads(out)
    assert code == 0 and report["excluded_classes"] == ["Juggling balls"]
    assert report["counts"]["excluded"] == 1 and report["counts"]["evaluated"] == 1


def test_library_call_with_a_loaded_model_and_a_limit(world, bad_folder):
    from dtfcli.engine.evaluate import evaluate
    from dtfcli.engine.inference import load_inference_model

    model = load_inference_model(str(world["base"] / "model"), device="cpu")
    report = evaluate(model, "list", bad_folder, split="strict", out_dir=world["base"] / "library", fast=True,
                      workers=0, limit=1)
    assert report.counts["selected"] == 1 and report.counts["beyond_limit"] == 2 and report.counts["evaluated"] == 1
    assert report.problems == 0 and report.complete
    assert report.to_dict() == json.loads((world["base"] / "library" / "report.json").read_text())
