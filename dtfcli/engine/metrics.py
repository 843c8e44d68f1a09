"""Classification metrics of an evaluation, from each video's true class and ranked predictions.

Top-1 and top-5 are *micro* averages, as the video literature reports them: the share of
all evaluated videos whose true class is the first (among the first five) predictions.
Mean class accuracy is the *macro* average of per-class top-1 accuracy over the classes
that have at least one evaluated video. All three are percentages.

The confusion matrix has one row per class (the true class) and one column per class (the
predicted class), in the same order, plus a last "other" column when the model has outputs
outside those classes (a Kinetics-400 model scored on a 10-class subset can predict any of
its 400 classes). Its entries therefore sum to the number of evaluated videos, each row to
that class's support.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

OTHER = "(other)"


@dataclass
class ClassificationMetrics:
    """Metrics of ``evaluated`` videos over ``classes`` (in confusion-matrix order).

    ``per_class``: one dict per class (class, output index, support, top1, top5), accuracies
    in percent or None for a class without videos. ``confusion``: int64 (classes, classes
    [+ 1 other column]).
    """

    evaluated: int
    topk: int
    top1: float | None
    top5: float | None
    mean_class_accuracy: float | None
    classes: list[str]
    per_class: list[dict[str, Any]]
    confusion: np.ndarray
    has_other: bool

    def summary(self) -> dict[str, Any]:
        return {"top1": self.top1, "top5": self.top5, "topk": self.topk,
                "mean_class_accuracy": self.mean_class_accuracy, "evaluated": self.evaluated}

    @property
    def column_names(self) -> list[str]:
        return self.classes + ([OTHER] if self.has_other else [])


def _percent(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else 100.0 * float(numerator) / float(denominator)


def classification_metrics(targets: Sequence[int], ranked: Sequence[Sequence[int]], class_outputs: Sequence[int],
                           class_names: Sequence[str], num_outputs: int, *, topk: int = 5) -> ClassificationMetrics:
    """Metrics of videos with true model output ``targets[i]`` and predictions ``ranked[i]``
    (model output indices, most probable first, at least ``min(topk, num_outputs)`` of them).

    ``class_outputs[c]``: the model output of the c-th evaluated class (named
    ``class_names[c]``); every target must be one of them. ``num_outputs``: the model's
    class count (top-k is capped at it).
    """
    k = min(topk, num_outputs)
    targets_arr = np.asarray(targets, dtype=np.int64).reshape(-1)
    n = targets_arr.size
    ranked_arr = np.asarray([list(r)[:k] for r in ranked], dtype=np.int64).reshape(n, k) if n else np.zeros((0, k),
                                                                                                            np.int64)
    row_of = {int(o): c for c, o in enumerate(class_outputs)}
    if len(row_of) != len(class_outputs):
        raise ValueError("two evaluated classes map to the same model output")
    unknown = set(targets_arr.tolist()) - row_of.keys()
    if unknown:
        raise ValueError(f"targets {sorted(unknown)[:5]} are not among the evaluated classes' outputs")
    hit1 = ranked_arr[:, 0] == targets_arr if n else np.zeros(0, bool)
    hitk = (ranked_arr == targets_arr[:, None]).any(axis=1) if n else np.zeros(0, bool)

    num_classes = len(class_outputs)
    has_other = num_outputs > num_classes
    rows = np.array([row_of[int(t)] for t in targets_arr], dtype=np.int64)
    cols = np.array([row_of.get(int(p), num_classes) for p in ranked_arr[:, 0]], dtype=np.int64) if n else rows
    confusion = np.zeros((num_classes, num_classes + int(has_other)), dtype=np.int64)
    np.add.at(confusion, (rows, cols), 1)

    support = np.bincount(rows, minlength=num_classes)
    correct1 = np.bincount(rows, weights=hit1.astype(np.float64), minlength=num_classes)
    correctk = np.bincount(rows, weights=hitk.astype(np.float64), minlength=num_classes)
    per_class = [{"class": class_names[c], "output": int(class_outputs[c]), "support": int(support[c]),
                  "top1": _percent(correct1[c], support[c]), "top5": _percent(correctk[c], support[c])}
                 for c in range(num_classes)]
    with_videos = support > 0
    mean_class = float(100.0 * np.mean(correct1[with_videos] / support[with_videos])) if with_videos.any() else None
    return ClassificationMetrics(
        evaluated=int(n), topk=k, top1=_percent(hit1.sum(), n), top5=_percent(hitk.sum(), n),
        mean_class_accuracy=mean_class, classes=list(class_names), per_class=per_class, confusion=confusion,
        has_other=has_other)


def top_confusions(metrics: ClassificationMetrics, limit: int = 20) -> list[dict[str, Any]]:
    """The largest off-diagonal cells of the confusion matrix: true class, predicted class,
    count, and the share of the true class's videos (percent); largest first."""
    matrix = metrics.confusion
    names = metrics.column_names
    cells = []
    for r, c in zip(*np.nonzero(matrix), strict=True):
        if r != c and matrix[r, c] > 0:
            cells.append((int(matrix[r, c]), int(r), int(c)))
    cells.sort(key=lambda x: (-x[0], x[1], x[2]))
    support = matrix.sum(axis=1)
    return [{"true": names[r], "predicted": names[c], "true_index": r, "predicted_index": c, "count": n,
             "share": 100.0 * n / int(support[r])} for n, r, c in cells[:limit]]
