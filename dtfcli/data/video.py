"""Video readers: one interface, two decoders (PyAV, decord), plus JPEG frame folders.

Clip convention: every reader returns frames as a ``torch.uint8`` tensor of shape
``(T, H, W, C)`` (RGB, C = 3), in the order asked for (duplicates allowed), already turned
upright according to the file's rotation metadata.

What "frame i" means is decided once per file, by demuxing its packets with PyAV (no
decoding): the presentation timestamps of the packets, sorted, are the frame timeline.
Container headers are not trusted for the frame count (WebM/MKV do not store one, and
some MP4/AVI headers are wrong).  Both backends use this same timeline, so they return the
same frame for the same index or timestamp.

AVI files (UCF101, HMDB51: MPEG-4 Part 2, often with B-frames) carry no presentation
timestamps, only a decode order, and seeking in them returns wrong frames in decord (and
unverifiable ones in PyAV).  For AVI both backends therefore decode sequentially from the
first frame up to the last frame asked for; frame i is the i-th frame the decoder outputs.
These clips are short, so this costs little and is always right.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

BACKENDS = ("auto", "pyav", "decord")
#: The backend ``auto`` tries first, then the other one.  Chosen from measurements in
#: docs/data.md (both are correct with this module's indexing; PyAV is the one that
#: counts decoded frames and needs no workaround for AVI).
AUTO_ORDER = ("pyav", "decord")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Containers without real presentation timestamps: decode in order, never seek.
_SEQUENTIAL_FORMATS = ("avi",)


class VideoDecodeError(ValueError):
    """A video that cannot be read: ``path`` says which file, ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep (path, reason) when sent back from a DataLoader worker
        return (type(self), (self.path, self.reason))


@dataclass
class FrameIndex:
    """The frame timeline of one video stream, from its packets (no decoding).

    ``pts``: presentation timestamps in stream time-base units, sorted (one per frame).
    ``keyframes``: sorted positions (into ``pts``) of frames a decoder can start from.
    ``seconds``: ``pts`` in seconds from the first frame.
    """

    pts: list[int]
    keyframes: list[int]
    seconds: np.ndarray
    time_base: Fraction
    sequential: bool  # True: identify frames by decode order (AVI)
    header_frames: int  # what the container header claims (0 = unknown)
    format_name: str
    codec_name: str
    rotation: int = 0  # degrees counter-clockwise to turn the stored picture upright
    stored_size: tuple[int, int] = (0, 0)  # (H, W) as stored, before rotation


