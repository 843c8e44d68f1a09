"""Video readers: one interface, two decoders (PyAV, decord), plus JPEG frame folders.

Clip convention: every reader returns frames as a ``torch.uint8`` tensor of shape
``(T, H, W, C)`` (RGB, C = 3), in the order asked for (duplicates allowed), already turned
upright according to the file's rotation metadata.

What "frame i" means: the i-th frame of a plain decode of the whole stream from its start
(PyAV, every frame, presentation order).  Every read, by any backend, in any order, returns
exactly that frame or raises; tests/test_containers.py checks it pixel for pixel for every
container and codec in ``VIDEO_EXTENSIONS``.

The timeline is decided once per file by demuxing its packets with PyAV (no decoding):
the sorted presentation timestamps of the packets (for AVI, which stores only a position
per frame in its index, those positions: a camera file that dropped frames keeps its gaps).
Container headers are not trusted for the frame count.

How each backend keeps that promise (measurements in docs/data.md):

* PyAV seeks only in containers whose seeks were shown to land on or before the keyframe
  asked for, with frame timestamps that match the packets (MP4/MOV/3GP, Matroska/WebM,
  ASF/WMV, Ogg); frames are identified by timestamp.  A seek that lands after the frame
  wanted, or a frame whose timestamp is not in the index, switches the file to sequential
  decoding.  Other containers (AVI, MPEG program and transport streams, FLV, anything else)
  are decoded in order from the first frame, frame i being the i-th frame out.
* decord is used only where it was shown to return the right frames: MP4/MOV and
  Matroska/WebM with h264/VP8/VP9 and closed GOPs (no frame after a keyframe in decode order
  is shown before it), its timestamps agreeing with the packets; and MJPEG AVI read in
  order from the first frame.  Anything else asked of decord is read with
  PyAV instead (``used_backend`` says so, ``backend_note`` says why).
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
#: The backend ``auto`` tries first, then the other one where that one is safe for the file.
#: PyAV first: it is correct for every container accepted and the faster in our measurements
#: (docs/data.md).
AUTO_ORDER = ("pyav", "decord")
#: Exactly the file types the container matrix (tests/test_containers.py) proves.
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".3gp", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".mpg", ".mpeg", ".ts", ".flv", ".ogv",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Containers (FFmpeg demuxer names, first of the list) in which PyAV may seek: seeks land
# on or before the keyframe asked for and frames keep the packets' timestamps.  In MPEG
# program/transport streams and FLV seeks land a keyframe interval late (in program streams
# the first frames out then carry wrong timestamps); AVI has only decode positions.
# Everything else is read in order.
_SEEKABLE_FORMATS = ("mov", "matroska", "asf", "ogg")
_LOGS_SET: set[str] = set()  # the libraries whose log level is set


def _debug() -> bool:
    return os.environ.get("DTF_DEBUG") == "1"


def _set_library_logging(library: str = "av") -> None:
    """FFmpeg (PyAV's and decord's copies) logs to stderr on its own; keep it quiet unless
    DTF_DEBUG=1 (``--debug``): decode problems reach the user as VideoDecodeError."""
    if library in _LOGS_SET:
        return
    _LOGS_SET.add(library)
    if library == "av":
        import av.logging

        av.logging.set_level(av.logging.WARNING if _debug() else None)
    else:
        import decord.logging

        decord.logging.set_level(decord.logging.WARNING if _debug() else decord.logging.QUIET)


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
    ``sequential``: frames are identified by decode order (the reader never seeks).
    ``open_gop``: some frame after a keyframe in decode order is shown before it.
    """

    pts: list[int]
    keyframes: list[int]
    seconds: np.ndarray
    time_base: Fraction
    sequential: bool
    header_frames: int  # what the container header claims (0 = unknown)
    format_name: str
    codec_name: str
    rotation: int = 0  # degrees counter-clockwise to turn the stored picture upright
    stored_size: tuple[int, int] = (0, 0)  # (H, W) as stored, before rotation
    open_gop: bool = False


