"""`dtf predict` end to end: real encoded videos, a real saved model, the real CLI."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from _videos import write_video

from dtfcli.data import TestTransform, open_video, sample_test_views
from dtfcli.hub import save_pretrained
from dtfcli.models import create_model

LABELS = ["waving", "jumping", "running", "sitting", "falling"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    model = create_model("dtfnet_tiny", num_classes=len(LABELS), num_frames=4, crop_size=32, test_views=(2, 3))
    # Random heads give near-uniform scores; a larger head spreads them so rankings are clear.
    with torch.no_grad():
        model.fc.weight.mul_(40)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_pretrained(model, folder, labels=LABELS)
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    out = {
        "a": folder / "a.mp4", "b": folder / "b.webm", "c": folder / "sub" / "c.mp4",
    }
    out["c"].parent.mkdir()
    write_video(out["a"], 40, size=(48, 64), fps=20)
    write_video(out["b"], 30, size=(64, 48), fps=15, codec="libvpx-vp9")
    write_video(out["c"], 24, size=(40, 72), fps=12)
    return out


def _json(proc) -> dict:
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def _reference_probs(model_dir: Path, path: Path, clips: int, crops: int, fusion: str) -> torch.Tensor:
    """The views scored one at a time through the data layer's TestTransform (float path),
    then fused by hand: an independent route to the video's probabilities."""
    from dtfcli.hub import load_model

    model, info = load_model(model_dir)
    cfg = info.config
    with open_video(path) as reader:
        views = sample_test_views(reader.num_frames, clip_len=cfg["num_frames"], frame_interval=4,
                                  num_clips=clips, num_crops=crops, crop_size=cfg["crop_size"])
        first = reader.read_clip(views[0].positions)
        views = sample_test_views(reader.num_frames, clip_len=cfg["num_frames"], frame_interval=4,
                                  num_clips=clips, num_crops=crops, crop_size=cfg["crop_size"],
                                  frame_size=tuple(first.shape[1:3]))
        transform = TestTransform(cfg["crop_size"])
        logits = []
        for view in views:
            clip = reader.read_clip(view.positions)
            crop = transform.views(clip, [view])  # (1, C, T, S, S)
            with torch.no_grad():
                logits.append(model(crop)[0])
    logits = torch.stack(logits).double()
    if fusion == "prob":
        return logits.softmax(-1).mean(0)
    return logits.mean(0).softmax(-1)


@pytest.mark.parametrize("fusion", ["prob", "logit"])
def test_multi_view_scores_equal_the_fused_single_views(run_cli, model_dir, clips, fusion):
    proc = run_cli("predict", str(clips["a"]), "--model", str(model_dir), "--json", "--top-k", "5",
                   "--fusion", fusion, "--workers", "0")
    doc = _json(proc)
    assert doc["views"]["clips"] == 2 and doc["views"]["crops"] == 3  # the model's own protocol
    assert doc["fusion"] == fusion
    (video,) = doc["videos"]
    got = {row["label"]: row["prob"] for row in video["topk"]}
    assert set(got) == set(LABELS)
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    expected = _reference_probs(model_dir, clips["a"], 2, 3, fusion)
    for i, label in enumerate(LABELS):
        assert got[label] == pytest.approx(float(expected[i]), abs=2e-5), label
    probs = [row["prob"] for row in video["topk"]]
    assert probs == sorted(probs, reverse=True)


def test_folder_glob_and_list_inputs(run_cli, model_dir, clips, tmp_path):
    folder = clips["a"].parent
    flat = _json(run_cli("predict", str(folder), "-m", str(model_dir), "--fast", "--json", "-j", "0"))
    assert sorted(Path(v["path"]).name for v in flat["videos"]) == ["a.mp4", "b.webm"]
    deep = _json(run_cli("predict", str(folder), "-r", "-m", str(model_dir), "--fast", "--json"))
    assert sorted(Path(v["path"]).name for v in deep["videos"]) == ["a.mp4", "b.webm", "c.mp4"]
    globbed = _json(run_cli("predict", str(folder / "*.mp4"), "-m", str(model_dir), "--fast", "--json", "-j", "0"))
    assert [Path(v["path"]).name for v in globbed["videos"]] == ["a.mp4"]
    listing = tmp_path / "todo.txt"
    listing.write_text(f"# videos to do\n{clips['c']}\n{clips['b']}\n\n", encoding="utf-8")
    listed = _json(run_cli("predict", f"@{listing}", "-m", str(model_dir), "--fast", "--json", "-j", "0"))
    assert [Path(v["path"]).name for v in listed["videos"]] == ["c.mp4", "b.webm"]
    assert listed["views"]["clips"] == 1 and listed["views"]["crops"] == 1
    # Decoding in worker processes gives the same scores as decoding in this one.
    workers = _json(run_cli("predict", f"@{listing}", "-m", str(model_dir), "--fast", "--json", "-j", "2"))
    assert [v["topk"] for v in workers["videos"]] == [v["topk"] for v in listed["videos"]]


