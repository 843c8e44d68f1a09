"""Readers on real encoded files: which frame comes back, from both backends, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _videos import backend_params, coded_frame, make_test_videos, read_code, write_audio_only, write_video

from dtfcli.data import video as video_mod
from dtfcli.data.video import FrameFolderReader, VideoDecodeError, open_video

# Sparse, out of order, with a repeat: the way clip sampling and test views read.
SPARSE = [41, 3, 17, 17, 9, 59, 0, 25, 12, 13]
DECODABLE = ["h264.mp4", "vp9.webm", "mpeg4.avi", "h264.mkv", "rotated.mp4", "vfr.mp4"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_test_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    write_audio_only(folder / "audio_only.mp4")
    full = folder / "full.mp4"
    write_video(full, 30)
    data = full.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])  # MP4: index (moov) lost
    return folder


def _codes(frames: torch.Tensor) -> list[int]:
    return [read_code(f) for f in frames.numpy()]


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("name", DECODABLE)
def test_sparse_out_of_order_reads_return_the_frames_asked_for(videos, name, backend):
    reader = open_video(videos[name]["path"], backend)
    assert reader.num_frames == 60
    frames = reader.get_frames(SPARSE)
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (len(SPARSE), 48, 64, 3)
    assert _codes(frames) == SPARSE
    expected = np.stack([videos[name]["frames"][i] for i in SPARSE]).astype(np.float32)
    assert np.abs(frames.numpy().astype(np.float32) - expected).mean() < 8  # lossy codec, same picture


@pytest.mark.parametrize("name", DECODABLE)
def test_both_backends_give_the_same_frames(videos, name):
    pytest.importorskip("decord")
    a = open_video(videos[name]["path"], "pyav").get_frames(SPARSE).float()
    b = open_video(videos[name]["path"], "decord").get_frames(SPARSE).float()
    assert (a - b).abs().mean() < 3


@pytest.mark.parametrize("backend", backend_params())
def test_mpeg4_avi_with_b_frames_random_access(videos, backend):
    """UCF101/HMDB51's codec: many random orders, every frame identified by its code."""
    reader = open_video(videos["mpeg4.avi"]["path"], backend)
    rng = np.random.default_rng(0)
    for _ in range(5):
        wanted = rng.choice(60, 12, replace=True).tolist()
        assert _codes(reader.get_frames(wanted)) == wanted


@pytest.mark.parametrize("backend", backend_params())
def test_rotation_metadata_is_applied(videos, backend):
    frames = open_video(videos["rotated.mp4"]["path"], backend).get_frames([5, 30])
    assert tuple(frames.shape[1:3]) == (48, 64)  # stored as 64x48, displayed 48x64
    assert _codes(frames) == [5, 30]
    corner = frames[0, :4, :4].float().mean(dim=(0, 1))  # the red marker is top-left when upright
    assert corner[0] > 150 and corner[1] < 100 and corner[2] < 100


@pytest.mark.parametrize("backend", backend_params())
def test_variable_frame_rate_frames_are_picked_by_time(videos, backend):
    from _videos import vfr_timestamps_ms

    times = np.asarray(vfr_timestamps_ms(60)) / 1000.0
    reader = open_video(videos["vfr.mp4"]["path"], backend)
    assert np.allclose(reader.frame_times, times, atol=1e-3)
    # At each frame's own time, and just before the next frame, that frame is on screen.
    probe = [10, 11, 12, 13, 40]
    assert _codes(reader.get_frames(timestamps=[times[i] for i in probe])) == probe
    assert _codes(reader.get_frames(timestamps=[times[i + 1] - 0.005 for i in probe])) == probe
    # A uniform time grid skips frames in the dense parts and repeats in the gaps.
    grid = reader.read_clip(range(0, 60, 6))
    shown = _codes(grid)
    expected = [int(np.searchsorted(times, t + 1e-6) - 1) for t in reader.grid_timestamps(range(0, 60, 6))]
    assert shown == expected


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("name", ["truncated.mkv", "truncated_faststart.mp4"])
def test_truncated_files_read_what_survives(videos, name, backend):
    """A cut file opens with the frames whose packets survive (a packet cut short is not a
    frame); asking past them is an IndexError naming the file, never a hang or a wrong frame.
    decord cannot open a cut MP4 at all: that must be a VideoDecodeError naming the file,
    and ``auto`` must still read it (through PyAV)."""
    reader = open_video(videos[name]["path"], backend)
    assert 0 < reader.num_frames < 60
    last = reader.num_frames - 1
    wanted = [last, 0, last // 2, last - 1]
    try:
        frames = reader.get_frames(wanted)
    except VideoDecodeError as exc:
        assert backend == "decord" and name.endswith(".mp4") and exc.path == str(videos[name]["path"])
        frames = open_video(videos[name]["path"], "auto").get_frames(wanted)
    assert _codes(frames) == wanted
    with pytest.raises(IndexError, match=name):
        reader.get_frames([59])


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty.mp4", "empty file"),
        ("notes.mp4", "not a readable video"),
        ("audio_only.mp4", "no video stream"),
        ("truncated.mp4", "not a readable video"),
        ("missing.mp4", "no such file"),
    ],
)
def test_unreadable_files_raise_a_typed_error_naming_the_file(broken, name, reason, backend):
    with pytest.raises(VideoDecodeError) as info:
        open_video(broken / name, backend).get_frames([0])
    assert info.value.path == str(broken / name)
    assert reason in info.value.reason
    assert str(broken / name) in str(info.value) and "\n" not in str(info.value)


