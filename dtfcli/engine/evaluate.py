"""`dtf eval` as a library function: a model scored on a dataset's labelled videos.

    >>> from dtfcli.engine.evaluate import evaluate              # doctest: +SKIP
    >>> report = evaluate("hf://org/dtf-ssv2", "ssv2", "data/ssv2", split="val", out_dir="runs/eval/ssv2-val")
    >>> report.metrics["top1"], report.counts["skipped"]         # doctest: +SKIP

Each video is classified from the model's test views (see dtfcli.engine.inference), its
dataset class is mapped to the model's outputs by name, and the results go to ``out_dir``:

    predictions.csv   one row per video, written as it is done (see eval_store)
    state.json        what the run is, so that the same call again resumes it
    report.json       counts, metrics, per-class accuracy, skipped videos, versions, timing
    per_class.csv     class, model output, support, top-1 and top-5 accuracy
    confusion.csv/.json/.png   the confusion matrix (see metrics and confusion_plot)

The report is computed from the rows of predictions.csv only, so a run resumed any number
of times ends with the same report as an uninterrupted one. Under ``torchrun`` every
process evaluates its share of the videos (see dtfcli.engine.distributed); rank 0 gathers
the rows every ``sync_every`` videos, is the only one to write files, and every process
returns the same report.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dtfcli.engine import distributed
from dtfcli.engine.eval_store import (
    OUTPUT_FILES,
    PREDICTIONS,
    REPORT,
    STATE,
    STATE_FORMAT,
    EvalError,
    PredictionWriter,
    VideoResult,
    clear_run,
    load_state,
    read_predictions,
    rewrite_predictions,
    write_json_atomic,
)
from dtfcli.engine.metrics import classification_metrics, top_confusions

Progress = Callable[[int, int], None]

__all__ = ["EvalError", "EvalReport", "evaluate", "default_out_dir", "OUTPUT_FILES"]


@dataclass
class EvalReport:
    """What report.json holds (see :meth:`to_dict`); metrics in percent."""

    model: dict[str, Any]
    views: dict[str, Any]
    fusion: str
    dataset: dict[str, Any]
    counts: dict[str, int]
    metrics: dict[str, Any]
    per_class: list[dict[str, Any]]
    top_confusions: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    missing: list[dict[str, Any]]
    excluded_classes: list[str]
    run: dict[str, Any]
    versions: dict[str, str]
    files: dict[str, str]
    out_dir: str
    confusion: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def complete(self) -> bool:
        """Every selected video has a result (evaluated or skipped)."""
        return self.counts["pending"] == 0

    @property
    def problems(self) -> int:
        """Videos that were listed but could not be evaluated: skipped plus missing."""
        return self.counts["skipped"] + self.counts["missing"]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("confusion")
        return out


def default_out_dir(dataset: str, split: str, fold: int | None = None) -> Path:
    """``runs/eval/<dataset>-<split>[-fold<N>]`` under the current folder."""
    name = f"{dataset}-{split}" + (f"-fold{fold}" if dataset in ("ucf101", "hmdb51") and fold else "")
    return Path("runs") / "eval" / name


def _versions() -> dict[str, str]:
    import torchvision

    from dtfcli import __version__

    return {"dtf": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _weights_fingerprint(model) -> str:
    """The weights' file sha256, or for a model without a file (random weights) a hash of
    its tensors."""
    if model.info.sha256:
        return str(model.info.sha256)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "tensors:" + digest.hexdigest()


def _map_classes(dataset_classes: list[str], model_labels: list[str], ignore_missing: bool) -> list[int | None]:
    """Each dataset class's model output (None: the model lacks it and ``ignore_missing``)."""
    from dtfcli.data import label_mapping, normalize_label

    try:
        return [int(x) for x in label_mapping(dataset_classes, model_labels)]
    except ValueError as exc:
        if not ignore_missing:
            raise EvalError(f"{exc}; --ignore-missing-classes leaves their videos out") from None
    index: dict[str, int] = {}
    for i, name in enumerate(model_labels):
        index.setdefault(normalize_label(name), i)
    return [index.get(normalize_label(name)) for name in dataset_classes]


@dataclass
class _Plan:
    """The videos of this run: ``selected`` (dataset index, target output) in order."""

    selected: list[tuple[int, int]]
    paths: list[str]
    class_outputs: list[int]
    class_names: list[str]
    excluded_classes: list[str]
    excluded_videos: int
    beyond_limit: int
    missing: list[str]
    listed: int
    samples_sha256: str