def _open_container(path: Path):
    import av

    if not path.exists():
        raise VideoDecodeError(path, "no such file")
    if path.is_dir():
        raise VideoDecodeError(path, "is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"not a readable video container ({_ffmpeg_reason(exc)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(path, f"no video stream (streams found: {', '.join(kinds)})")
    return container


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() if ":" in text and len(text) > 80 else text


def _legacy_rotation_tag(stream) -> int:
    """Counter-clockwise rotation from the legacy ``rotate`` stream tag (clockwise degrees).

    Modern files carry a display matrix instead, which PyAV reports per decoded frame
    (``frame.rotation``); the readers use that.  This is only a hint for ``dtf data info``.
    """
    tag = (stream.metadata or {}).get("rotate")
    try:
        return int(round(-float(tag) / 90.0)) * 90 % 360 if tag is not None else 0
    except ValueError:
        return 0


def build_index(path: str | os.PathLike) -> FrameIndex:
    """Demux ``path`` (without decoding) and return its frame timeline.

    Raises VideoDecodeError for missing, empty, non-video or unreadable files.
    """
    import av

    path = Path(path)
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        fmt = container.format.name.split(",")[0]
        sequential = fmt in _SEQUENTIAL_FORMATS
        pts_key: list[tuple[int, bool]] = []  # (presentation or decode timestamp, keyframe)
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_corrupt:
                    continue  # the flush packet, or one cut short (truncated file): not a frame
                ts = packet.dts if sequential else packet.pts
                if ts is None:
                    ts = packet.dts
                if ts is None:
                    sequential = True
                    ts = len(pts_key)
                pts_key.append((int(ts), bool(packet.is_keyframe)))
        except av.FFmpegError as exc:
            if not pts_key:
                raise VideoDecodeError(path, f"cannot read packets ({_ffmpeg_reason(exc)})") from None
        if not pts_key:
            raise VideoDecodeError(path, "video stream has no frames")
        if sequential:
            # Decode order is display order for our purposes; timestamps from the frame rate.
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            time_base = Fraction(1, 1) / Fraction(rate)
            pts = list(range(len(pts_key)))
            keyframes = [0]
        else:
            time_base = Fraction(stream.time_base)
            order = sorted(range(len(pts_key)), key=lambda i: pts_key[i][0])
            pts = [pts_key[i][0] for i in order]
            keyframes = [pos for pos, i in enumerate(order) if pts_key[i][1]] or [0]
            if keyframes[0] != 0:
                keyframes.insert(0, 0)  # the decoder can always start at the beginning
        seconds = (np.asarray(pts, np.float64) - pts[0]) * float(time_base)
        return FrameIndex(
            pts=pts,
            keyframes=keyframes,
            seconds=seconds,
            time_base=time_base,
            sequential=sequential,
            header_frames=int(stream.frames or 0),
            format_name=fmt,
            codec_name=stream.codec_context.name,
            rotation=_legacy_rotation_tag(stream),
            stored_size=(stream.codec_context.height, stream.codec_context.width),
        )
    finally:
        container.close()


@dataclass
class DecodeStats:
    """How much work reads took: ``frames_decoded`` counts every frame the decoder produced
    (None where the backend cannot tell, i.e. decord), ``seeks`` the seeks it made."""

    frames_decoded: int | None = 0
    seeks: int = 0
    frames_returned: int = 0


class VideoReader:
    """Base class: a video as a list of frames on a timeline.

    Attributes: ``path``, ``num_frames`` (frames actually in the stream, from its packets),
    ``duration`` (seconds, first frame to end of last), ``fps`` (average, num_frames /
    duration), ``frame_times`` (seconds, one per frame), ``backend``.
    """

    backend = "base"

    def __init__(self, path: str | os.PathLike, index: FrameIndex):
        self.path = str(path)
        self.index = index
        self.frame_times = index.seconds
        self.num_frames = len(index.pts)
        if self.num_frames > 1:
            last_step = float(np.median(np.diff(self.frame_times[-min(8, self.num_frames) :])))
        else:
            last_step = 1.0 / 25
        self.duration = float(self.frame_times[-1]) + max(last_step, 1e-3)
        self.fps = self.num_frames / self.duration
        self.stats = DecodeStats()

    # -- public API -------------------------------------------------------------------
    def get_frames(self, indices: Sequence[int] | None = None, *, timestamps: Sequence[float] | None = None):
        """Frames at ``indices`` (positions on the timeline) or at ``timestamps`` (seconds from
        the first frame; the frame on screen at that time).  Returns uint8 (T, H, W, C)."""
        if (indices is None) == (timestamps is None):
            raise TypeError("give either indices or timestamps")
        if timestamps is not None:
            indices = self.indices_at(timestamps)
        return torch.from_numpy(self._read([[int(i) for i in indices]])[0])

    def _read(self, per_clip: list[list[int]]) -> list[np.ndarray]:
        """Decode the distinct frames of all clips once, each written straight into its
        place(s) in the clips' arrays: one uint8 (T, H, W, C) array per clip, or raise."""
        if not per_clip or not all(per_clip):
            raise ValueError("no frames requested")
        for idx in per_clip:
            for i in idx:
                if not 0 <= i < self.num_frames:
                    raise IndexError(f"{self.path}: frame {i} out of range (video has {self.num_frames} frames)")
        sink = _ClipSink(self.path, per_clip)
        self._decode_sorted(sink.wanted, sink)
        missing = [i for i in sink.wanted if i not in sink.done]
        if missing:
            raise VideoDecodeError(
                self.path,
                f"{len(missing)} of {len(sink.wanted)} frames could not be decoded (first: frame {missing[0]}); "
                "file truncated or corrupt",
            )
        self.stats.frames_returned += sum(len(idx) for idx in per_clip)
        return sink.clips

    def indices_at(self, timestamps: Sequence[float]) -> list[int]:
        """Timeline positions of the frames on screen at ``timestamps`` (seconds)."""
        times = self.frame_times
        out = []
        for t in timestamps:
            i = bisect.bisect_right(times, float(t) + 1e-6) - 1
            out.append(min(max(i, 0), self.num_frames - 1))
        return out

    def grid_timestamps(self, positions: Sequence[int]) -> list[float]:
        """Map positions on a uniform grid of ``num_frames`` slots over the duration to times.

        Sampling plans produce such positions; reading them by time (rather than as frame
        numbers) keeps clips uniform in time for variable-frame-rate videos.  For a
        constant frame rate, position i is exactly frame i.
        """
        step = self.duration / self.num_frames
        return [(int(p) + 0.5) * step for p in positions]

    def read_clip(self, positions: Sequence[int]):
        """Frames for grid ``positions`` (see :meth:`grid_timestamps`): uint8 (T, H, W, C)."""
        return self.get_frames(timestamps=self.grid_timestamps(positions))

    def read_clips(self, clips: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """Several clips of grid positions (e.g. the test views) in ONE pass over the file:
        overlapping or nearby clips share their decoding.  Returns one uint8 (T, H, W, C)
        tensor per clip.  Reading clip by clip instead re-decodes from a keyframe each time
        (3x the frames for 10 overlapping clips; see benchmarks/bench_decode.py)."""
        per_clip = [self.indices_at(self.grid_timestamps(clip)) for clip in clips]
        return [torch.from_numpy(frames) for frames in self._read(per_clip)]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, frames={self.num_frames}, fps={self.fps:.3f}, "
            f"duration={self.duration:.3f}s)"
        )

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> None:
        """Decode the frames at the sorted positions ``wanted`` and hand each to ``sink(index,
        uint8 (H, W, C) upright frame)``; frames not reached are reported missing by ``_read``."""
        raise NotImplementedError


class _ClipSink:
    """Where decoded frames go: straight into the output array of every clip that uses them
    (a frame shared by several clips is decoded and converted once, then copied per use).
    No dict of decoded frames is kept and nothing is stacked afterwards."""

    def __init__(self, path: str, per_clip: list[list[int]]):
        self.path = path
        self.lengths = [len(idx) for idx in per_clip]
        self.places: dict[int, list[tuple[int, int]]] = {}  # index -> [(clip, slot), ...]
        for c, idx in enumerate(per_clip):
            for t, i in enumerate(idx):
                self.places.setdefault(i, []).append((c, t))
        self.wanted = sorted(self.places)
        self.reset()

    def reset(self) -> None:
        """Forget what was delivered (before another backend reads the same frames)."""
        self.clips: list = [None] * len(self.lengths)
        self.done: set[int] = set()

    def __call__(self, index: int, frame: np.ndarray) -> None:
        for c, t in self.places[index]:
            out = self.clips[c]
            if out is None:
                out = self.clips[c] = np.empty((self.lengths[c], *frame.shape), frame.dtype)
            elif out.shape[1:] != frame.shape:
                raise VideoDecodeError(
                    self.path, f"frame size changes within the video ({out.shape[1:]} then {frame.shape})"
                )
            out[t] = frame
        self.done.add(index)


def _upright(array: np.ndarray, rotation: int) -> np.ndarray:
    """The frame turned upright: a view (the sink copies it into place)."""
    k = (rotation // 90) % 4
    return np.rot90(array, k=k) if k else array


class PyAVReader(VideoReader):
    """PyAV (FFmpeg) decoding: seeks to the keyframe before each group of wanted frames and
    decodes forward, identifying frames by their presentation timestamp.

    Only the frames asked for are converted to RGB, once each, with one colour converter
    per read (``to_ndarray(format="rgb24")`` would set up a new one for every frame), and
    copied straight into the clips they belong to."""

    backend = "pyav"
    #: Decode on through up to this many unwanted frames rather than seek past them: a seek
    #: flushes the decoder (and its frame threads), which cost about as much as decoding 5-10
    #: frames in our measurements (340p h264, 2 cores); the figure is not critical.
    max_frames_skipped_by_decoding = 8

    def __init__(self, path: str | os.PathLike, index: FrameIndex | None = None):
        super().__init__(path, index or build_index(path))

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        container = _open_container(Path(self.path))
        converter = VideoReformatter()

        def deliver(position: int, frame) -> None:
            # threads=1: the codec's frame threads already use the cores while we convert.
            rgb = converter.reformat(frame, format="rgb24", threads=1).to_ndarray()
            rotation = getattr(frame, "rotation", 0) or self.index.rotation
            sink(position, _upright(rgb, int(rotation)))

        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.index.sequential:
                self._decode_in_order(container, stream, wanted, deliver)
            else:
                self._decode_seeking(container, stream, wanted, deliver)
        except av.FFmpegError:
            pass  # frames not reached are reported as missing by _read
        finally:
            container.close()

    @staticmethod
    def _frames(container, stream):
        """Decoded frames, packet by packet: a damaged packet is skipped and decoding goes on
        (``container.decode`` would stop there and lose the frames still in the decoder)."""
        import av

        for packet in container.demux(stream):
            if packet.is_corrupt:
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            yield from frames

    def _decode_in_order(self, container, stream, wanted, deliver) -> None:
        targets = set(wanted)
        last = wanted[-1]
        for position, frame in enumerate(self._frames(container, stream)):
            self.stats.frames_decoded += 1
            if position in targets:
                deliver(position, frame)
            if position >= last:
                break

    def _decode_seeking(self, container, stream, wanted, deliver) -> None:
        index = self.index
        pos_of_pts = {p: i for i, p in enumerate(index.pts)}
        remaining = list(wanted)
        failed_tries = 0
        while remaining:
            target = remaining[0]
            # First try: the keyframe before the target.  If that made no progress (the
            # demuxer landed after the target), try once more from the very beginning.
            key = index.keyframes[bisect.bisect_right(index.keyframes, target) - 1] if not failed_tries else 0
            # Seek by the keyframe's pts.  A packet flagged as a keyframe is not always a point
            # the demuxer can seek to (MP4 seeks only to its sync-sample table, and x264's
            # non-IDR I-frames are not in it), so a seek may land earlier: that only costs
            # decoding, since frames are identified by pts below.
            container.seek(index.pts[key], stream=stream, backward=True, any_frame=False)
            self.stats.seeks += 1
            progressed = False
            for frame in self._frames(container, stream):
                self.stats.frames_decoded += 1
                ts = frame.pts if frame.pts is not None else frame.dts
                position = pos_of_pts.get(ts)
                if position is None:
                    continue
                if position in remaining:
                    deliver(position, frame)
                    remaining.remove(position)
                    progressed = True
                if not remaining:
                    break
                nxt = remaining[0]
                if nxt < position:
                    break  # the seek landed past it: try again
                next_key = index.keyframes[bisect.bisect_right(index.keyframes, nxt) - 1]
                # Decode on while the next target is reachable without passing a later
                # keyframe, or when a seek would save only a few frames (the test views'
                # overlapping clips leave gaps of a few frames); otherwise a fresh seek skips
                # the frames in between.  (A seek can land before the keyframe asked for,
                # hence position >= key.)
                if position >= key and next_key - position - 1 > self.max_frames_skipped_by_decoding:
                    break
            else:
                if not progressed:
                    return  # decoder ran dry: the rest are reported missing
            if progressed:
                failed_tries = 0
            else:
                failed_tries += 1
                if failed_tries > 1:
                    return


class DecordReader(VideoReader):
    """decord decoding (batched, fast), on the shared PyAV packet timeline.

    decord's own frame count and seeking are not trusted: requests never go past the
    timeline from the packets (decord can hang when asked past the real end), and AVI files
    are read in order from the first frame (decord returns wrong frames after seeking in them).
    """

    backend = "decord"

    def __init__(self, path: str | os.PathLike, index: FrameIndex | None = None):
        super().__init__(path, index or build_index(path))
        self.stats.frames_decoded = None

    def _open(self):
        try:
            import decord
        except ImportError as exc:  # pragma: no cover - depends on the platform
            raise VideoDecodeError(self.path, f"decord backend not available ({exc})") from None
        try:
            return decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
        except Exception as exc:  # decord raises DECORDError (a RuntimeError) with a C++ trace
            raise VideoDecodeError(self.path, f"decord cannot open it ({str(exc).splitlines()[0][:120]})") from None

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> None:
        vr = self._open()
        try:
            available = min(len(vr), self.num_frames)
            if self.index.sequential:
                chunk = 32
                targets = set(wanted)
                for start in range(0, min(wanted[-1] + 1, available), chunk):
                    stop = min(start + chunk, wanted[-1] + 1, available)
                    batch = vr.get_batch(list(range(start, stop))).asnumpy()
                    for offset, frame in enumerate(batch):
                        if start + offset in targets:
                            sink(start + offset, frame)
            else:
                # Map our timeline to decord's by timestamp (its own may start elsewhere or
                # drop frames); fall back to the same position when decord has no timestamps.
                mapped = self._map_to_decord(vr, wanted, available)
                ok = [(w, m) for w, m in zip(wanted, mapped, strict=True) if m is not None]
                if ok:
                    batch = vr.get_batch([m for _, m in ok]).asnumpy()
                    for (w, _), frame in zip(ok, batch, strict=True):
                        sink(w, frame)
        except VideoDecodeError:
            raise
        except Exception:
            pass  # decoding stopped early: missing frames are reported by _read
        finally:
            del vr

    def _map_to_decord(self, vr, wanted: list[int], available: int) -> list[int | None]:
        try:
            starts = np.asarray(vr.get_frame_timestamp(list(range(len(vr))))[:, 0], np.float64)
        except Exception:
            starts = None
        if starts is None or not np.all(np.isfinite(starts)) or starts.min() < -1:
            return [w if w < available else None for w in wanted]
        starts = starts - starts[0]
        half = 0.5 * float(np.median(np.diff(self.frame_times))) if self.num_frames > 1 else 0.02
        mapped: list[int | None] = []
        for w in wanted:
            j = int(np.argmin(np.abs(starts - self.frame_times[w])))
            mapped.append(j if abs(starts[j] - self.frame_times[w]) <= half + 1e-3 and j < len(vr) else None)
        return mapped


class FrameFolderReader(VideoReader):
    """A folder of image files, one per frame, in name order (Something-Something V1:
    ``{id}/00001.jpg``).  There is no timing in a folder, so ``fps`` is given (SSv1: 12)."""

    backend = "frames"

    def __init__(self, path: str | os.PathLike, fps: float = 12.0):
        folder = Path(path)
        if not folder.is_dir():
            raise VideoDecodeError(folder, "no such frame folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise VideoDecodeError(folder, "frame folder has no .jpg/.png files")
        self.files = files
        n = len(files)
        index = FrameIndex(
            pts=list(range(n)),
            keyframes=list(range(n)),
            seconds=np.arange(n) / float(fps),
            time_base=Fraction(1, 1) / Fraction(fps).limit_denominator(1000),
            sequential=False,
            header_frames=n,
            format_name="frames",
            codec_name=files[0].suffix.lstrip(".").lower(),
        )
        super().__init__(folder, index)
        self.duration = n / float(fps)
        self.fps = float(fps)

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> None:
        from PIL import Image  # torchvision's own image decoding is deprecated (0.29)

        for i in wanted:
            try:
                with Image.open(self.files[i]) as image:
                    frame = np.asarray(image.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise VideoDecodeError(self.files[i], f"cannot decode image ({exc})") from None
            self.stats.frames_decoded += 1
            sink(i, frame)


def open_video(path: str | os.PathLike, backend: str = "auto", *, fps: float = 12.0) -> VideoReader:
    """Open a video file (or a folder of frames) for reading.

    ``backend``: "pyav", "decord" or "auto" (``AUTO_ORDER[0]``, and the other one when the
    first cannot read the file; see :class:`AutoReader`).  ``fps`` only applies to frame
    folders.  Raises VideoDecodeError(path, reason) for anything that is not a readable video.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r} (choose from {', '.join(BACKENDS)})")
    p = Path(path)
    if p.is_dir():
        return FrameFolderReader(p, fps=fps)
    index = build_index(p)
    if backend == "pyav":
        return PyAVReader(p, index)
    if backend == "decord":
        return DecordReader(p, index)
    return AutoReader(p, index)


def _make(backend: str, path: Path, index: FrameIndex) -> VideoReader:
    return PyAVReader(path, index) if backend == "pyav" else DecordReader(path, index)


class AutoReader(VideoReader):
    """Reads with ``AUTO_ORDER[0]``; if a read fails (or that backend is missing), retries it
    with the other backend and keeps using whichever worked.  The error raised when both
    fail is the first backend's."""

    backend = "auto"

    def __init__(self, path: str | os.PathLike, index: FrameIndex | None = None):
        super().__init__(path, index or build_index(path))
        self._readers = [_make(name, Path(path), self.index) for name in AUTO_ORDER]
        self.stats = self._readers[0].stats
        self.used_backend = AUTO_ORDER[0]
        self.fallbacks = 0

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> None:
        first_error: VideoDecodeError | None = None
        for reader in list(self._readers):
            sink.reset()  # the next backend reads every frame again
            try:
                reader._decode_sorted(wanted, sink)
            except VideoDecodeError as exc:
                first_error = first_error or exc
                continue
            if all(i in sink.done for i in wanted):
                if reader is not self._readers[0]:
                    self.fallbacks += 1
                    self._readers.remove(reader)
                    self._readers.insert(0, reader)  # keep using the one that worked
                    self.stats = reader.stats
                self.used_backend = reader.backend
                return
        if first_error is not None:
            raise first_error
