"""The decord backend: batched decoding on the shared PyAV packet timeline, used only for
the containers and codecs where the container matrix (tests/test_containers.py,
docs/data.md) proved that decord returns the timeline's frames; any other file is read with
PyAV instead, and the reader says why (``backend_note``).
"""

from __future__ import annotations

import os

import numpy as np

from dtfcli.data.video import (
    FrameIndex,
    PyAVReader,
    VideoDecodeError,
    VideoReader,
    _ClipSink,
    _set_library_logging,
    build_index,
)

# Where decord's sparse reads return the right frames (closed GOPs only, see _decord_unsafe).
_DECORD_SEEK_SAFE = {"mov": ("h264", "vp8", "vp9"), "matroska": ("h264", "vp8", "vp9")}
# Where decord's in-order reads from the first frame return the right frames, bit for bit.
# (MPEG-4 Part 2 in AVI comes out as the right frames, but decord's older FFmpeg rounds a
# few pixel values differently from PyAV's: up to 2 levels, 17 of 46 million values in a
# 200-frame 320x240 Xvid file.)
_DECORD_IN_ORDER_SAFE = {"avi": ("mjpeg",)}


# What the container matrix measured where decord is not used (format -> reason).
_DECORD_DEFECTS = {
    "mpeg": "decord's timestamps for MPEG program streams are invalid and its sparse reads return wrong frames",
    "mpegts": "decord returns frames a keyframe interval late in MPEG transport streams",
    "asf": "decord returns frames a keyframe interval early in ASF/WMV files",
    "flv": "decord's sparse reads return wrong frames in FLV files",
    "ogg": "decord cannot open Ogg files",
}


def _decord_unsafe(index: FrameIndex) -> str | None:
    """Why decord's frames would not be the timeline's frames for this file (None: safe).
    From the container matrix (docs/data.md): decord returns wrong frames in MPEG program and
    transport streams, ASF/WMV and FLV, and near the keyframes of open-GOP streams (HEVC,
    MPEG-4 Part 2 and MPEG-2 with B-frames, open-GOP h264) in any container."""
    codecs = (_DECORD_IN_ORDER_SAFE if index.sequential else _DECORD_SEEK_SAFE).get(index.format_name)
    if codecs is None:
        return _DECORD_DEFECTS.get(index.format_name, f"decord is not proven on {index.format_name} files")
    if index.open_gop and not index.sequential:
        return "decord returns wrong frames near the keyframes of open-GOP streams"
    if index.codec_name not in codecs:
        if index.codec_name == "mpeg4" and index.format_name == "avi":
            return "decord's MPEG-4 Part 2 decoding differs from PyAV's in some pixel values"
        return f"decord is not proven on {index.codec_name} in {index.format_name} files"
    return None


class DecordReader(VideoReader):
    """decord decoding (batched), on the shared PyAV packet timeline, for the files where it
    returns the timeline's frames (see :func:`_decord_unsafe`); any other file is read with
    PyAV (``used_backend`` is then "pyav" and ``backend_note`` says why).

    decord's own frame count and seeking are not trusted: requests never go past the
    timeline from the packets (decord can hang when asked past the real end), its
    timestamps must agree with the packets', and AVI files are read in order from the first
    frame.
    """

    backend = "decord"

    def __init__(self, path: str | os.PathLike, index: FrameIndex | None = None):
        super().__init__(path, index or build_index(path))
        self.stats.frames_decoded = None
        self.backend_note = _decord_unsafe(self.index)
        self._pyav: PyAVReader | None = None
        if self.backend_note is not None:
            self._use_pyav()

    def _use_pyav(self) -> None:
        self._pyav = PyAVReader(self.path, self.index)
        self.stats = self._pyav.stats

    @property
    def used_backend(self) -> str:
        return "pyav" if self._pyav is not None else "decord"

    def _open(self):
        try:
            import decord
        except ImportError as exc:  # pragma: no cover - depends on the platform
            raise VideoDecodeError(self.path, f"decord backend not available ({exc})") from None
        _set_library_logging("decord")
        try:
            return decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
        except Exception as exc:  # decord raises DECORDError (a RuntimeError) with a C++ trace
            raise VideoDecodeError(self.path, f"decord cannot open it ({_decord_reason(exc)})") from None

    def _decode_sorted(self, wanted: list[int], sink: _ClipSink) -> str | None:
        if self._pyav is not None:
            return self._pyav._decode_sorted(wanted, sink)
        vr = self._open()
        try:
            if len(vr) != self.num_frames:
                reason = f"decord sees {len(vr)} frames where the packets list {self.num_frames}"
            elif self.index.sequential:
                return self._in_order(vr, wanted, sink)
            else:
                reason, mapped = self._map_to_decord(vr, wanted)
                if reason is None:
                    batch = vr.get_batch(mapped).asnumpy()
                    for w, frame in zip(wanted, batch, strict=True):
                        sink(w, frame)
                    return None
        except VideoDecodeError:
            raise
        except Exception as exc:
            return f"decord stopped ({_decord_reason(exc)})"
        finally:
            del vr
        # decord's view of this file disagrees with the packets: PyAV reads it from now on.
        self.backend_note = reason
        self._use_pyav()
        return self._pyav._decode_sorted(wanted, sink)

    def _in_order(self, vr, wanted: list[int], sink: _ClipSink) -> None:
        chunk = 32
        targets = set(wanted)
        for start in range(0, wanted[-1] + 1, chunk):
            stop = min(start + chunk, wanted[-1] + 1)
            batch = vr.get_batch(list(range(start, stop))).asnumpy()
            for offset, frame in enumerate(batch):
                if start + offset in targets:
                    sink(start + offset, frame)
        return None

    def _map_to_decord(self, vr, wanted: list[int]) -> tuple[str | None, list[int]]:
        """decord's index of each wanted frame, found by timestamp; or why that cannot be
        trusted (garbage timestamps, or ones that disagree with the packets)."""
        try:
            starts = np.asarray(vr.get_frame_timestamp(list(range(len(vr))))[:, 0], np.float64)
        except Exception:
            return "decord reports no frame timestamps for this file", []
        if not np.all(np.isfinite(starts)) or starts.min() < -1:
            return "decord's frame timestamps for this file are invalid", []
        starts = starts - starts[0]
        ours = self.frame_times
        if len(starts) != len(ours) or np.abs(starts - ours).max() > 0.5 * _min_step(ours) + 1e-3:
            return "decord's frame timestamps disagree with the packets", []
        return None, list(wanted)


def _decord_reason(exc: Exception) -> str:
    """decord's message without its log prefixes ("[08:08:38] /src/.../file.cc:218: ")."""
    import re

    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", line).strip()[:160]


def _min_step(times: np.ndarray) -> float:
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(steps.min()) if len(steps) else 0.04