def _plan(dataset, labels: list[str], ignore_missing: bool, limit: int | None) -> _Plan:
    outputs = _map_classes(dataset.classes, labels, ignore_missing)
    if any(sample.label < 0 for sample in dataset.samples):
        raise EvalError(f"{dataset.name}: this split has videos without labels; evaluate a labelled split "
                        "(dtf predict classifies unlabelled videos)")
    selected, excluded_videos = [], 0
    for i, sample in enumerate(dataset.samples):
        output = outputs[sample.label]
        if output is None:
            excluded_videos += 1
        else:
            selected.append((i, output))
    beyond = max(0, len(selected) - limit) if limit is not None else 0
    if limit is not None:
        selected = selected[:limit]
    kept = [c for c, o in enumerate(outputs) if o is not None]
    listing = "\n".join(f"{s.path}\t{dataset.classes[s.label]}" for s in dataset.samples)
    return _Plan(selected=selected, paths=[s.path for s in dataset.samples],
                 class_outputs=[outputs[c] for c in kept], class_names=[labels[outputs[c]] for c in kept],
                 excluded_classes=[dataset.classes[c] for c, o in enumerate(outputs) if o is None],
                 excluded_videos=excluded_videos, beyond_limit=beyond, missing=list(dataset.missing),
                 listed=len(dataset.samples) + len(dataset.missing), samples_sha256=_sha256_text(listing))


def _classify(model, item: dict, target: int, spec, fusion: str, view_batch: int | None) -> VideoResult:
    from dtfcli.engine.inference import fuse, view_logits

    if "error" in item:
        return VideoResult(item["index"], item["path"], target, error=str(item["error"]))
    try:
        logits = view_logits(model, item["views"], spec, view_batch)
    except torch.cuda.OutOfMemoryError:  # the same class as torch.OutOfMemoryError
        raise EvalError(f"{item['path']}: out of memory for {spec.num_views} views on {model.device}; "
                        "lower --view-batch (the videos done so far are saved)") from None
    probs = fuse(logits, fusion)
    values, indices = probs.topk(min(5, probs.numel()))
    return VideoResult(item["index"], item["path"], target, [int(i) for i in indices], [float(v) for v in values])


def evaluate(model: Any, dataset: str, root: str | Path, *, split: str = "val", fold: int = 1,
             out_dir: str | Path | None = None, clips: int | None = None, crops: int | None = None,
             fast: bool = False, symmetries: bool = True, fusion: str = "prob", view_batch: int | None = None,
             workers: int = 2, device: str = "auto", amp: bool = False, backend: str = "auto", limit: int | None = None,
             strict: bool = False, restart: bool = False, ignore_missing_classes: bool = False,
             sync_every: int = 8, progress: Progress | None = None) -> EvalReport:
    """Evaluate ``model`` (anything ``load_inference_model`` takes, or an InferenceModel) on
    the labelled videos of ``dataset`` (a name of dtfcli.data.DATASETS) under ``root``.

    ``clips``/``crops``/``fast``: the test views (default: the model's own protocol);
    ``symmetries=False``: without the symmetric views a model's config may list;
    ``fusion``: "prob" or "logit" (see dtfcli.engine.inference.fuse); ``limit``: only the
    first N videos; ``strict``: stop at the first unreadable video (EvalError); ``restart``:
    discard an earlier run in ``out_dir`` instead of resuming it; ``ignore_missing_classes``:
    leave out videos of classes the model lacks (else an error naming them);
    ``progress(done, total)``: called as videos are done (on rank 0).

    Returns the report (also written to ``out_dir``/report.json). Raises EvalError for a run
    that cannot go on (another run in ``out_dir``, classes the model lacks, --strict).
    """
    from dtfcli.engine.inference import InferenceModel, resolve_device

    if fusion not in ("prob", "logit"):
        raise EvalError(f"fusion must be 'prob' or 'logit', not {fusion!r}")
    if limit is not None and limit < 1:
        raise EvalError("limit must be at least 1")
    if isinstance(model, InferenceModel):
        device_type = model.device.type
    else:
        target_device = resolve_device(device)
        if distributed.launched_world_size() > 1 and target_device.type == "cuda" and target_device.index is None:
            target_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        device, device_type = target_device, target_device.type
    group = distributed.setup(device_type)
    try:
        return _run(model, dataset, Path(root), split=split, fold=fold, out_dir=out_dir, clips=clips, crops=crops,
                    fast=fast, symmetries=symmetries, fusion=fusion, view_batch=view_batch, workers=workers,
                    device=device, amp=amp, backend=backend, limit=limit, strict=strict, restart=restart,
                    ignore_missing_classes=ignore_missing_classes, sync_every=max(1, sync_every),
                    progress=progress, group=group)
    finally:
        group.close()


