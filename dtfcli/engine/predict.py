"""`predict`: classify video files with a model, from Python or from `dtf predict`.

    >>> from dtfcli.engine.predict import predict                      # doctest: +SKIP
    >>> result = predict(["clip.mp4"], model="runs/synth/final")       # doctest: +SKIP
    >>> result.predictions[0].topk[0]                                  # doctest: +SKIP
    {'index': 3, 'label': 'Moving something up', 'prob': 0.97}

Every video is classified from the model's test views (see :mod:`dtfcli.engine.inference`);
videos that cannot be read are skipped and listed with their reasons, never fatal. With
``window`` a long video gets one prediction per window of that many seconds, plus the
segments over which the top label holds.
"""

from __future__ import annotations

import glob
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dtfcli.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoDecodeError, open_video
from dtfcli.engine.inference import (
    InferenceModel,
    VideoViews,
    fuse,
    iterate_views,
    load_inference_model,
    topk,
    view_logits,
    view_spec_for,
    windows,
)


@dataclass
class VideoPrediction:
    """One video's result: ``topk`` [{"index", "label", "prob"}], the decoding facts
    (frames, fps, duration, backend), the seconds it took; with windows, ``windows`` (one
    dict per window: start, end, topk) and ``segments`` (runs of windows with one top label)."""

    path: str
    topk: list[dict[str, Any]]
    video: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    windows: list[dict[str, Any]] | None = None
    segments: list[dict[str, Any]] | None = None


@dataclass
class PredictResult:
    """Everything a run produced; :meth:`to_dict` is the JSON document of `dtf predict --json`."""

    model: dict[str, Any]
    views: dict[str, Any]
    fusion: str
    device: str
    predictions: list[VideoPrediction]
    skipped: list[tuple[str, str]]
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def videos_per_second(self) -> float:
        return len(self.predictions) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "views": self.views, "fusion": self.fusion, "device": self.device,
            "videos": [asdict(p) for p in self.predictions],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "counts": {"given": len(self.predictions) + len(self.skipped), "predicted": len(self.predictions),
                       "skipped": len(self.skipped)},
            "seconds": round(self.seconds, 3), "videos_per_second": round(self.videos_per_second, 3),
            "versions": self.versions,
        }


# -- inputs -------------------------------------------------------------------------------------
#: Extensions of video files that a folder search picks up besides those the readers are
#: proven on (``VIDEO_EXTENSIONS``): the reader decides from the file's content whether and
#: how it can be read, so a rarer container gets a prediction or a reason, never silence.
OTHER_VIDEO_EXTENSIONS = (".ts", ".mts", ".m2ts", ".wmv", ".asf", ".vob", ".f4v", ".divx", ".ogg", ".mxf",
                          ".rm", ".rmvb", ".y4m", ".h264", ".264", ".hevc", ".mjpeg", ".mjpg", ".dv", ".nut")


