"""Is a video file whole?  What ``dtf data info`` reports, as a library.

A file can open and show its first frame and still be unusable: a download cut short keeps
its header, so it opens, but its later frames are gone.  :func:`check_video` therefore looks
three ways:

* the frames: the first and the last (cheap), or every frame (``full=True``), decoded in
  chunks of sorted indices so memory stays small; a chunk that fails is split in halves
  until the frames that do not decode are found;
* the frame count: fewer frames in the file than its header promises (MP4 sample tables), or
  a last frame long before the duration the header declares (WebM/MKV, which store no count);
* the bytes: a file shorter than its container structure declares (an MP4 box, a Matroska
  segment or an AVI RIFF chunk that runs past the end of the file).

Verdicts: ``ok``; ``cut`` (the frames that decode are a prefix, or the file is shorter than
it says); ``damaged`` (frames in the middle do not decode); ``unreadable`` (no frame decodes).
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dtfcli.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoDecodeError, open_video

VERDICTS = ("ok", "cut", "damaged", "unreadable")
#: Frames decoded per call when checking every frame, at most; fewer for large frames
#: (about ``MAX_CHUNK_BYTES`` of decoded RGB per call).
CHUNK_FRAMES = 64
MAX_CHUNK_BYTES = 256 * 2**20
_BOX_TYPE = re.compile(rb"[A-Za-z0-9 \xa9]{4}")  # an ISO BMFF box type: four letters, digits, (c)


@dataclass
class FileCheck:
    """What :func:`check_video` found in one file (or frame folder).

    ``frames``: frames on the file's packet timeline; ``expected_frames``: what its header
    promises when that is more (else equal to ``frames``); ``decoded``: frames that decoded
    out of ``tried`` (every frame with ``full``, else the first and the last);
    ``decoded_ranges``: the decoded frames as inclusive ``(first, last)`` runs;
    ``file_bytes`` / ``declared_bytes``: the file's size and, when larger, the size its
    container structure declares.
    """

    path: str
    verdict: str = "ok"
    reason: str = ""
    full: bool = False
    frames: int = 0
    expected_frames: int = 0
    tried: int = 0
    decoded: int = 0
    decoded_ranges: list[tuple[int, int]] = field(default_factory=list)
    backend: str = ""
    container: str = ""
    codec: str = ""
    header_frames: int = 0
    fps: float = 0.0
    duration_s: float = 0.0
    height: int = 0
    width: int = 0
    stored: str = ""
    file_bytes: int = 0
    declared_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @property
    def summary(self) -> str:
        """The verdict in a few words: "ok", "frames 0-40 of 75 decode", or why not."""
        return "ok" if self.ok else self.reason

    def to_dict(self) -> dict:
        out = asdict(self)
        out["decoded_ranges"] = [list(r) for r in self.decoded_ranges]
        return out


@dataclass
class CheckReport:
    """Checks of many files, in the order given, with counts per verdict."""

    files: list[FileCheck]

    @property
    def counts(self) -> dict[str, int]:
        return {v: sum(f.verdict == v for f in self.files) for v in VERDICTS}

    @property
    def bad(self) -> int:
        return sum(not f.ok for f in self.files)

    def summary(self) -> str:
        """E.g. "12 files: 10 ok, 1 cut (frames 0-40 of 75 decode), 1 unreadable"."""
        n = len(self.files)
        parts = []
        for verdict, count in self.counts.items():
            if not count:
                continue
            text = f"{count} {verdict}"
            if verdict in ("cut", "damaged") and count == 1:  # the first clause of its reason
                text += f" ({next(f.reason for f in self.files if f.verdict == verdict).split('; ')[0]})"
            parts.append(text)
        return f"{n} file{'s' if n != 1 else ''}: " + (", ".join(parts) or "nothing checked")

    def to_dict(self) -> dict:
        return {"files": [f.to_dict() for f in self.files],
                "summary": {"files": len(self.files), **self.counts, "text": self.summary()}}


# -- which files ----------------------------------------------------------------------------
def _is_frame_folder(folder: Path) -> bool:
    names = [p for p in folder.iterdir() if p.is_file()]
    return bool(names) and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in names) and not any(
        p.suffix.lower() in VIDEO_EXTENSIONS for p in names)


def collect_videos(paths: Iterable[str | os.PathLike], recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """The videos to check: files as given (whatever their extension); in a folder, its files
    with a video extension (``VIDEO_EXTENSIONS``), in name order, and with ``recursive`` those
    of its subfolders.  A folder of images only is one video (a frame folder, as SSv1 ships).
    Returns (videos, folders in which nothing was found)."""
    videos: list[Path] = []
    empty: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            videos.append(path)  # a missing file is reported as unreadable, with the reason
            continue
        if _is_frame_folder(path):
            videos.append(path)
            continue
        found: list[Path] = []
        if recursive:
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                here = Path(dirpath)
                if here != path and _is_frame_folder(here):
                    found.append(here)
                    dirnames.clear()
                    continue
                found += [here / n for n in sorted(filenames) if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS]
        else:
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not found:
            empty.append(path)
        videos += found
    return videos, empty


# -- the container's own size ---------------------------------------------------------------
def _ebml_vint(data: bytes, pos: int, keep_marker: bool = False) -> tuple[int, int, bool] | None:
    """An EBML variable-length integer at ``pos``: (value, next position, all-ones = unknown size)."""
    if pos >= len(data) or data[pos] == 0:
        return None
    length = 8 - data[pos].bit_length() + 1
    if pos + length > len(data):
        return None
    value = data[pos] if keep_marker else data[pos] & (0xFF >> length)
    for b in data[pos + 1:pos + length]:
        value = (value << 8) | b
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return value, pos + length, unknown


def _iso_boxes(fh, size: int) -> tuple[list[str], int] | None:
    """Top-level boxes of an MP4/MOV file: (their types, where the last one says it ends)."""
    fh.seek(0)
    if fh.read(8)[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"):
        return None
    types: list[str] = []
    offset = 0
    while offset < size:
        fh.seek(offset)
        box = fh.read(16)
        if len(box) < 8 or not _BOX_TYPE.fullmatch(box[4:8]):
            return None  # not a box: trailing bytes we cannot judge
        types.append(box[4:8].decode("latin-1"))
        length = int.from_bytes(box[:4], "big")
        if length == 1 and len(box) >= 16:
            length = int.from_bytes(box[8:16], "big")
        elif length == 0:  # runs to the end of the file
            return types, size
        if length < 8:
            return None
        offset += length
    return types, offset


def _matroska_end(fh) -> int | None:
    """Where a Matroska/WebM file's Segment says it ends (None: unknown size, or not Matroska)."""
    fh.seek(0)
    head = fh.read(16)
    if head[:4] != b"\x1a\x45\xdf\xa3":  # the EBML header element, then the Segment
        return None
    header = _ebml_vint(head, 4)
    if header is None:
        return None
    pos = header[1] + header[0]
    fh.seek(pos)
    data = fh.read(16)
    seg_id = _ebml_vint(data, 0, keep_marker=True)
    if seg_id is None or seg_id[0] != 0x18538067:
        return None
    seg = _ebml_vint(data, seg_id[1])
    if seg is None or seg[2]:
        return None
    return pos + seg[1] + seg[0]