def _run(model, dataset_name, root, *, split, fold, out_dir, clips, crops, fast, symmetries, fusion, view_batch,
         workers, device, amp, backend, limit, strict, restart, ignore_missing_classes, sync_every, progress, group):
    from dtfcli.data import build_dataset
    from dtfcli.engine.inference import InferenceModel, VideoViews, iterate_views, load_inference_model, view_spec_for

    started_at, started = datetime.now(timezone.utc), time.perf_counter()
    inference = model if isinstance(model, InferenceModel) else load_inference_model(model, device=device, amp=amp)
    spec = view_spec_for(inference.info.config, clips=clips, crops=crops, fast=fast, symmetries=symmetries)
    dataset = build_dataset(dataset_name, root, split, fold=fold)
    labels = inference.labels
    plan = _plan(dataset, labels, ignore_missing_classes, limit)
    if strict and plan.missing:
        raise EvalError(f"{plan.missing[0]}: listed in the annotations but not found ({len(plan.missing)} such "
                        "videos; stopped by --strict)")
    out = Path(out_dir) if out_dir is not None else default_out_dir(dataset_name, split, fold)
    uses_fold = dataset_name in ("ucf101", "hmdb51")
    fingerprint = {
        "model_sha256": _weights_fingerprint(inference), "labels": _sha256_text("\n".join(labels)),
        "views": spec.to_dict(), "fusion": fusion, "amp": inference.amp_dtype is not None,
        "dataset": dataset_name, "split": split, "fold": fold if uses_fold else None,
        "root": str(root.resolve()), "samples_sha256": plan.samples_sha256,
    }

    # Rank 0 reads what an earlier run left and tells the others which videos are done.
    previous: dict[int, VideoResult] = {}
    state: dict[str, Any] = {}
    message = None
    if group.is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            if restart:
                clear_run(out)
            state = load_state(out, fingerprint) or {}
            previous = read_predictions(out / PREDICTIONS, labels) if state else {}
            state = {"format": STATE_FORMAT, "fingerprint": fingerprint,
                     "elapsed_seconds": float(state.get("elapsed_seconds", 0.0)), "runs": int(state.get("runs", 0)) + 1}
            write_json_atomic(out / STATE, state)
        except (EvalError, OSError) as exc:
            message = str(exc) if isinstance(exc, EvalError) else f"{out}: {exc.strerror or exc}"
    shared = distributed.broadcast({"error": message, "done": sorted(previous)}, group)
    if shared["error"]:
        raise EvalError(shared["error"])
    done = set(shared["done"])
    todo = [(i, target) for i, target in plan.selected if i not in done]
    mine = distributed.shard(todo, group)
    steps = distributed.rounds(len(todo), group)
    total = len(plan.selected)
    finished_before = total - len(todo)
    if progress and group.is_main:
        progress(finished_before, total)

    writer = PredictionWriter(out / PREDICTIONS, labels) if group.is_main else None
    results = dict(previous)
    new_rows = 0
    views = VideoViews(plan.paths, spec, backend=backend)
    items = iterate_views(views, workers=workers, indices=[i for i, _ in mine])
    pending: list[VideoResult] = []
    try:
        for step in range(steps):
            if step < len(mine):
                item = next(items)
                result = _classify(inference, item, mine[step][1], spec, fusion, view_batch)
                if result.error and strict and not group.distributed:
                    raise EvalError(f"{result.path}: {result.error} (stopped by --strict; earlier videos are "
                                    f"saved in {out / PREDICTIONS})")
                pending.append(result)
                if progress and group.is_main and group.distributed:  # own videos only: never ahead of the truth
                    progress(finished_before + new_rows + len(pending), total)
            if not group.distributed:
                writer.write(pending)
                results.update((r.index, r) for r in pending)
                new_rows += len(pending)
                pending = []
                if progress:
                    progress(finished_before + new_rows, total)
            elif (step + 1) % sync_every == 0 or step == steps - 1:
                gathered = sorted((r for part in distributed.all_gather(pending, group) for r in part),
                                  key=lambda r: r.index)
                pending = []
                failed = [r for r in gathered if r.error]
                keep = [r for r in gathered if not r.error] if strict else gathered
                if group.is_main:
                    writer.write(keep)
                    results.update((r.index, r) for r in keep)
                    if progress:
                        progress(finished_before + new_rows + len(keep), total)
                new_rows += len(keep)
                if strict and failed:
                    raise EvalError(f"{failed[0].path}: {failed[0].error} (stopped by --strict; other videos are "
                                    f"saved in {out / PREDICTIONS})")
    finally:
        if writer is not None:
            writer.close()
            this_run_logged = time.perf_counter() - started
            state["elapsed_seconds"] = state.get("elapsed_seconds", 0.0) + this_run_logged
            write_json_atomic(out / STATE, state)

    report = None
    if group.is_main:
        seconds = time.perf_counter() - started
        state["elapsed_seconds"] = state.get("elapsed_seconds", 0.0) + seconds - this_run_logged
        report = _report(inference, spec, fusion, dataset_name, split, fold if uses_fold else None, root, plan,
                         results, out, started_at, seconds, state["elapsed_seconds"], new_rows, group)
        rewrite_predictions(out / PREDICTIONS, list(results.values()), labels)
        _write_outputs(report, out)
        state["complete"] = report.complete
        write_json_atomic(out / STATE, state)
    data = distributed.broadcast(None if report is None else (report.to_dict(), report.confusion), group)
    if report is None:
        report = EvalReport(**data[0], confusion=data[1])
    return report


