"""Container matrix: for every container and codec the readers accept, every backend returns
exactly the frames of a plain sequential decode (PyAV, all frames, presentation order),
pixel for pixel, for sparse unsorted reads, sorted reads and multi-clip reads.

Each file is made once per session with PyAV (frames carry their index as block codes,
tests/_videos.py): 96 frames at 64x48, a keyframe every 12 frames, B-frames where the codec
has them.  The test ids name the file (codec, container) and the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from _videos import read_code, vfr_timestamps_ms, write_video

from dtfcli.data import video as video_mod
from dtfcli.data.video import VIDEO_EXTENSIONS, VideoDecodeError, open_video

N = 96
FPS = 25
# A camera that dropped frames: runs of 5 frames, then 3 missing, and one long gap of 40.
DROPPED_PTS = [i + 3 * (i // 5) + (40 if i >= 50 else 0) for i in range(N)]
X264_BFRAMES = {"preset": "veryfast"}  # veryfast keeps B-frames (ultrafast has none)
MPEG_BFRAMES = {"bf": "2"}
VPX_FAST = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}


@dataclass(frozen=True)
class Case:
    name: str  # file name: what it holds, and the extension users meet it with
    codec: str
    decord_reads_it: bool  # routing: does an explicit backend="decord" decode with decord?
    container_format: str | None = None
    options: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


CASES = [
    Case("h264-bframes.mp4", "libx264", True, options=X264_BFRAMES),
    Case("h264-bframes.m4v", "libx264", True, options=X264_BFRAMES),
    Case("h264-bframes.mov", "libx264", True, options=X264_BFRAMES),
    Case("mpeg4-bframes.3gp", "mpeg4", False, options=MPEG_BFRAMES),  # open GOP
    Case("hevc-bframes.mp4", "libx265", False, options={"preset": "ultrafast", "x265-params": "log-level=none"}),
    Case("vfr-h264.mp4", "libx264", True, options=X264_BFRAMES, extra={"timestamps_ms": vfr_timestamps_ms(N)}),
    Case("h264-bframes.mkv", "libx264", True, options=X264_BFRAMES),
    Case("h264-open-gop.mkv", "libx264", False, options={**X264_BFRAMES, "x264-params": "open-gop=1"}),
    Case("vp8.webm", "libvpx", True, options=VPX_FAST),
    Case("vp9.webm", "libvpx-vp9", True, options=VPX_FAST),
    Case("mpeg4-bframes.avi", "mpeg4", False, options=MPEG_BFRAMES),  # decord: right frames, other rounding
    Case("mjpeg.avi", "mjpeg", True, extra={"pix_fmt": "yuvj420p"}),
    Case("mjpeg-dropped-frames.avi", "mjpeg", True, extra={"pix_fmt": "yuvj420p", "frame_pts": DROPPED_PTS}),
    Case("wmv2.wmv", "wmv2", False),
    Case("msmpeg4.asf", "msmpeg4", False),
    Case("mpeg1-ps.mpg", "mpeg1video", False, options=MPEG_BFRAMES),
    Case("mpeg2-ps.mpeg", "mpeg2video", False, container_format="vob", options=MPEG_BFRAMES),
    Case("mpeg2-ts.ts", "mpeg2video", False, options=MPEG_BFRAMES),
    Case("h264-ts.ts", "libx264", False, options=X264_BFRAMES),
    Case("flv1.flv", "flv", False),
    Case("h264.flv", "libx264", False, options=X264_BFRAMES),
    Case("vp8.ogv", "libvpx", False, options=VPX_FAST),
]
BY_NAME = {c.name: c for c in CASES}

# Sparse, out of order, with repeats, around keyframes (every 12) and at both ends.
SPARSE = [95, 3, 50, 17, 17, 9, 0, 25, 12, 13, 30, 61, 47, 48, 36, 35, 71, 84, 83, 24]
SORTED = sorted(set(SPARSE) | set(range(20, 30)))
CLIPS = [list(range(0, 32, 4)), list(range(8, 40, 4)), list(range(60, 92, 4)), [95] * 4]


def _decord_param():
    try:
        import decord  # noqa: F401
    except ImportError:
        return pytest.param("decord", marks=pytest.mark.skip(reason="decord not installed"))
    return "decord"


BACKENDS = ["pyav", _decord_param(), "auto"]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict[str, dict]:
    """name -> {path, reference: the frames of a plain PyAV decode, times: expected seconds}."""
    folder = tmp_path_factory.mktemp("containers")
    out = {}
    for case in CASES:
        path = folder / case.name
        write_video(path, N, codec=case.codec, fps=FPS, gop=12, container_format=case.container_format,
                    options=case.options, **case.extra)
        with av.open(str(path)) as container:
            reference = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        if "timestamps_ms" in case.extra:
            times = np.asarray(case.extra["timestamps_ms"]) / 1000.0
        elif "frame_pts" in case.extra:
            times = np.asarray(case.extra["frame_pts"]) / FPS
        else:
            times = np.arange(N) / FPS
        out[case.name] = {"path": path, "reference": reference, "times": times}
    return out


def _assert_frames(name, backend, how, frames, positions, reference):
    frames = frames.numpy()
    for slot, (got, i) in enumerate(zip(frames, positions, strict=True)):
        if not np.array_equal(got, reference[i]):
            shown = read_code(got)
            raise AssertionError(
                f"{name} via {backend}, {how} read: slot {slot} asked frame {i}, got a different picture "
                f"(its code says frame {shown}; mean abs diff {np.abs(got.astype(int) - reference[i]).mean():.2f})"
            )


def test_every_extension_accepted_is_in_the_matrix():
    proven = {Path(c.name).suffix for c in CASES}
    assert set(VIDEO_EXTENSIONS) == proven


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_frames_equal_a_sequential_decode(matrix, name, backend):
    case, entry = BY_NAME[name], matrix[name]
    reference = entry["reference"]
    # The file itself is what it should be: every frame there, in order.
    assert [read_code(f) for f in reference] == list(range(N))

    reader = open_video(entry["path"], backend)
    assert reader.num_frames == N
    np.testing.assert_allclose(reader.frame_times, entry["times"], atol=1e-3, err_msg=f"{name} timeline")

    _assert_frames(name, backend, "sparse", reader.get_frames(SPARSE), SPARSE, reference)
    _assert_frames(name, backend, "sorted", reader.get_frames(SORTED), SORTED, reference)
    clips = reader.read_clips(CLIPS)
    for clip, positions in zip(clips, CLIPS, strict=True):
        _assert_frames(name, backend, "multi-clip", clip, reader.indices_at(reader.grid_timestamps(positions)),
                       reference)

    expected = {"pyav": "pyav", "auto": "pyav", "decord": "decord" if case.decord_reads_it else "pyav"}[backend]
    assert reader.used_backend == expected, getattr(reader, "backend_note", None)
    if backend == "decord" and not case.decord_reads_it:
        assert reader.backend_note and "\n" not in reader.backend_note


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_single_frame_reads_from_a_fresh_reader(matrix, name, backend):
    """One frame, first read of a fresh reader: the read that seeks straight to a keyframe
    and keeps the first frames out (an MPEG program stream, if it were seeked, returns frame
    48 for frame 46 here, with frame 46's timestamp: nothing after the fact can tell)."""
    entry = matrix[name]
    for i in (46, 58, 83):
        _assert_frames(name, backend, "single-frame", open_video(entry["path"], backend).get_frames([i]), [i],
                       entry["reference"])


def test_dropped_frames_keep_their_times(matrix):
    """A 96-frame AVI from a camera that dropped frames spans 6.96 s, not 96/25 = 3.84 s, and
    a read by time returns the frame on screen then (the last one before a gap)."""
    reader = open_video(matrix["mjpeg-dropped-frames.avi"]["path"])
    assert reader.num_frames == N
    assert abs(reader.duration - (DROPPED_PTS[-1] + 1) / FPS) < 1e-6
    t_in_gap = (DROPPED_PTS[49] + 20) / FPS  # inside the 40-frame gap after frame 49
    assert [read_code(f) for f in reader.get_frames(timestamps=[t_in_gap, DROPPED_PTS[50] / FPS]).numpy()] == [49, 50]


def test_seek_that_lands_late_falls_back_to_reading_in_order(matrix, monkeypatch):
    """In MPEG-TS, PyAV's seeks land one keyframe interval after the keyframe asked for.  If
    such a container were taken for seekable, the reader must notice and read in order."""
    monkeypatch.setattr(video_mod, "_SEEKABLE_FORMATS", (*video_mod._SEEKABLE_FORMATS, "mpegts"))
    entry = matrix["mpeg2-ts.ts"]
    reader = open_video(entry["path"], "pyav")
    assert reader.seeks_reliable
    _assert_frames("mpeg2-ts.ts", "pyav", "sparse", reader.get_frames(SPARSE), SPARSE, entry["reference"])
    assert not reader.seeks_reliable and reader.stats.seeks >= 1 and "landed at frame" in reader.seek_note


def test_decord_timestamps_that_disagree_send_the_file_to_pyav(matrix, monkeypatch):
    decord = pytest.importorskip("decord")
    real = decord.VideoReader.get_frame_timestamp

    def shifted(self, indices):
        stamps = real(self, indices)
        stamps[len(stamps) // 2 :] += 0.5  # half of the frames half a second off
        return stamps

    monkeypatch.setattr(decord.VideoReader, "get_frame_timestamp", shifted)
    entry = matrix["h264-bframes.mp4"]
    reader = open_video(entry["path"], "decord")
    _assert_frames("h264-bframes.mp4", "decord", "sparse", reader.get_frames(SPARSE), SPARSE, entry["reference"])
    assert reader.used_backend == "pyav" and "disagree" in reader.backend_note


def test_an_undecodable_frame_is_an_error_naming_file_and_frame(matrix, tmp_path):
    """A frame whose data is damaged in the middle of an AVI: the frames before it come back,
    asking for it or anything after it is a VideoDecodeError naming the frame, never a
    neighbouring frame in its place."""
    src = matrix["mjpeg.avi"]["path"]
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[40]
    data[pos : pos + size] = bytes(size)  # frame 40's JPEG data zeroed, the chunk stays in place
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    for backend in ("pyav", "auto"):
        reader = open_video(damaged, backend)
        assert [read_code(f) for f in reader.get_frames([39, 5]).numpy()] == [39, 5]
        with pytest.raises(VideoDecodeError, match=r"frame 4\d") as info:
            reader.get_frames([45])
        assert info.value.path == str(damaged) and "\n" not in str(info.value)
        assert "truncated or corrupt" not in info.value.reason
