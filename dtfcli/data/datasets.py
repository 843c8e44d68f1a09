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


class DatasetFileNotFound(AnnotationError):
    """A file or folder a layout needs is absent: names every path looked at, in one line."""

    def __init__(self, what: str, tried: Sequence[str | os.PathLike]):
        self.tried = [str(p) for p in tried]
        self.what = what
        self.path, self.line = (self.tried[0] if self.tried else ""), None
        self.reason = f"{what} not found; tried: {', '.join(self.tried)}"
        ValueError.__init__(self, self.reason)


def _find(what: str, candidates: Sequence[Path], *, folder: bool = False) -> Path:
    """The first of ``candidates`` that exists (a folder when ``folder``), else an error naming them all."""
    seen: list[Path] = []
    for c in candidates:
        if c in seen:
            continue
        seen.append(c)
        if c.is_dir() if folder else c.is_file():
            return c
    raise DatasetFileNotFound(what, seen)


def _find_optional(candidates: Sequence[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


def _in_dirs(root: Path, dirs: Sequence[str], names: Sequence[str]) -> list[Path]:
    """Candidate paths: every name in every folder (folders first-to-last, names in order)."""
    return [root / d / n if d else root / n for d in dirs for n in names]


def _index_files(folder: Path, extensions: Sequence[str]) -> dict[str, Path]:
    """Stem -> path of every file under ``folder`` (recursive), for layout-agnostic lookup."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for dirpath, _, files in os.walk(folder):
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() in extensions:
                    found.setdefault(os.path.splitext(name)[0], Path(dirpath) / name)
    return found


class _VideoLocator:
    """Finds ``Class/video.avi`` under the first of several candidate folders; failing that, a
    file of the same name anywhere under them (re-packagings flatten or rename class folders)."""

    def __init__(self, folders: Sequence[Path]):
        self.folders = [f for f in folders if f.is_dir()] or list(folders[:1])
        self._by_name: dict[str, Path] | None = None

    def __call__(self, rel: str) -> tuple[str, bool]:
        for folder in self.folders:
            path = folder / rel
            if path.is_file():
                return str(path), True
        if self._by_name is None:
            self._by_name = {}
            for folder in self.folders:
                for path in _index_files(folder, VIDEO_EXTENSIONS).values():
                    self._by_name.setdefault(path.name, path)
        hit = self._by_name.get(Path(rel).name)
        return (str(hit), True) if hit else (str(self.folders[0] / rel), False)


def _json(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None


def _answers(path: Path, lookup: dict[str, int], delimiter: str = ";") -> dict[str, int]:
    """A test-answers CSV (``id;class name`` per line) -> {id: class index}."""
    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        for row in reader:
            if not row or not row[0].strip():
                continue
            if len(row) != 2:
                raise AnnotationError(path, reader.line_num, f"expected 'id;class name', got {delimiter.join(row)!r}")
            index = _class_index(row[1], lookup)
            if index is None:
                raise AnnotationError(path, reader.line_num, f"unknown class {row[1]!r}")
            out[row[0].strip()] = index
    return out


def _class_index(name: str, lookup: dict[str, int]) -> int | None:
    """Exact name first, then ignoring case and surrounding spaces (hand-edited label files)."""
    if name in lookup:
        return lookup[name]
    folded = {k.strip().lower(): v for k, v in lookup.items()}
    return folded.get(name.strip().lower())


_K400_SPLITS = {"train": ("train",), "val": ("val", "validate"), "validate": ("validate", "val"),
                "validation": ("val", "validate"), "test": ("test",)}


# -- Kinetics-400 ---------------------------------------------------------------------------
def parse_kinetics(root: Path, split: str) -> tuple[list[tuple[str, int | None]], list[str], dict]:
    """Kinetics-400.  Annotations ``{train,val,test}.csv`` (CVDF's ``annotations/``),
    ``{train,validate,test}.csv`` (DeepMind's tarball, folder ``kinetics400/``) or
    ``kinetics_{train,val,test}.csv`` (MMAction2), with label,youtube_id,time_start,
    time_end,split[,is_cc].  Videos ``{youtube_id}_{start:06d}_{end:06d}.mp4`` anywhere under
    ``{split}/`` (CVDF, flat), ``videos_{split}/`` (MMAction2), ``videos/{split}/`` (CVDF's
    arrange_by_classes.py), flat or in class folders of any name, else under ``root``;
    CVDF's ``replacement/`` videos take the place of the corrupted ones they replace."""
    names = _K400_SPLITS.get(split, (split,))
    csv_names = [f"{prefix}{n}.csv" for n in names for prefix in ("", "kinetics_", "kinetics-400_", "kinetics400_")]
    csv_path = _find(f"Kinetics-400 annotation CSV for split {split!r}",
                     _in_dirs(root, ("annotations", "", "kinetics400", "kinetics400/annotations"), csv_names))
    rows: list[tuple[str | None, str]] = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, None) or []]
        if "youtube_id" not in header:
            raise AnnotationError(csv_path, 1, "expected a header with label,youtube_id,time_start,time_end")
        col = {name: i for i, name in enumerate(header)}
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            try:
                vid = row[col["youtube_id"]]
                start, end = int(float(row[col["time_start"]])), int(float(row[col["time_end"]]))
            except (IndexError, KeyError, ValueError):
                raise AnnotationError(csv_path, line, f"malformed row {row!r}") from None
            label = row[col["label"]] if "label" in col and len(row) > col["label"] else None
            rows.append((label or None, f"{vid}_{start:06d}_{end:06d}"))
    classes = sorted({label for label, _ in rows if label})
    candidates = [root / pattern.format(n) for n in names for pattern in ("{}", "videos_{}", "videos/{}")]
    video_dirs = [d for d in candidates if d.is_dir()] or [root]
    files: dict[str, Path] = {}
    for d in [root / "replacement", *video_dirs]:  # replacements first: they win
        for stem, path in _index_files(d, VIDEO_EXTENSIONS).items():
            files.setdefault(stem, path)
    lookup = {c: i for i, c in enumerate(classes)}
    items: list[tuple[str, int | None]] = []  # (path, label); label None = video missing
    for label, stem in rows:
        y = lookup[label] if label else -1  # a test split without labels
        items.append((str(files[stem]), y) if stem in files else (str(video_dirs[0] / f"{stem}.mp4"), None))
    return items, classes, {"annotations": str(csv_path)}


# -- Something-Something V2 -----------------------------------------------------------------
def ssv2_class_name(template: str) -> str:
    """The class of an SSv2 video: its template with the brackets removed."""
    return template.replace("[", "").replace("]", "")


_SS_ANNOTATION_DIRS = ("", "labels", "label", "annotations")


def _ss_class_table(path: Path) -> tuple[list[str], dict[str, int]]:
    table = _json(path)
    if not isinstance(table, dict):
        raise AnnotationError(path, None, "expected an object {class name: index}")
    try:
        order = sorted(table.items(), key=lambda kv: int(kv[1]))
    except (TypeError, ValueError):
        raise AnnotationError(path, None, "class indices must be integers (or strings of digits)") from None
    return [name for name, _ in order], {name: int(i) for name, i in order}


def parse_ssv2(root: Path, split: str):
    """Something-Something V2, as released: ``something-something-v2-labels.json`` ({name:
    "index"}) and ``something-something-v2-{train,validation,test}.json`` (entries ``id``,
    ``template`` with ``[something]`` brackets, ``label`` filled in, ``placeholders``; the test
    file has ids only), optionally ``something-something-v2-test-answers.csv`` (``id;class``),
    at the root or in ``labels/``, ``label/`` or ``annotations/``; or the re-packaging with
    short names, ``labels/{labels,train,validation,test}.json`` and ``labels/test-answers.csv``.
    The class is the template with the brackets removed.  Videos ``{id}.webm`` in
    ``20bn-something-something-v2/`` (or ``videos/``, or anywhere under the root; any ``{id}.*``
    video, since many re-encode to mp4)."""
    labels_path = _find("Something-Something V2 label file",
                        _in_dirs(root, _SS_ANNOTATION_DIRS, ("something-something-v2-labels.json", "labels.json")))
    classes, lookup = _ss_class_table(labels_path)
    split_file = {"val": "validation", "validate": "validation"}.get(split, split)
    ann_path = _find(f"Something-Something V2 {split_file} annotations",
                     _in_dirs(root, _SS_ANNOTATION_DIRS,
                              (f"something-something-v2-{split_file}.json", f"{split_file}.json")))
    entries = _json(ann_path)
    if not isinstance(entries, list):
        raise AnnotationError(ann_path, None, "expected a list of {\"id\": ..., \"template\": ...} entries")
    answers: dict[str, int] = {}
    if split_file == "test":
        answers_path = _find_optional(_in_dirs(root, _SS_ANNOTATION_DIRS,
                                               ("something-something-v2-test-answers.csv", "test-answers.csv")))
        if answers_path is not None:
            answers = _answers(answers_path, lookup)
    folders = [root / "20bn-something-something-v2", root / "videos"]
    video_dir = next((f for f in folders if f.is_dir()), root)
    files = _index_files(video_dir, VIDEO_EXTENSIONS)
    items = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise AnnotationError(ann_path, None, f"entry {n} has no 'id'")
        stem = str(entry["id"])
        label = answers.get(stem, -1)
        if "template" in entry:
            name = ssv2_class_name(str(entry["template"]))
            label = _class_index(name, lookup)
            if label is None:
                raise AnnotationError(ann_path, None,
                                      f"entry {n} (id {stem}): class {name!r} not in {labels_path.name}")
        items.append((str(files[stem]), label) if stem in files else (str(video_dir / f"{stem}.webm"), None))
    return items, classes, {"annotations": str(ann_path), "labels": str(labels_path)}


# -- Something-Something V1 -----------------------------------------------------------------
def parse_ssv1(root: Path, split: str, class_order: str = "file"):
    """Something-Something V1, as released: ``something-something-v1-labels.csv`` (one class
    a line), ``something-something-v1-{train,validation}.csv`` (``id;class name``),
    ``something-something-v1-test.csv`` (ids only), at the root or in ``annotations/`` or
    ``labels/`` (or the short names ``labels.csv``, ``train.csv``..., ``test-answers.csv``);
    frames ``20bn-something-something-v1/{id}/00001.jpg`` (or ``rawframes/{id}/``).
    ``class_order``: "file" (the label file's order) or "sorted" (alphabetical; another
    codebase's convention)."""
    dirs = ("", "annotations", "labels")
    labels_path = _find("Something-Something V1 label file",
                        _in_dirs(root, dirs, ("something-something-v1-labels.csv", "labels.csv")))
    classes = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if class_order == "sorted":
        classes = sorted(classes)
    elif class_order != "file":
        raise ValueError("class_order must be 'file' or 'sorted'")
    lookup = {c: i for i, c in enumerate(classes)}
    split_file = {"val": "validation", "validate": "validation"}.get(split, split)
    ann_path = _find(f"Something-Something V1 {split_file} annotations",
                     _in_dirs(root, dirs, (f"something-something-v1-{split_file}.csv", f"{split_file}.csv")))
    answers: dict[str, int] = {}
    if split_file == "test":
        answers_path = _find_optional(_in_dirs(root, dirs, ("something-something-v1-test-answers.csv",
                                                            "test-answers.csv")))
        if answers_path is not None:
            answers = _answers(answers_path, lookup)
    frames_dir = _find("Something-Something V1 frame folder",
                       [root / "20bn-something-something-v1", root / "rawframes", root], folder=True)
    items = []
    with open(ann_path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=";")
        for row in reader:
            if not row:
                continue
            if len(row) > 2 or not row[0].strip():
                raise AnnotationError(ann_path, reader.line_num, f"expected 'id;class name', got {';'.join(row)!r}")
            vid = row[0].strip()
            label = answers.get(vid, -1)
            if len(row) == 2:
                label = _class_index(row[1], lookup)
                if label is None:
                    raise AnnotationError(ann_path, reader.line_num, f"unknown class {row[1]!r}")
            folder = frames_dir / vid
            items.append((str(folder), label if folder.is_dir() else None))
    return items, classes, {"annotations": str(ann_path)}


# -- UCF101 / HMDB51 ------------------------------------------------------------------------
def parse_ucf101(root: Path, split: str, fold: int = 1):
    """UCF101, as released: ``UCF101TrainTestSplits-RecognitionTask.zip`` gives
    ``ucfTrainTestlist/classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0{fold}.txt``
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1") and ``testlist0{fold}.txt`` (no index);
    ``UCF101.rar`` gives ``UCF-101/{Class}/v_*.avi``.  Also the lists in ``annotations/`` or the
    root and videos in ``UCF101/`` or ``videos/`` (MMAction2), or anywhere by file name."""
    dirs = ("ucfTrainTestlist", "annotations", "", "UCF101TrainTestSplits-RecognitionTask/ucfTrainTestlist")
    class_path = _find("UCF101 classInd.txt", _in_dirs(root, dirs, ("classInd.txt",)))
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
    kind = "test" if split in ("test", "val", "validate", "validation") else "train"
    list_name = f"{kind}list{fold:02d}.txt"
    list_path = _find(f"UCF101 {list_name}", [class_path.parent / list_name, *_in_dirs(root, dirs, (list_name,))])
    locate = _VideoLocator([root / "UCF-101", root / "UCF101", root / "videos", root])
    items = []
    for n, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        rel = parts[0].replace("\\", "/")
        name = rel.split("/")[0]
        if name not in lookup or len(parts) > 2:
            raise AnnotationError(list_path, n, f"expected 'ClassName/video.avi[ index]', got {line!r}")
        path, found = locate(rel)
        items.append((path, lookup[name] if found else None))
    return items, classes, {"annotations": str(list_path)}


def parse_hmdb51(root: Path, split: str, fold: int = 1):
    """HMDB51, as released: ``test_train_splits.rar`` gives
    ``testTrainMulti_7030_splits/{class}_test_split{1,2,3}.txt`` ("video.avi 1": 1 train,
    2 test, 0 unused); ``hmdb51_org.rar`` holds one ``{class}.rar`` per class, each giving a
    ``{class}/`` folder of .avi files, wherever extracted: ``hmdb51_org/``, ``hmdb51/``,
    ``videos/`` or the root (or anywhere by file name).  Split files may also sit in
    ``annotations/`` (MMAction2) or ``splits/``."""
    pattern = re.compile(rf"^(?P<cls>.+)_test_split{fold}\.txt$")
    dirs = [root / "testTrainMulti_7030_splits", root / "annotations", root / "splits", root]
    lists = next((d for d in dirs if d.is_dir() and any(pattern.match(p.name) for p in d.iterdir())), None)
    if lists is None:
        raise DatasetFileNotFound(f"HMDB51 split files (*_test_split{fold}.txt)",
                                  [d / f"*_test_split{fold}.txt" for d in dirs])
    split_files = sorted(p for p in lists.iterdir() if pattern.match(p.name))
    classes = sorted(pattern.match(p.name).group("cls") for p in split_files)
    lookup = {c: i for i, c in enumerate(classes)}
    wanted = "2" if split in ("test", "val", "validate", "validation") else "1"
    locate = _VideoLocator([root / "hmdb51_org", root / "hmdb51", root / "videos", root])
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
                video, found = locate(f"{cls}/{parts[0]}")
                items.append((video, lookup[cls] if found else None))
    if items and all(y is None for _, y in items):
        archives = [str(f / "*.rar") for f in locate.folders if f.is_dir() and any(f.glob("*.rar"))]
        if archives:  # hmdb51_org.rar unpacks to one rar per class, which must be unpacked too
            log.warning("hmdb51: no videos found, but there are archives (%s): extract each class's .rar "
                        "into a folder of that name", ", ".join(archives))
    return items, classes, {"annotations": str(lists)}


# -- generic --------------------------------------------------------------------------------
def parse_list(root: Path, split: str):
    """A "path label" list file (label: class index, or class name): ``root`` is the file,
    or a folder with ``{split}.txt``; paths are relative to the file's folder.  Class names
    come from ``classes.txt`` beside it when present (one per line, index = line)."""
    list_path = root if root.is_file() else _find(f"list file for split {split!r}", [root / f"{split}.txt"])
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
        raise DatasetFileNotFound("dataset folder", [root / split, root] if split else [root])
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
    if not root.exists():
        raise DatasetFileNotFound(f"{name} dataset root", [root])
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
