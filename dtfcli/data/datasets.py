"""Datasets in the layouts the public releases ship, read from the releases' own files.

Each parser returns a list of :class:`Sample` (path, label index) and the class names in
the dataset's order; :class:`VideoDataset` reads and transforms them.  Class order differs
between codebases, so evaluation must map a dataset's labels to a model's outputs by name
(:func:`label_mapping`), never by bare index.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dtfcli.data.sampling import sample_dense_clip, sample_segments
from dtfcli.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoDecodeError, open_video

log = logging.getLogger(__name__)
DATASETS = ("kinetics400", "ssv2", "ssv1", "ucf101", "hmdb51", "list", "folder")


class AnnotationError(ValueError):
    """A malformed annotation file: names the file and, where it applies, the line."""

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Sample:
    path: str  # a video file, or a folder of frames (SSv1)
    label: int  # index into the dataset's classes; -1 when the split has no labels


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise AnnotationError(path, None, f"{what} not found")
    return path


def _first_existing(candidates: Sequence[Path], what: str) -> Path:
    for c in candidates:
        if c.exists():
            return c
    raise AnnotationError(candidates[0], None, f"{what} not found (also looked for: "
                          + ", ".join(str(c) for c in candidates[1:]) + ")")


def _index_files(folder: Path, extensions: Sequence[str]) -> dict[str, Path]:
    """Stem -> path of every file under ``folder`` (recursive), for layout-agnostic lookup."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if os.path.splitext(name)[1].lower() in extensions:
                    found.setdefault(os.path.splitext(name)[0], Path(dirpath) / name)
    return found


