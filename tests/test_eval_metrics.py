"""`dtf eval`'s parts that need no model: metrics, the predictions file, run fingerprints,
sharding and the confusion plot."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dtfcli.engine.distributed import ProcessGroup, rounds, shard
from dtfcli.engine.eval_store import (
    PREDICTIONS,
    EvalError,
    PredictionWriter,
    VideoResult,
    load_state,
    read_predictions,
    write_json_atomic,
)
from dtfcli.engine.metrics import OTHER, classification_metrics, top_confusions


def _reference(targets, ranked, classes):
    """Plain-loop definitions: micro top-1/top-5 over videos, macro mean over classes."""
    top1 = sum(r[0] == t for t, r in zip(targets, ranked, strict=False)) / len(targets) * 100
    top5 = sum(t in r[:5] for t, r in zip(targets, ranked, strict=False)) / len(targets) * 100
    accs = []
    for c in classes:
        mine = [r[0] == t for t, r in zip(targets, ranked, strict=False) if t == c]
        if mine:
            accs.append(sum(mine) / len(mine))
    return top1, top5, sum(accs) / len(accs) * 100


def test_metrics_match_plain_definitions_on_imbalanced_data():
    rng = random.Random(0)
    outputs = [4, 0, 7, 2]  # evaluated classes' model outputs, not in output order
    names = ["d", "a", "h", "c"]
    # Imbalanced: class 4 has 30 videos, the others 3 each, so micro and macro averages differ.
    targets = [4] * 30 + [0] * 3 + [7] * 3 + [2] * 3
    ranked = []
    for t in targets:
        order = rng.sample(range(8), 8)
        if rng.random() < (0.8 if t == 4 else 0.2):
            order.remove(t)
            order.insert(0, t)
        ranked.append(order[:5])
    m = classification_metrics(targets, ranked, outputs, names, num_outputs=8)
    top1, top5, mean_class = _reference(targets, ranked, outputs)
    assert m.top1 == pytest.approx(top1) and m.top5 == pytest.approx(top5)
    assert m.mean_class_accuracy == pytest.approx(mean_class)
    assert abs(m.top1 - m.mean_class_accuracy) > 5  # the data really tells micro from macro
    # Confusion: rows are true classes (in `outputs` order), an "other" column for outputs 1, 3, 5, 6.
    assert m.has_other and m.column_names == names + [OTHER]
    assert m.confusion.shape == (4, 5) and m.confusion.sum() == len(targets)
    assert m.confusion.sum(axis=1).tolist() == [30, 3, 3, 3]
    others = sum(r[0] not in outputs for r in ranked)
    assert m.confusion[:, 4].sum() == others
    row_of = {o: i for i, o in enumerate(outputs)}
    for t, r in zip(targets, ranked, strict=False):
        if r[0] == t:
            continue
        assert m.confusion[row_of[t], row_of.get(r[0], 4)] > 0
    assert [p["support"] for p in m.per_class] == [30, 3, 3, 3]
    assert m.per_class[0]["top1"] == pytest.approx(100 * sum(r[0] == 4 for r in ranked[:30]) / 30)
    assert sum(c["count"] for c in top_confusions(m, 1000)) == len(targets) - int(np.trace(m.confusion[:, :4]))


def test_metrics_cap_topk_at_the_class_count_and_skip_empty_classes():
    m = classification_metrics([0, 0, 1], [[1, 0, 2], [0, 1, 2], [2, 1, 0]], [0, 1, 2], ["x", "y", "z"], 3)
    assert m.topk == 3 and m.top5 == 100.0
    assert m.top1 == pytest.approx(100 / 3)
    assert m.per_class[2]["support"] == 0 and m.per_class[2]["top1"] is None
    assert m.mean_class_accuracy == pytest.approx(25.0)  # (1/2 + 0/1) / 2: class z has no videos
    assert not m.has_other and m.confusion.shape == (3, 3)


def test_predictions_file_survives_a_cut_last_line(tmp_path):
    labels = ["a", "b, with comma", "c"]
    path = tmp_path / PREDICTIONS
    writer = PredictionWriter(path, labels)
    writer.write([VideoResult(0, "x/0.mp4", 1, [1, 0, 2], [0.5, 0.3, 0.2]),
                  VideoResult(3, "x/3 \"q\".mp4", 2, error="no video stream")])
    writer.close()
    whole = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(b"5,x/5.mp4,a,c,0.9")  # killed while writing this row
    rows = read_predictions(path, labels)
    assert sorted(rows) == [0, 3]
    assert rows[0].ranked == [1, 0, 2] and rows[0].probs == pytest.approx([0.5, 0.3, 0.2]) and rows[0].target == 1
    assert rows[3].error == "no video stream" and rows[3].path == 'x/3 "q".mp4' and rows[3].ranked == []
    assert path.read_bytes() == whole  # the cut line is gone, so appending starts on a fresh line
    with open(path, "a") as fh:
        fh.write("6,x/6.mp4,a\n")
    with pytest.raises(EvalError, match=rf"{PREDICTIONS}:4: unreadable row"):
        read_predictions(path, labels)


def test_a_run_with_another_model_or_views_is_refused(tmp_path):
    fingerprint = {"model_sha256": "a" * 64, "views": {"clips": 2}, "dataset": "ssv2"}
    assert load_state(tmp_path, fingerprint) is None
    write_json_atomic(tmp_path / "state.json", {"format": 1, "fingerprint": fingerprint})
    assert load_state(tmp_path, dict(fingerprint))["fingerprint"] == fingerprint
    with pytest.raises(EvalError, match=r"another model \(weights sha256\).*--restart"):
        load_state(tmp_path, {**fingerprint, "model_sha256": "b" * 64})
    with pytest.raises(EvalError, match=r"another views"):
        load_state(tmp_path, {**fingerprint, "views": {"clips": 3}})
    (tmp_path / "state.json").unlink()
    (tmp_path / PREDICTIONS).write_text("index,path\n1,x\n")
    with pytest.raises(EvalError, match="without its state.json"):
        load_state(tmp_path, fingerprint)


@pytest.mark.parametrize("count,world", [(7, 2), (7, 3), (2, 4), (0, 2)])
def test_sharding_takes_every_item_once_without_padding(count, world):
    items = list(range(100, 100 + count))
    parts = [shard(items, ProcessGroup(rank=r, world_size=world)) for r in range(world)]
    assert sorted(x for p in parts for x in p) == items
    assert max((len(p) for p in parts), default=0) == rounds(count, ProcessGroup(rank=0, world_size=world))


def test_confusion_png_for_few_and_many_classes(tmp_path):
    from dtfcli.engine.confusion_plot import plot_confusion

    for classes in (12, 400):
        rng = np.random.default_rng(classes)
        targets = rng.integers(0, classes, 4 * classes)
        ranked = [[t if rng.random() < 0.5 else int(rng.integers(0, classes))] for t in targets]
        m = classification_metrics(targets, ranked, list(range(classes)), [f"class {i}" for i in range(classes)],
                                   classes, topk=1)
        path = plot_confusion(m.confusion, m.column_names, tmp_path / f"c{classes}.png", title="t",
                              confusions=top_confusions(m))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