def _open_container(path: Path):
    import av

    if not path.exists():
        raise VideoDecodeError(path, "no such file")
    if path.is_dir():
        raise VideoDecodeError(path, "is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    _set_library_logging()
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
        sequential = fmt not in _SEEKABLE_FORMATS
        packets: list[tuple[int | None, bool]] = []  # (presentation or else decode timestamp, keyframe)
        open_gop = False
        key_ts = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_corrupt:
                    continue  # the flush packet, a dropped-frame marker, or one cut short: not a frame
                ts = packet.pts if packet.pts is not None else packet.dts
                if packet.is_keyframe:
                    key_ts = ts
                elif ts is not None and key_ts is not None and ts < key_ts:
                    open_gop = True  # shown before the keyframe it follows in decode order
                packets.append((None if ts is None else int(ts), bool(packet.is_keyframe)))
        except av.FFmpegError as exc:
            if not packets:
                raise VideoDecodeError(path, f"cannot read packets ({_ffmpeg_reason(exc)})") from None
        if not packets:
            raise VideoDecodeError(path, "video stream has no frames")
        stamps = [ts for ts, _ in packets]
        if any(ts is None for ts in stamps) or len(set(stamps)) != len(stamps):
            # No usable timestamps: frames are decode positions, times from the frame rate.
            sequential = True
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            time_base = Fraction(1, 1) / Fraction(rate)
            pts = list(range(len(packets)))
            keyframes = [0]
        else:
            time_base = Fraction(stream.time_base)
            order = sorted(range(len(packets)), key=lambda i: stamps[i])
            pts = [stamps[i] for i in order]
            keyframes = [pos for pos, i in enumerate(order) if packets[i][1]] or [0]
            if keyframes[0] != 0:
                keyframes.insert(0, 0)  # the decoder can always start at the beginning
        seconds = (np.asarray(pts, np.float64) - pts[0]) * float(time_base)
        return FrameIndex(
            pts=pts,
            keyframes=keyframes if not sequential else [0],
            seconds=seconds,
            time_base=time_base,
            sequential=sequential,
            header_frames=int(stream.frames or 0),
            format_name=fmt,
            codec_name=stream.codec_context.name,
            rotation=_legacy_rotation_tag(stream),
            stored_size=(stream.codec_context.height, stream.codec_context.width),
            open_gop=open_gop,
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
        self._decode_checked(sink.wanted, sink)
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

    #: What backend decoded the last read (``AutoReader`` and a ``DecordReader`` that had to
    #: use PyAV for a file say which).
    @property
    def used_backend(self) -> str:
        return self.backend

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> str | None:
        """Decode the frames at the sorted positions ``wanted`` and hand each to ``sink(index,
        uint8 (H, W, C) upright frame)``.  Returns why frames may be missing (None if no reason
        is known); :meth:`_decode_checked` turns missing frames into an error."""
        raise NotImplementedError

    def _decode_checked(self, wanted: list[int], sink: _ClipSink) -> None:
        """:meth:`_decode_sorted`, then a VideoDecodeError naming the first frame not delivered
        and the reason; never a substitute frame."""
        reason = self._decode_sorted(wanted, sink)
        missing = [i for i in wanted if i not in sink.done]
        if missing:
            more = f" ({len(missing)} of {len(wanted)} frames asked for missing)" if len(missing) > 1 else ""
            raise VideoDecodeError(
                self.path, f"frame {missing[0]} could not be decoded: {reason or 'the decoder did not return it'}{more}"
            )


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


class _Unreliable(Exception):
    """Seeking in this file did not give the frames the timeline says: read it in order."""


class PyAVReader(VideoReader):
    """PyAV (FFmpeg) decoding.  In containers where seeking is reliable: seek to the keyframe
    before each group of wanted frames and decode forward, identifying frames by their
    presentation timestamp.  Elsewhere (and after any seek that does not give the frames the
    timeline says): decode in order from the first frame.

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
        self.seeks_reliable = not self.index.sequential
        #: Why this file is read in order although its container is seekable (None if it is not).
        self.seek_note: str | None = None

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> str | None:
        from av.video.reformatter import VideoReformatter

        converter = VideoReformatter()

        def deliver(position: int, frame) -> None:
            # threads=1: the codec's frame threads already use the cores while we convert.
            rgb = converter.reformat(frame, format="rgb24", threads=1).to_ndarray()
            rotation = getattr(frame, "rotation", 0) or self.index.rotation
            sink(position, _upright(rgb, int(rotation)))

        if self.seeks_reliable:
            try:
                return self._with_stream(lambda c, s: self._decode_seeking(c, s, wanted, deliver))
            except _Unreliable as exc:
                self.seeks_reliable = False  # for this file, from now on: read in order
                self.seek_note = str(exc)
                sink.reset()
        return self._with_stream(lambda c, s: self._decode_in_order(c, s, wanted, deliver))

    def _with_stream(self, decode) -> str | None:
        import av

        container = _open_container(Path(self.path))
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return decode(container, stream)
        except av.FFmpegError as exc:
            return f"the file cannot be read past this point ({_ffmpeg_reason(exc)})"
        finally:
            container.close()

    def _frames(self, container, stream, errors: list[str]):
        """Decoded frames, packet by packet: a packet the decoder rejects is skipped and
        decoding goes on (``container.decode`` would stop there and lose the frames still in
        the decoder); why is appended to ``errors``.  Packets the demuxer flags as damaged are
        not in the timeline either (see :func:`build_index`) and are skipped."""
        import av

        for packet in container.demux(stream):
            if packet.is_corrupt:
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                errors.append(f"the decoder rejected its data ({_ffmpeg_reason(exc)})")
                continue
            yield from frames

    def _decode_in_order(self, container, stream, wanted, deliver) -> str | None:
        """Frame i is the i-th frame out of the decoder.  A packet that fails to decode would
        shift every later frame, so it ends the read (the frames not yet delivered are
        reported missing with the decoder's reason)."""
        targets = set(wanted)
        last = wanted[-1]
        errors: list[str] = []
        position = -1
        for frame in self._frames(container, stream, errors):
            if errors:
                break
            position += 1
            self.stats.frames_decoded += 1
            if position in targets:
                deliver(position, frame)
            if position >= last:
                return None
        if errors:
            return f"{errors[0]} after {position + 1} frames had been decoded"
        return f"the stream ends after {position + 1} decoded frames (its packets list {self.num_frames})"

    def _decode_seeking(self, container, stream, wanted, deliver) -> str | None:
        import av

        index = self.index
        pos_of_pts = {p: i for i, p in enumerate(index.pts)}
        errors: list[str] = []
        i = 0
        while i < len(wanted):
            target = wanted[i]
            key = index.keyframes[bisect.bisect_right(index.keyframes, target) - 1]
            # Seek by the keyframe's pts.  A packet flagged as a keyframe is not always a point
            # the demuxer can seek to (MP4 seeks only to its sync-sample table, and x264's
            # non-IDR I-frames are not in it), so a seek may land earlier: that only costs
            # decoding, since frames are identified by pts below.  Landing later is checked.
            try:
                container.seek(index.pts[key], stream=stream, backward=True, any_frame=False)
            except av.FFmpegError as exc:
                raise _Unreliable(f"a seek for frame {target} failed ({_ffmpeg_reason(exc)})") from None
            self.stats.seeks += 1
            first = True
            for frame in self._frames(container, stream, errors):
                self.stats.frames_decoded += 1
                ts = frame.pts if frame.pts is not None else frame.dts
                position = pos_of_pts.get(ts)
                if position is None:
                    raise _Unreliable(f"a frame decoded after a seek has timestamp {ts}, not in the packets")
                if first and position > target:
                    raise _Unreliable(f"a seek for frame {target} landed at frame {position}")
                first = False
                if position < target:
                    continue
                if position > target:
                    # Decoded from before the target and went past it: its data did not decode,
                    # or the decoder dropped it after the seek (then a read in order has it).
                    if errors:
                        return errors[-1]
                    raise _Unreliable(f"frame {target} was not output after a seek")
                deliver(position, frame)
                i += 1
                if i == len(wanted):
                    return None
                target = wanted[i]
                next_key = index.keyframes[bisect.bisect_right(index.keyframes, target) - 1]
                # Decode on while the next target is reachable without passing a later
                # keyframe, or when a seek would save only a few frames (the test views'
                # overlapping clips leave gaps of a few frames); otherwise a fresh seek skips
                # the frames in between.
                if next_key > position and next_key - position - 1 > self.max_frames_skipped_by_decoding:
                    break
            else:
                if first:
                    raise _Unreliable(f"a seek for frame {target} gave no frames")
                # The decoder ran dry before the target, which has a packet: a decode error, or
                # a seek that went wrong (a read in order tells which).
                if errors:
                    return errors[-1]
                raise _Unreliable(f"the stream ran dry before frame {target} after a seek")
        return None


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

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> str | None:
        from PIL import Image  # torchvision's own image decoding is deprecated (0.29)

        for i in wanted:
            try:
                with Image.open(self.files[i]) as image:
                    frame = np.asarray(image.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise VideoDecodeError(self.files[i], f"cannot decode image ({exc})") from None
            self.stats.frames_decoded += 1
            sink(i, frame)
        return None


def open_video(path: str | os.PathLike, backend: str = "auto", *, fps: float = 12.0) -> VideoReader:
    """Open a video file (or a folder of frames) for reading.

    ``backend``: "pyav", "decord" or "auto" (``AUTO_ORDER[0]``, and the other one when the
    first cannot read the file and the other is safe for it; see :class:`AutoReader`).
    ``fps`` only applies to frame folders.  Raises VideoDecodeError(path, reason) for
    anything that is not a readable video.
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


class AutoReader(VideoReader):
    """Reads with ``AUTO_ORDER[0]``; if a read fails, retries it with the other backend where
    that one is installed and safe for the file (decord: see :func:`_decord_unsafe`), and
    keeps using whichever worked.  The error raised when every backend fails is the first
    backend's."""

    backend = "auto"

    def __init__(self, path: str | os.PathLike, index: FrameIndex | None = None):
        super().__init__(path, index or build_index(path))
        # decord only where it is safe for this file; whether it is installed shows when it is
        # first needed (a VideoDecodeError saying so), so PyAV-only reads never import it.
        names = [n for n in AUTO_ORDER if n == "pyav" or _decord_unsafe(self.index) is None]
        self._readers = [PyAVReader(path, self.index) if n == "pyav" else DecordReader(path, self.index) for n in names]
        self.stats = self._readers[0].stats
        self._used = self._readers[0].used_backend
        self.fallbacks = 0

    @property
    def used_backend(self) -> str:
        return self._used

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> str | None:
        first_error: VideoDecodeError | None = None
        for reader in list(self._readers):
            sink.reset()  # the next backend reads every frame again
            try:
                reader._decode_checked(wanted, sink)
            except VideoDecodeError as exc:
                first_error = first_error or exc
                continue
            if reader is not self._readers[0]:
                self.fallbacks += 1
                self._readers.remove(reader)
                self._readers.insert(0, reader)  # keep using the one that worked
                self.stats = reader.stats
            self._used = reader.used_backend
            return None
        assert first_error is not None
        raise first_error


# The decord reader lives in its own module; imported last because it builds on the classes above.
from dtfcli.data.video_decord import DecordReader, _decord_unsafe  # noqa: E402