def _report(inference, spec, fusion, dataset_name, split, fold, root, plan: _Plan, results: dict[int, VideoResult],
            out: Path, started_at, seconds, total_seconds, new_rows, group) -> EvalReport:
    chosen = [results[i] for i, _ in plan.selected if i in results]
    good = [r for r in chosen if not r.error]
    metrics = classification_metrics([r.target for r in good], [r.ranked for r in good], plan.class_outputs,
                                     plan.class_names, len(inference.labels))
    counts = {"listed": plan.listed, "missing": len(plan.missing), "excluded": plan.excluded_videos,
              "beyond_limit": plan.beyond_limit, "selected": len(plan.selected), "evaluated": len(good),
              "skipped": len(chosen) - len(good), "pending": len(plan.selected) - len(chosen)}
    config = inference.info.config
    return EvalReport(
        model={"source": inference.info.source, "sha256": inference.info.sha256, "name": config.get("name"),
               "classes": len(inference.labels), "random_weights": bool(getattr(inference, "random_weights", False))},
        views={**spec.to_dict(), "views_per_video": spec.num_views},
        fusion=fusion,
        dataset={"name": dataset_name, "split": split, "fold": fold, "root": str(root.resolve()),
                 "classes": len(plan.class_names)},
        counts=counts,
        metrics=metrics.summary(),
        per_class=metrics.per_class,
        top_confusions=top_confusions(metrics, 50),
        skipped=[{"index": r.index, "path": r.path, "reason": r.error} for r in chosen if r.error],
        missing=[{"path": p, "reason": "file not found"} for p in plan.missing],
        excluded_classes=plan.excluded_classes,
        run={"device": str(inference.device), "amp": inference.amp_dtype is not None, "processes": group.world_size,
             "started": started_at.isoformat(timespec="seconds"), "seconds": round(seconds, 3),
             "videos_this_run": new_rows,
             "videos_per_second": round(new_rows / seconds, 3) if seconds > 0 and new_rows else None,
             "total_seconds": round(total_seconds, 3)},
        versions=_versions(),
        files={"predictions": PREDICTIONS, "state": STATE, "report": REPORT, "per_class": "per_class.csv",
               "confusion_csv": "confusion.csv", "confusion_json": "confusion.json", "confusion_png": "confusion.png"},
        out_dir=str(out),
        confusion={"rows": metrics.classes, "columns": metrics.column_names,
                   "matrix": metrics.confusion.tolist()},
    )


def _write_outputs(report: EvalReport, out: Path) -> None:
    from dtfcli.engine.confusion_plot import plot_confusion

    write_json_atomic(out / REPORT, report.to_dict())
    with open(out / "per_class.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["class", "output", "support", "top1", "top5"])
        for row in report.per_class:
            writer.writerow([row["class"], row["output"], row["support"],
                             "" if row["top1"] is None else f"{row['top1']:.4f}",
                             "" if row["top5"] is None else f"{row['top5']:.4f}"])
    matrix = report.confusion
    with open(out / "confusion.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["true \\ predicted", *matrix["columns"]])
        for name, row in zip(matrix["rows"], matrix["matrix"], strict=True):
            writer.writerow([name, *row])
    (out / "confusion.json").write_text(json.dumps(matrix) + "\n", encoding="utf-8")
    top1 = report.metrics["top1"]
    title = (f"{report.model['name']} on {report.dataset['name']} {report.dataset['split']}: "
             + (f"top-1 {top1:.1f}% of {report.counts['evaluated']} videos" if top1 is not None else "no videos"))
    plot_confusion(matrix["matrix"], matrix["columns"], out / "confusion.png", title=title,
                   confusions=report.top_confusions)