def test_auto_falls_back_to_the_other_backend(videos, monkeypatch):
    pytest.importorskip("decord")

    def broken_decode(self, wanted, sink):
        raise VideoDecodeError(self.path, "simulated decoder failure")

    monkeypatch.setattr(video_mod.PyAVReader, "_decode_sorted", broken_decode)
    reader = open_video(videos["h264.mp4"]["path"], "auto")
    assert _codes(reader.get_frames([7, 2])) == [7, 2]
    assert reader.used_backend == "decord" and reader.fallbacks == 1


def test_auto_reports_the_first_error_when_both_fail(broken):
    with pytest.raises(VideoDecodeError, match="not a readable video"):
        open_video(broken / "notes.mp4", "auto")


def test_reading_a_clip_decodes_a_small_fraction_of_a_long_video(tmp_path):
    """10 s of 340p h264 at 30 fps (one keyframe a second): a 16-frame clip (interval 2)
    must not decode the whole video."""
    from dtfcli.data.sampling import sample_dense_clip

    path = tmp_path / "long.mp4"
    write_video(path, 300, size=(340, 604), fps=30, gop=30, options={"preset": "ultrafast"})
    reader = open_video(path, "pyav")
    assert reader.num_frames == 300 and abs(reader.duration - 10.0) < 1e-6
    positions = sample_dense_clip(300, 16, 2, random=False)
    clip = reader.read_clip(positions)
    assert _codes(clip) == positions
    assert reader.stats.frames_decoded <= 0.25 * 300, reader.stats
    assert reader.stats.frames_decoded >= 16


def test_frame_folder_reader(tmp_path):
    from PIL import Image

    folder = tmp_path / "12345"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(coded_frame(i, 48, 64)).save(folder / f"{i + 1:05d}.jpg", quality=95)
    reader = open_video(folder)
    assert isinstance(reader, FrameFolderReader) and reader.num_frames == 12 and reader.fps == 12.0
    assert _codes(reader.get_frames([11, 0, 5])) == [11, 0, 5]
    (tmp_path / "no_frames").mkdir()
    with pytest.raises(VideoDecodeError, match="no .jpg"):
        open_video(tmp_path / "no_frames")


def test_auto_reports_the_first_backends_reason_when_both_fail_to_decode(videos, monkeypatch):
    pytest.importorskip("decord")

    def pyav_fails(self, wanted, sink):
        return "simulated PyAV failure"

    def decord_fails(self, wanted, sink):
        raise VideoDecodeError(self.path, "simulated decord failure")

    monkeypatch.setattr(video_mod.PyAVReader, "_decode_sorted", pyav_fails)
    monkeypatch.setattr(video_mod.DecordReader, "_decode_sorted", decord_fails)
    reader = open_video(videos["h264.mp4"]["path"], "auto")
    with pytest.raises(VideoDecodeError) as info:
        reader.get_frames([7, 2])
    assert info.value.reason.startswith("frame 2 could not be decoded: simulated PyAV failure")


@pytest.mark.parametrize("backend", backend_params())
def test_decoder_logs_stay_off_stderr(videos, backend, capfd):
    """FFmpeg inside PyAV and decord prints warnings for a cut file (hundreds of lines from
    decord); readers keep them quiet (``--debug`` / DTF_DEBUG=1 turns them on)."""
    reader = open_video(videos["truncated.mkv"]["path"], backend)
    reader.get_frames([0, reader.num_frames - 1])
    assert capfd.readouterr().err == ""


def test_debug_turns_decoder_logs_on(videos):
    import os
    import subprocess
    import sys

    pytest.importorskip("decord")
    code = (
        "import sys; from dtfcli.data.video import open_video; "
        "r = open_video(sys.argv[1], 'decord'); r.get_frames([0, r.num_frames - 1])"
    )
    path = str(videos["truncated.mkv"]["path"])
    env = {**os.environ, "DTF_DEBUG": "1"}
    loud = subprocess.run([sys.executable, "-c", code, path], env=env, capture_output=True, text=True, check=True)
    env["DTF_DEBUG"] = "0"
    quiet = subprocess.run([sys.executable, "-c", code, path], env=env, capture_output=True, text=True, check=True)
    assert loud.stderr.strip() and not quiet.stderr.strip()
