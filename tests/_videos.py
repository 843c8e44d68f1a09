"""Test helpers: make real encoded videos whose frames say which frame they are.

Every frame carries its index as a binary code of black/white blocks (``CODE_BITS`` bits,
most significant first, laid out in a ``CODE_ROWS`` x ``CODE_COLS`` grid over the whole
frame), so a test can tell WHICH frame a reader returned after a seek, not only that it
returned something.  Blocks are large and flat so the code survives lossy codecs and
resizing.  A small red square marks the top-left corner so orientation can be checked.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CODE_ROWS, CODE_COLS = 2, 5
CODE_BITS = CODE_ROWS * CODE_COLS  # up to 1024 frames


def coded_frame(index: int, height: int, width: int) -> np.ndarray:
    """A uint8 (H, W, 3) RGB frame that encodes ``index`` in blocks, plus a top-left marker."""
    frame = np.zeros((height, width, 3), np.uint8)
    bh, bw = height // CODE_ROWS, width // CODE_COLS
    for bit in range(CODE_BITS):
        if (index >> (CODE_BITS - 1 - bit)) & 1:
            r, c = divmod(bit, CODE_COLS)
            frame[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = 255
    # Orientation marker: red square at the top-left, wholly inside block (0, 0).
    m = max(2, min(bh, bw) // 3)
    frame[:m, :m] = (255, 0, 0)
    return frame


def read_code(frame: np.ndarray) -> int:
    """Decode the index drawn by :func:`coded_frame` from a uint8 (H, W, 3) frame."""
    height, width = frame.shape[:2]
    bh, bw = height // CODE_ROWS, width // CODE_COLS
    gray = np.asarray(frame, np.float32).mean(axis=2)
    value = 0
    for bit in range(CODE_BITS):
        r, c = divmod(bit, CODE_COLS)
        # Sample the lower-right part of the block: away from the marker and the edges.
        cy, cx = r * bh + (3 * bh) // 4, c * bw + (3 * bw) // 4
        patch = gray[cy - 1:cy + 2, cx - 1:cx + 2]
        value = (value << 1) | int(patch.mean() > 127)
    return value


def write_video(
    path: Path,
    num_frames: int,
    *,
    size: tuple[int, int] = (48, 64),
    fps: int = 25,
    codec: str = "libx264",
    container_format: str | None = None,
    gop: int = 12,
    rotation: int = 0,
    timestamps_ms: list[int] | None = None,
    options: dict[str, str] | None = None,
    bframes: bool = True,
    frame_pts: list[int] | None = None,
    pix_fmt: str = "yuv420p",
) -> list[np.ndarray]:
    """Encode ``num_frames`` coded frames; return the frames as they should be displayed.

    ``rotation``: the frames are stored rotated and tagged with a display rotation of
    ``rotation`` degrees (counter-clockwise, the FFmpeg convention), so a reader that
    honours the tag returns the returned list unchanged.  ``timestamps_ms``: presentation
    times for a variable-frame-rate file (time base 1/1000).  ``frame_pts``: presentation
    times in frame periods (time base 1/fps) with gaps, as a camera that dropped frames
    writes them (the AVI muxer marks each missing frame with an empty chunk).
    """
    height, width = size
    frames = [coded_frame(i, height, width) for i in range(num_frames)]
    with av.open(str(path), "w", format=container_format) as container:
        if timestamps_ms is not None:
            stream = container.add_stream(codec, rate=fps)
            stream.codec_context.time_base = Fraction(1, 1000)
        else:
            stream = container.add_stream(codec, rate=fps)
        k = (rotation // 90) % 4
        stored_h, stored_w = (width, height) if k % 2 else (height, width)
        stream.height, stream.width = stored_h, stored_w
        stream.pix_fmt = pix_fmt
        stream.codec_context.gop_size = gop
        opts = {}
        if codec == "libx264":
            opts = {"preset": "ultrafast", "tune": "zerolatency"} if not bframes else {"preset": "veryfast"}
        elif codec in ("libvpx-vp9", "libvpx"):
            opts = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        opts.update(options or {})
        stream.options = opts
        if rotation:
            stream.set_display_rotation(rotation)
        for i, frame in enumerate(frames):
            # Stored frame = displayed frame rotated clockwise by `rotation` so that the
            # player's counter-clockwise display rotation restores it.
            stored = np.ascontiguousarray(np.rot90(frame, k=-k)) if k else frame
            vf = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if timestamps_ms is not None:
                vf.pts = timestamps_ms[i]
                vf.time_base = Fraction(1, 1000)
            elif frame_pts is not None:
                vf.pts = frame_pts[i]
                vf.time_base = Fraction(1, fps)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


def write_audio_only(path: Path, seconds: float = 0.5) -> None:
    """An .mp4 with one AAC audio stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        t = np.arange(samples, dtype=np.float32) / 16000
        data = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        step = 1024
        for start in range(0, samples, step):
            chunk = np.ascontiguousarray(data[:, start:start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


BACKENDS = ["pyav", "decord"]


def backend_params():
    """pytest params for both backends; decord skipped where it has no wheel."""
    import pytest

    try:
        import decord  # noqa: F401
        has_decord = True
    except ImportError:
        has_decord = False
    return [pytest.param("pyav"),
            pytest.param("decord", marks=pytest.mark.skipif(not has_decord, reason="decord not installed"))]


def make_test_videos(folder: Path) -> dict[str, dict]:
    """The small files the decoding tests read: name -> {path, frames (expected, displayed)}.

    Formats as users meet them: h264 MP4 (with B-frames), VP9 WebM, MPEG-4 Part 2 AVI with
    B-frames (UCF101/HMDB51's codec), h264 MKV, a rotated MP4 (display matrix, 90 degrees),
    a variable-frame-rate MP4, and a half-cut MKV.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    specs = {
        "h264.mp4": dict(codec="libx264"),
        "vp9.webm": dict(codec="libvpx-vp9"),
        "mpeg4.avi": dict(codec="mpeg4", options={"bf": "2"}, gop=12),
        "h264.mkv": dict(codec="libx264"),
        "rotated.mp4": dict(codec="libx264", rotation=90),
        "vfr.mp4": dict(codec="libx264", timestamps_ms=vfr_timestamps_ms(60)),
    }
    for name, kw in specs.items():
        n = 60
        frames = write_video(folder / name, n, **kw)
        out[name] = {"path": folder / name, "frames": frames, **kw}
    data = (folder / "h264.mkv").read_bytes()
    (folder / "truncated.mkv").write_bytes(data[: len(data) // 2])
    out["truncated.mkv"] = {"path": folder / "truncated.mkv", "frames": out["h264.mkv"]["frames"]}
    # An MP4 with its index first ("faststart", as web downloads are), cut in half: the
    # index still lists every frame, the data for the later ones is gone.
    faststart = folder / "faststart.mp4"
    remux(folder / "h264.mp4", faststart, options={"movflags": "faststart"})
    data = faststart.read_bytes()
    (folder / "truncated_faststart.mp4").write_bytes(data[: len(data) * 4 // 5])  # index is ~half of it
    out["truncated_faststart.mp4"] = {"path": folder / "truncated_faststart.mp4", "frames": out["h264.mp4"]["frames"]}
    return out


def remux(src: Path, dst: Path, options: dict[str, str] | None = None) -> None:
    """Copy the video stream of ``src`` into a new container without re-encoding."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options=options or {}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue  # the flush packet
            packet.stream = stream
            out.mux(packet)


def vfr_timestamps_ms(n: int) -> list[int]:
    """Irregular presentation times: gaps of 20, 40 and 90 ms in a repeating pattern."""
    gaps = [20, 40, 90, 40]
    times, t = [], 0
    for i in range(n):
        times.append(t)
        t += gaps[i % len(gaps)]
    return times