def test_bad_inputs_are_skipped_with_reasons_and_exit_code_3(run_cli, model_dir, clips, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(clips["a"], folder / "good.mp4")
    data = clips["a"].read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 3])
    (folder / "notes.mp4").write_text("not a video\n", encoding="utf-8")
    (folder / "empty.webm").write_bytes(b"")
    proc = run_cli("predict", str(folder), str(tmp_path / "missing.mp4"), "-m", str(model_dir), "--fast",
                   "--json", "-j", "0")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert [Path(v["path"]).name for v in doc["videos"]] == ["good.mp4"]
    reasons = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    assert set(reasons) == {"cut.mp4", "notes.mp4", "empty.webm", "missing.mp4"}
    assert "0 bytes" in reasons["empty.webm"] and "no such file" in reasons["missing.mp4"]
    assert all(reasons.values())
    assert doc["counts"] == {"given": 5, "predicted": 1, "skipped": 4}
    assert "4 of 5 inputs skipped" in proc.stderr
    # Nothing readable at all: exit code 1.
    none = run_cli("predict", str(folder / "notes.mp4"), "-m", str(model_dir), "--fast")
    assert none.returncode == 1 and "notes.mp4" in none.stderr and "Traceback" not in none.stderr


def test_table_and_csv_outputs(run_cli, model_dir, clips, tmp_path):
    table = run_cli("predict", str(clips["a"]), "-m", str(model_dir), "--fast", "-k", "3", env={"COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert sum(label in table.stdout for label in LABELS) == 3
    assert "%" in table.stdout
    assert "1 video in " in table.stdout  # the summary line, singular for one video
    out = tmp_path / "p.csv"
    proc = run_cli("predict", str(clips["a"]), str(clips["b"]), "-m", str(model_dir), "--fast", "-k", "2",
                   "--csv", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [Path(r["path"]).name for r in rows] == ["a.mp4", "b.webm"]
    assert all(r["label_1"] in LABELS and float(r["prob_1"]) >= float(r["prob_2"]) for r in rows)


def test_windows_along_a_long_video(run_cli, model_dir, tmp_path):
    video = tmp_path / "long.mp4"
    write_video(video, 100, size=(48, 64), fps=20)  # 5 seconds
    doc = _json(run_cli("predict", str(video), "-m", str(model_dir), "--window", "2", "--stride", "1",
                        "--crops", "1", "--json", "-j", "0"))
    (pred,) = doc["videos"]
    spans = [(w["start"], w["end"]) for w in pred["windows"]]
    assert spans == [(0, 2), (1, 3), (2, 4), (3, 5)]
    for w in pred["windows"]:
        assert sum(r["prob"] for r in w["topk"]) <= 1 + 1e-6
    segs = pred["segments"]
    assert segs[0]["start"] == 0 and segs[-1]["end"] == 5
    assert sum(s["windows"] for s in segs) == 4
    assert all(a["label"] != b["label"] for a, b in zip(segs, segs[1:], strict=False))


def test_model_sources_and_errors(run_cli, clips, tmp_path):
    random = run_cli("predict", str(clips["a"]), "-m", "c2d_tiny", "--fast", "-k", "2", "--json", "-j", "0")
    assert random.returncode == 0, random.stderr
    assert "random" in random.stderr  # the warning
    assert json.loads(random.stdout)["model"]["random_weights"] is True
    typo = run_cli("predict", str(clips["a"]), "-m", "dtfnet_tinyy")
    assert typo.returncode == 1 and "dtfnet_tiny" in typo.stderr and "Traceback" not in typo.stderr
    bad = run_cli("predict", str(clips["a"]), "-m", "c2d_tiny", "--fusion", "median")
    assert bad.returncode == 2 and "--fusion" in bad.stderr  # a usage error, as Typer gives for --clips 0


def test_sampling_travels_with_the_weights(tmp_path, clips):
    """A model trained on segment-sampled clips (Something-Something) is tested that way."""
    from dtfcli.engine.predict import predict
    from dtfcli.hub import read_manifest

    model = create_model("c2d_tiny", num_classes=2, num_frames=4, crop_size=32)
    model.config["sampling"] = "segments"
    save_pretrained(model, tmp_path / "ssv2-like", labels=["up", "down"])
    result = predict([clips["a"]], model=str(tmp_path / "ssv2-like"), fast=True, workers=0)
    assert result.views["sampling"] == "segments"
    assert len(result.predictions) == 1 and result.predictions[0].topk[0]["label"] in ("up", "down")
    # Manifests: from the label set unless they say otherwise.
    root = Path(__file__).resolve().parents[1] / "weights"
    assert read_manifest(root / "dtfnet_r50_ssv2_16f.json").model_config()["sampling"] == "segments"
    assert read_manifest(root / "dtfnet_r50_kinetics400_16f.json").model_config()["sampling"] == "dense"