def _json(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None


# -- Kinetics-400 ---------------------------------------------------------------------------
_K400_SPLITS = {"train": ("train",), "val": ("validate", "val"), "validate": ("validate", "val"), "test": ("test",)}


def parse_kinetics(root: Path, split: str) -> tuple[list[tuple[str, int | None]], list[str], dict]:
    """Kinetics-400: ``{split}.csv`` (label,youtube_id,time_start,time_end,split[,is_cc]) in
    ``root/annotations`` or ``root``; videos ``{youtube_id}_{start:06d}_{end:06d}.mp4``
    anywhere under ``root/{split}`` (flat or in class folders, whatever their names)."""
    names = _K400_SPLITS.get(split, (split,))
    csv_path = _first_existing([root / d / f"{n}.csv" for n in names for d in ("annotations", ".")],
                               f"Kinetics annotation CSV for split {split!r}")
    rows: list[tuple[str | None, str]] = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or "youtube_id" not in header:
            raise AnnotationError(csv_path, 1, "expected a header with label,youtube_id,time_start,time_end")
        col = {name: i for i, name in enumerate(header)}
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            try:
                vid = row[col["youtube_id"]]
                start, end = int(float(row[col["time_start"]])), int(float(row[col["time_end"]]))
            except (IndexError, ValueError):
                raise AnnotationError(csv_path, line, f"malformed row {row!r}") from None
            label = row[col["label"]] if "label" in col and len(row) > col["label"] else None
            rows.append((label or None, f"{vid}_{start:06d}_{end:06d}"))
    classes = sorted({label for label, _ in rows if label})
    video_dirs = [root / n for n in names if (root / n).is_dir()] or [root]
    files: dict[str, Path] = {}
    for d in video_dirs:
        files.update(_index_files(d, VIDEO_EXTENSIONS))
    lookup = {c: i for i, c in enumerate(classes)}
    items: list[tuple[str, int | None]] = []  # (path, label); label None = video missing
    for label, stem in rows:
        y = lookup[label] if label else -1  # the test split has no labels
        items.append((str(files[stem]), y) if stem in files else (stem, None))
    return items, classes, {"annotations": str(csv_path)}


# -- Something-Something V2 -----------------------------------------------------------------
def ssv2_class_name(template: str) -> str:
    """The class of an SSv2 video: its template with the brackets removed."""
    return template.replace("[", "").replace("]", "")


def parse_ssv2(root: Path, split: str):
    """SSv2: ``labels/labels.json`` ({name: "index"}), ``labels/{train,validation,test}.json``,
    videos ``{id}.webm`` in ``20bn-something-something-v2/`` (or ``videos/``, or any file
    ``{id}.*`` there: many people re-encode the webm files to mp4)."""
    labels_dir = root / "labels" if (root / "labels").is_dir() else root
    labels_path = _require(labels_dir / "labels.json", "SSv2 labels.json")
    table = _json(labels_path)
    if not isinstance(table, dict):
        raise AnnotationError(labels_path, None, "expected an object {class name: index}")
    try:
        order = sorted(table.items(), key=lambda kv: int(kv[1]))
    except ValueError:
        raise AnnotationError(labels_path, None, "class indices must be integers") from None
    classes = [name for name, _ in order]
    lookup = {name: int(i) for name, i in order}
    split_file = {"val": "validation", "validate": "validation"}.get(split, split)
    ann_path = _require(labels_dir / f"{split_file}.json", f"SSv2 {split_file}.json")
    entries = _json(ann_path)
    video_dir = _first_existing([root / "20bn-something-something-v2", root / "videos", root], "SSv2 video folder")
    files = _index_files(video_dir, VIDEO_EXTENSIONS)
    items = []
    for n, entry in enumerate(entries if isinstance(entries, list) else [None]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise AnnotationError(ann_path, None, f"entry {n} has no 'id'")
        label = -1
        if "template" in entry:
            name = ssv2_class_name(entry["template"])
            if name not in lookup:
                raise AnnotationError(ann_path, None,
                                      f"entry {n} (id {entry['id']}): class {name!r} not in labels.json")
            label = lookup[name]
        stem = str(entry["id"])
        items.append((str(files[stem]), label) if stem in files else (stem, None))
    return items, classes, {"annotations": str(ann_path)}


# -- Something-Something V1 -----------------------------------------------------------------
def parse_ssv1(root: Path, split: str, class_order: str = "file"):
    """SSv1: ``something-something-v1-labels.csv`` (one class per line),
    ``something-something-v1-{train,validation}.csv`` (``id;class name``), frames in
    ``20bn-something-something-v1/{id}/00001.jpg``.  ``class_order``: "file" (the label
    file's order) or "sorted" (alphabetical; another codebase's convention)."""
    labels_path = _require(root / "something-something-v1-labels.csv", "SSv1 labels CSV")
    classes = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if class_order == "sorted":
        classes = sorted(classes)
    elif class_order != "file":
        raise ValueError("class_order must be 'file' or 'sorted'")
    lookup = {c: i for i, c in enumerate(classes)}
    split_file = {"val": "validation", "validate": "validation"}.get(split, split)
    ann_path = _require(root / f"something-something-v1-{split_file}.csv", f"SSv1 {split_file} CSV")
    frames_dir = _first_existing([root / "20bn-something-something-v1", root], "SSv1 frame folder")
    items = []
    with open(ann_path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=";")
        for row in reader:
            if not row:
                continue
            if len(row) > 2 or not row[0].strip():
                raise AnnotationError(ann_path, reader.line_num, f"expected 'id;class name', got {';'.join(row)!r}")
            label = -1
            if len(row) == 2:
                if row[1] not in lookup:
                    raise AnnotationError(ann_path, reader.line_num, f"unknown class {row[1]!r}")
                label = lookup[row[1]]
            folder = frames_dir / row[0].strip()
            items.append((str(folder), label) if folder.is_dir() else (str(folder), None))
    return items, classes, {"annotations": str(ann_path)}


# -- UCF101 / HMDB51 ------------------------------------------------------------------------
def parse_ucf101(root: Path, split: str, fold: int = 1):
    """UCF101: ``ucfTrainTestlist/classInd.txt`` ("1 ApplyEyeMakeup"),
    ``{train,test}list0{fold}.txt`` ("Class/v_Class_g08_c01.avi[ 1]"), videos under ``UCF-101/``."""
    lists = _first_existing([root / "ucfTrainTestlist", root], "ucfTrainTestlist folder")
    class_path = _require(lists / "classInd.txt", "UCF101 classInd.txt")
    numbered = []
    for n, line in enumerate(class_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationError(class_path, n, f"expected 'index ClassName', got {line!r}")
        numbered.append((int(parts[0]), parts[1]))
    classes = [name for _, name in sorted(numbered)]
    lookup = {c: i for i, c in enumerate(classes)}
    kind = "test" if split in ("test", "val", "validation") else "train"
    list_path = _require(lists / f"{kind}list{fold:02d}.txt", f"UCF101 {kind}list{fold:02d}.txt")
    video_dir = root / "UCF-101" if (root / "UCF-101").is_dir() else root
    items = []
    for n, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        rel = parts[0]
        name = rel.replace("\\", "/").split("/")[0]
        if name not in lookup or len(parts) > 2:
            raise AnnotationError(list_path, n, f"expected 'ClassName/video.avi[ index]', got {line!r}")
        path = video_dir / rel
        items.append((str(path), lookup[name]) if path.exists() else (str(path), None))
    return items, classes, {"annotations": str(list_path)}


def parse_hmdb51(root: Path, split: str, fold: int = 1):
    """HMDB51: ``testTrainMulti_7030_splits/{class}_test_split{fold}.txt`` ("video.avi 1":
    1 train, 2 test, 0 unused), videos in ``hmdb51/{class}/`` (or ``{class}/`` under root)."""
    lists = _first_existing([root / "testTrainMulti_7030_splits", root / "splits", root], "HMDB51 split folder")
    pattern = re.compile(rf"^(?P<cls>.+)_test_split{fold}\.txt$")
    split_files = sorted(p for p in lists.iterdir() if pattern.match(p.name))
    if not split_files:
        raise AnnotationError(lists, None, f"no *_test_split{fold}.txt files")
    classes = sorted(pattern.match(p.name).group("cls") for p in split_files)
    lookup = {c: i for i, c in enumerate(classes)}
    wanted = "2" if split in ("test", "val", "validation") else "1"
    video_dir = root / "hmdb51" if (root / "hmdb51").is_dir() else root
    items = []
    for path in split_files:
        cls = pattern.match(path.name).group("cls")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(path, n, f"expected 'video.avi 0|1|2', got {line!r}")
            if parts[1] == wanted:
                video = video_dir / cls / parts[0]
                items.append((str(video), lookup[cls]) if video.exists() else (str(video), None))
    return items, classes, {"annotations": str(lists)}


# -- generic --------------------------------------------------------------------------------
def parse_list(root: Path, split: str):
    """A "path label" list file (label: class index, or class name): ``root`` is the file,
    or a folder with ``{split}.txt``; paths are relative to the file's folder.  Class names
    come from ``classes.txt`` beside it when present (one per line, index = line)."""
    list_path = root if root.is_file() else _require(root / f"{split}.txt", f"list file {split}.txt")
    base = list_path.parent
    classes: list[str] = []
    if (base / "classes.txt").exists():
        classes = [c.strip() for c in (base / "classes.txt").read_text(encoding="utf-8").splitlines() if c.strip()]
    rows = []
    for n, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(None, 1)  # paths may contain spaces; the label is the last field
        if len(parts) != 2:
            raise AnnotationError(list_path, n, f"expected 'path label', got {line!r}")
        rows.append((n, parts[0], parts[1]))
    numeric = all(label.isdigit() for _, _, label in rows)
    if not numeric and not classes:
        classes = sorted({label for _, _, label in rows})
    if numeric and not classes:
        classes = [str(i) for i in range(max((int(label) for _, _, label in rows), default=-1) + 1)]
    lookup = {c: i for i, c in enumerate(classes)}
    items = []
    for n, rel, label in rows:
        index = int(label) if numeric else lookup.get(label)
        if index is None or index >= len(classes):
            raise AnnotationError(list_path, n, f"label {label!r} is not one of the {len(classes)} classes")
        path = base / rel
        items.append((str(path), index) if path.exists() else (str(path), None))
    return items, classes, {"annotations": str(list_path)}


def parse_folder(root: Path, split: str):
    """Folder per class: ``root/[split/]{class}/*.mp4``; classes in alphabetical order."""
    base = root / split if split and (root / split).is_dir() else root
    if not base.is_dir():
        raise AnnotationError(base, None, "dataset folder not found")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    items = []
    for i, cls in enumerate(classes):
        for path in sorted((base / cls).iterdir()):
            if path.suffix.lower() in VIDEO_EXTENSIONS or (path.is_dir() and any(
                    q.suffix.lower() in IMAGE_EXTENSIONS for q in path.iterdir())):
                items.append((str(path), i))
    return items, classes, {"annotations": str(base)}


_PARSERS: dict[str, Callable] = {
    "kinetics400": parse_kinetics, "ssv2": parse_ssv2, "ssv1": parse_ssv1, "ucf101": parse_ucf101,
    "hmdb51": parse_hmdb51, "list": parse_list, "folder": parse_folder,
}


# -- label names ----------------------------------------------------------------------------
def normalize_label(name: str) -> str:
    """A comparison key for class names across codebases: Kinetics folder names are often
    sanitised ("passing_American_football_(in_game)" -> "passing_American_football_in_game")."""
    text = re.sub(r"['\u2019`]", "", name.lower())  # "person's" and "persons" are the same class
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def label_mapping(dataset_classes: Sequence[str], model_classes: Sequence[str]) -> torch.Tensor:
    """For each dataset class, the index of the model output with the same name: a long
    tensor (num_dataset_classes,).  Raises ValueError naming classes the model lacks."""
    model_index = {}
    for i, name in enumerate(model_classes):
        model_index.setdefault(normalize_label(name), i)
    mapping, missing = [], []
    for name in dataset_classes:
        j = model_index.get(normalize_label(name))
        mapping.append(-1 if j is None else j)
        if j is None:
            missing.append(name)
    if missing:
        raise ValueError(f"{len(missing)} dataset classes are not among the model's labels "
                         f"(e.g. {', '.join(repr(m) for m in missing[:3])})")
    return torch.tensor(mapping, dtype=torch.long)


# -- the dataset ----------------------------------------------------------------------------
class VideoDataset(torch.utils.data.Dataset):
    """Samples of a dataset, read as clips.

    Item: dict(clip=float (C, T, H, W) after ``transform`` (uint8 (T, H, W, C) without one),
    label=int, index=int, path=str).  A video that fails to decode yields
    ``{"error": VideoDecodeError, "index", "path"}`` instead; the loader's collate drops and
    counts those.  ``sampling``: "dense" (``clip_len`` x ``frame_interval``) or "segments"
    (``clip_len`` segments); ``train`` draws random positions, else centred ones.
    """

    def __init__(self, samples: list[Sample], classes: list[str], *, name: str = "dataset", clip_len: int = 16,
                 frame_interval: int = 4, sampling: str = "dense", train: bool = False,
                 transform: Callable | None = None, backend: str = "auto", frames_fps: float = 12.0,
                 missing: Sequence[str] = ()):
        if sampling not in ("dense", "segments"):
            raise ValueError("sampling must be 'dense' or 'segments'")
        self.samples, self.classes, self.name = samples, list(classes), name
        self.clip_len, self.frame_interval, self.sampling, self.train = clip_len, frame_interval, sampling, train
        self.transform, self.backend, self.frames_fps = transform, backend, frames_fps
        self.missing = list(missing)

    def __len__(self) -> int:
        return len(self.samples)

    def positions(self, num_frames: int) -> list[int]:
        if self.sampling == "segments":
            return sample_segments(num_frames, self.clip_len, random=self.train)
        return sample_dense_clip(num_frames, self.clip_len, self.frame_interval, random=self.train)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        try:
            with open_video(sample.path, self.backend, fps=self.frames_fps) as reader:
                clip = reader.read_clip(self.positions(reader.num_frames))
        except VideoDecodeError as exc:
            return {"error": exc, "index": index, "path": sample.path}
        if self.transform is not None:
            clip = self.transform(clip)
        return {"clip": clip, "label": sample.label, "index": index, "path": sample.path}


def build_dataset(name: str, root: str | os.PathLike, split: str = "train", *, classes: Sequence[str] | None = None,
                  fold: int = 1, class_order: str = "file", **dataset_options) -> VideoDataset:
    """Read a dataset's annotations in its public layout and return a :class:`VideoDataset`.

    ``name``: one of DATASETS.  ``classes``: impose another class order (e.g. a model's
    label names); dataset labels are re-indexed by name (see :func:`normalize_label`).
    Missing videos are logged once (a count and a few examples) and left out; they stay in
    ``dataset.missing``.  Other keywords go to :class:`VideoDataset`.
    """
    if name not in _PARSERS:
        raise ValueError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    root = Path(root)
    kwargs = {"fold": fold} if name in ("ucf101", "hmdb51") else {}
    if name == "ssv1":
        kwargs["class_order"] = class_order
        dataset_options.setdefault("frames_fps", 12.0)
    items, own_classes, _ = _PARSERS[name](root, split, **kwargs)
    if name in ("ssv1", "ssv2"):
        dataset_options.setdefault("sampling", "segments")
        dataset_options.setdefault("clip_len", 8)
    present = [(p, y) for p, y in items if y is not None]
    missing = [p for p, y in items if y is None]
    if missing:
        log.warning("%s %s: %d of %d videos missing under %s (e.g. %s)", name, split, len(missing), len(items),
                    root, ", ".join(missing[:3]))
    out_classes = list(own_classes)
    if classes is not None:
        mapping = label_mapping(own_classes, classes)
        present = [(p, int(mapping[y]) if y >= 0 else -1) for p, y in present]
        out_classes = list(classes)
    samples = [Sample(p, y) for p, y in present]
    return VideoDataset(samples, out_classes, name=name, missing=missing, **dataset_options)