def _riff_end(fh) -> int | None:
    """Where an AVI file's RIFF chunk says it ends (None: not AVI, or size left unwritten)."""
    fh.seek(0)
    head = fh.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return None
    size = int.from_bytes(head[4:8], "little")
    return 8 + size if size else None


def declared_size(path: str | os.PathLike) -> int | None:
    """The size in bytes the file's container structure declares, where it is an MP4/MOV
    (top-level boxes), Matroska/WebM (EBML header and segment) or AVI (the first RIFF chunk)
    file with sizes written; None for other formats, files of unknown size, or garbage."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as fh:
            end = _matroska_end(fh)
            if end is None:
                end = _riff_end(fh)
            if end is not None:
                return end
            boxes = _iso_boxes(fh, size)
            return boxes[1] if boxes else None
    except OSError:
        return None


def truncation(path: str | os.PathLike) -> str:
    """Why the file's own structure says it was cut short ("" when it does not): it is
    shorter than its container declares, or an MP4 ends before its index (``moov``) box."""
    path = Path(path)
    try:
        size = path.stat().st_size
        declared = declared_size(path)
        if declared is not None and declared > size:
            return f"file cut short ({size:,} of {declared:,} bytes)"
        with open(path, "rb") as fh:
            boxes = _iso_boxes(fh, size)
        if boxes and "mdat" in boxes[0] and "moov" not in boxes[0]:
            return "file cut short (it ends before its index, the moov box)"
    except OSError:
        pass
    return ""


def _declared_seconds(path: Path) -> float | None:
    """The video stream's duration as the container's header states it (for formats that
    store no frame count: Matroska/WebM), or None."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base:
                return float(stream.duration * stream.time_base)
            tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
            if tag:
                h, m, s = tag.split(":")
                return int(h) * 3600 + int(m) * 60 + float(s)
            if container.duration is not None and len(container.streams) == 1:
                return container.duration / 1_000_000  # av.time_base: no other stream can make it longer
    except Exception:  # a header we cannot read says nothing about the frames
        return None
    return None


# -- one file -------------------------------------------------------------------------------
def _ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def _ranges_text(ranges: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)


def _decode(reader, indices: list[int], good: set[int], bad: set[int], shape: list) -> None:
    """Decode ``indices``; on failure split them in halves until the failing frames are found."""
    try:
        frames = reader.get_frames(indices)
    except VideoDecodeError:
        if len(indices) == 1:
            bad.add(indices[0])
            return
        half = len(indices) // 2
        _decode(reader, indices[:half], good, bad, shape)
        _decode(reader, indices[half:], good, bad, shape)
        return
    if not shape:
        shape.extend(int(x) for x in frames.shape[1:3])
    good.update(indices)