def _is_frame_folder(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


def _videos_in(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    extensions = set(VIDEO_EXTENSIONS) | set(OTHER_VIDEO_EXTENSIONS)
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in extensions
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _list_file(path: Path) -> list[str]:
    """Paths in a list file, one per line ('#' comments); relative ones are taken from the
    current folder when they exist there, else from the list file's folder."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        if not entry.is_absolute() and not entry.exists():
            entry = path.parent / entry
        out.append(str(entry))
    return out


def collect_inputs(inputs: Sequence[str | os.PathLike], *, recursive: bool = False
                   ) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand what a user typed into video paths: files, folders (their video files; with
    ``recursive`` also in sub-folders), glob patterns, and ``@list.txt`` files. A folder of
    images only is one video (its frames). Returns (paths in order, without repeats,
    [(input, reason)] for inputs that name nothing)."""
    paths: list[str] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(p: str | Path) -> None:
        key = os.path.normpath(str(p))
        if key not in seen:
            seen.add(key)
            paths.append(str(p))

    for raw in inputs:
        text = str(raw)
        if text.startswith("@") and not Path(text).exists():
            list_path = Path(text[1:]).expanduser()
            if not list_path.is_file():
                problems.append((text, "no such list file"))
                continue
            sub_paths, sub_problems = collect_inputs(_list_file(list_path), recursive=recursive)
            for p in sub_paths:
                add(p)
            problems.extend(sub_problems)
            continue
        path = Path(text).expanduser()
        if not path.exists() and glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                problems.append((text, "no file matches this pattern"))
            for m in matches:
                mp = Path(m)
                if mp.is_file():
                    add(mp)
                elif mp.is_dir():
                    for v in _videos_in(mp, recursive):
                        add(v)
            continue
        if path.is_dir():
            videos = _videos_in(path, recursive)
            if videos:
                for v in videos:
                    add(v)
            elif _is_frame_folder(path):
                add(path)
            else:
                hint = "" if recursive or not any(p.is_dir() for p in path.iterdir()) else " (-r searches sub-folders)"
                problems.append((text, f"folder has no video files{hint}"))
            continue
        if not path.exists():
            problems.append((text, "no such file or folder"))
            continue
        add(path)
    return paths, problems


# -- the run ------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import torchvision

    from dtfcli import __version__

    return {"dtf": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}


def model_summary(engine: InferenceModel) -> dict[str, Any]:
    info = engine.info
    return {"source": info.source, "kind": info.kind, "name": info.config.get("name"),
            "location": info.location, "sha256": info.sha256, "num_classes": engine.num_classes,
            "random_weights": engine.random_weights}


def _segments(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of consecutive windows with the same top label: start, end, label, mean prob."""
    out: list[dict[str, Any]] = []
    for row in rows:
        best = row["topk"][0]
        if out and out[-1]["label"] == best["label"]:
            seg = out[-1]
            seg["end"] = row["end"]
            seg["windows"] += 1
            seg["mean_prob"] += (best["prob"] - seg["mean_prob"]) / seg["windows"]
        else:
            out.append({"start": row["start"], "end": row["end"], "label": best["label"],
                        "index": best["index"], "mean_prob": best["prob"], "windows": 1})
    for seg in out:
        seg["mean_prob"] = round(seg["mean_prob"], 6)
    return out


def predict(
    inputs: Sequence[str | os.PathLike],
    *,
    model: str | InferenceModel | None = None,
    recursive: bool = False,
    clips: int | None = None,
    crops: int | None = None,
    fast: bool = False,
    symmetries: bool = True,
    fusion: str = "prob",
    k: int = 5,
    view_batch: int | None = None,
    workers: int = 2,
    device: str = "auto",
    amp: bool = False,
    backend: str = "auto",
    window: float | None = None,
    stride: float | None = None,
    on_video: Callable[[int, int, VideoPrediction | None, tuple[str, str] | None], None] | None = None,
) -> PredictResult:
    """Classify videos.

    Args:
        inputs: files, folders, glob patterns, ``@list.txt`` (see :func:`collect_inputs`).
        model: anything ``dtfcli.hub.load_model`` takes, a loaded :class:`InferenceModel`,
            or None for the embedded default model.
        clips, crops, fast: the views (default: the model's own protocol; ``fast`` = 1 x 1).
        symmetries: False leaves out the symmetric views (mirrored, reversed) that the model's
            config may list (`dtfcli.data.symmetry`).
        fusion: "prob" (mean of the views' softmax) or "logit" (softmax of the mean logit).
        k: how many classes to report per video.
        view_batch: views per forward pass (default by device); workers: decoding processes.
        window, stride: seconds; one prediction per window along each video (default
            views per window: 1 clip x the model's crops unless ``clips`` is given).
        on_video: called after each video as (done, total, prediction or None, skipped or None).

    Returns:
        :class:`PredictResult`; unreadable inputs are in ``skipped`` with their reasons.
    """
    started = time.perf_counter()
    engine = model if isinstance(model, InferenceModel) else load_inference_model(model, device=device, amp=amp)
    if window is not None and clips is None:
        clips = 1
    spec = view_spec_for(engine.info.config, clips=clips, crops=crops, fast=fast, symmetries=symmetries)
    fuse(torch.zeros(1, 2), fusion)  # reject an unknown fusion before any decoding
    paths, skipped = collect_inputs(inputs, recursive=recursive)
    total = len(paths)

    item_paths: list[str] = []
    spans: list[tuple[float, float] | None] = []
    owner: list[int] = []  # video number of each item
    if window is None:
        item_paths, spans, owner = list(paths), [None] * len(paths), list(range(len(paths)))
    else:
        for n, path in enumerate(paths):
            try:
                with open_video(path, backend) as reader:
                    duration = reader.duration
            except VideoDecodeError as exc:
                skipped.append((path, exc.reason))
                continue
            for span in windows(duration, window, stride):
                item_paths.append(path)
                spans.append(span)
                owner.append(n)

    dataset = VideoViews(item_paths, spec, backend=backend, spans=spans)
    predictions: list[VideoPrediction] = []
    pending: dict[int, list[dict[str, Any]]] = {}
    failed: set[int] = set()
    done = 0
    last_item_of = {}
    for i, n in enumerate(owner):
        last_item_of[n] = i
    tick = time.perf_counter()
    for item in iterate_views(dataset, workers=workers):
        n = owner[item["index"]]
        if "error" in item:
            if n not in failed:
                failed.add(n)
                skipped.append((item["path"], item["error"]))
                pending.pop(n, None)
                done += 1
                if on_video:
                    on_video(done, total, None, (item["path"], item["error"]))
            continue
        if n in failed:
            continue
        probs = fuse(view_logits(engine, item["views"], spec, view_batch), fusion)
        best = topk(probs, engine.labels, k)
        if window is None:
            now = time.perf_counter()
            pred = VideoPrediction(item["path"], best, item["video"], round(now - tick, 4))
            tick = now
            predictions.append(pred)
            done += 1
            if on_video:
                on_video(done, total, pred, None)
            continue
        start, end = spans[item["index"]]
        pending.setdefault(n, []).append({"start": start, "end": end, "topk": best, "_probs": probs})
        if item["index"] == last_item_of[n]:
            rows = pending.pop(n)
            video_probs = torch.stack([r.pop("_probs") for r in rows]).mean(dim=0)
            now = time.perf_counter()
            pred = VideoPrediction(item["path"], topk(video_probs, engine.labels, k), item["video"],
                                   round(now - tick, 4), windows=rows, segments=_segments(rows))
            tick = now
            predictions.append(pred)
            done += 1
            if on_video:
                on_video(done, total, pred, None)
    return PredictResult(
        model=model_summary(engine), views=spec.to_dict(), fusion=fusion, device=str(engine.device),
        predictions=predictions, skipped=skipped, seconds=time.perf_counter() - started, versions=versions(),
    )


def prediction_rows(result: PredictResult, k: int) -> list[dict[str, Any]]:
    """Flat rows for CSV: one per video (or per window), ``label_1, prob_1, ...``; skipped
    videos get a row with their reason."""
    rows: list[dict[str, Any]] = []

    def row(path: str, best: list[dict[str, Any]], start=None, end=None) -> dict[str, Any]:
        out: dict[str, Any] = {"path": path, "start": start, "end": end, "error": ""}
        for r in range(k):
            out[f"label_{r + 1}"] = best[r]["label"] if r < len(best) else ""
            out[f"prob_{r + 1}"] = f"{best[r]['prob']:.6f}" if r < len(best) else ""
        return out

    for pred in result.predictions:
        if pred.windows is None:
            rows.append(row(pred.path, pred.topk))
        else:
            rows.extend(row(pred.path, w["topk"], w["start"], w["end"]) for w in pred.windows)
    for path, reason in result.skipped:
        empty = row(path, [])
        empty["error"] = reason
        rows.append(empty)
    return rows