def check_video(path: str | os.PathLike, backend: str = "auto", *, full: bool = False,
                chunk: int = CHUNK_FRAMES) -> FileCheck:
    """Check one video file (or frame folder): see the module docstring.  Never raises for a
    bad file; the verdict and ``reason`` say what is wrong."""
    path = Path(path)
    check = FileCheck(path=str(path), full=full)
    short = ""
    if path.is_file():
        check.file_bytes = path.stat().st_size
        declared = declared_size(path)
        if declared is not None and declared > check.file_bytes:
            check.declared_bytes = declared
        short = truncation(path)
    try:
        with open_video(path, backend) as reader:
            index = reader.index
            n = reader.num_frames
            check.backend = reader.backend
            check.container, check.codec, check.header_frames = index.format_name, index.codec_name, index.header_frames
            check.frames, check.fps, check.duration_s = n, round(reader.fps, 3), round(reader.duration, 3)
            check.stored = f"{index.stored_size[0]}x{index.stored_size[1]}" if any(index.stored_size) else ""
            expected = max(n, index.header_frames)
            if not index.header_frames and path.is_file():
                seconds = _declared_seconds(path)
                step = reader.duration / max(n, 1)
                if seconds is not None and seconds - reader.duration > max(2 * step, 0.1):
                    expected = max(expected, round(seconds / step))
            check.expected_frames = expected
            good: set[int] = set()
            bad: set[int] = set()
            shape: list[int] = []
            if full:
                h, w = index.stored_size
                per_call = max(1, min(chunk, MAX_CHUNK_BYTES // max(1, h * w * 3)))
                for start in range(0, n, per_call):
                    _decode(reader, list(range(start, min(start + per_call, n))), good, bad, shape)
            else:
                for i in sorted({0, n - 1}):
                    _decode(reader, [i], good, bad, shape)
            check.backend = getattr(reader, "used_backend", reader.backend)
    except Exception as exc:  # VideoDecodeError, or a decoder failing in a way nobody foresaw
        reason = exc.reason if isinstance(exc, VideoDecodeError) else f"{type(exc).__name__}: {exc}".splitlines()[0]
        # A file cut short is "cut" even when nothing in it can be read (an MP4 that lost its index).
        check.verdict = "cut" if short else "unreadable"
        check.reason = f"{short}; nothing decodes: {reason}" if short else reason
        return check
    if shape:
        check.height, check.width = shape
    check.tried, check.decoded = len(good) + len(bad), len(good)
    check.decoded_ranges = _ranges(good)
    _judge(check, good, bad, short)
    return check


def _judge(check: FileCheck, good: set[int], bad: set[int], short: str) -> None:
    """Verdict and reason from the frames that decoded (``good``), those that did not
    (``bad``), and any sign that the file was cut short (``short``)."""
    n, expected = check.frames, check.expected_frames
    notes = []
    if not good:
        check.verdict, notes = "unreadable", ["no frame decodes"]
    elif check.full:
        if not bad or max(good) < min(bad):  # what decodes is a prefix: the rest is gone
            check.verdict = "cut" if bad or expected > n or short else "ok"
            if check.verdict == "cut":
                notes.append(f"frames {_ranges_text(check.decoded_ranges)} of {expected} decode")
        else:
            check.verdict = "damaged"
            notes.append(f"{len(good)} of {expected} frames decode (not {_ranges_text(_ranges(bad))})")
    else:
        if bad and 0 in good:
            check.verdict = "cut"
            notes.append(f"frame {max(bad)} (the last) does not decode")
        elif bad:
            check.verdict = "damaged"
            notes.append("frame 0 does not decode")
        if expected > n:
            check.verdict = "cut" if check.verdict == "ok" else check.verdict
            notes.append(f"{n} of {expected} frames in the file")
    if short:
        check.verdict = "cut"
        notes.append(short)
    check.reason = "; ".join(notes)


# -- many files -----------------------------------------------------------------------------
def _check_one(args: tuple) -> FileCheck:
    path, backend, full = args
    return check_video(path, backend, full=full)


def check_videos(paths: Sequence[str | os.PathLike], backend: str = "auto", *, full: bool = False, jobs: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """:func:`check_video` for each path, in ``jobs`` processes; ``progress(done, total)``
    after each file.  Results keep the order of ``paths``."""
    total = len(paths)
    results: list[FileCheck | None] = [None] * total
    if jobs <= 1 or total <= 1:
        for i, p in enumerate(paths):
            results[i] = check_video(p, backend, full=full)
            if progress:
                progress(i + 1, total)
    else:
        # Not fork: the parent may hold decoder and torch threads, which a forked child would
        # inherit mid-use.  A fork server imports this module (and torch) once for all workers.
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
        else:
            context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, total), mp_context=context) as pool:
            futures = {pool.submit(_check_one, (str(p), backend, full)): i for i, p in enumerate(paths)}
            for done, future in enumerate(as_completed(futures), 1):
                results[futures[future]] = future.result()
                if progress:
                    progress(done, total)
    return CheckReport([r for r in results if r is not None])
