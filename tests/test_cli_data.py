"""`dtf data info`: a verdict per file (good, cut, unreadable), through the real CLI, and the
checks behind it (dtfcli/data/verify.py) against an independent count of decodable frames."""

from __future__ import annotations

import json
import shutil

import av
import pytest
from _videos import read_code, remux, write_video

from dtfcli.cli._common import EXIT_ERROR, EXIT_SKIPPED, DTFError
from dtfcli.data import verify
from dtfcli.data.verify import check_video, collect_videos, declared_size, truncation
from dtfcli.data.video import VideoDecodeError

FRAMES = 30


def decodable_frames(path) -> int:
    """Independent reference: frames a plain sequential PyAV decode yields, packet by packet
    (a damaged packet is skipped) and then flushing the decoder (it holds frames back when
    the video has B-frames).  Checks that they are frames 0, 1, 2... in order."""
    codes = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                codes += [read_code(frame.to_ndarray(format="rgb24")) for frame in packet.decode()]
            except av.FFmpegError:
                continue
    assert codes == list(range(len(codes)))
    return len(codes)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """good (h264 MP4, VP9 WebM), cut (a WebM and an MP4 with its index first, both cut to
    part of their bytes; an MP4 cut before its index), unreadable (text named .mp4), and
    files a folder listing must skip or only find with -r."""
    src = tmp_path_factory.mktemp("src")
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "good.mp4", FRAMES)
    write_video(folder / "good.webm", FRAMES, codec="libvpx-vp9")
    data = (folder / "good.webm").read_bytes()
    (folder / "cut.webm").write_bytes(data[: len(data) * 6 // 10])
    remux(folder / "good.mp4", src / "faststart.mp4", options={"movflags": "faststart"})
    data = (src / "faststart.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) * 4 // 5])  # the index survives, later frames do not
    data = (folder / "good.mp4").read_bytes()
    (folder / "lost_index.mp4").write_bytes(data[: len(data) // 2])  # the index (at the end) is gone
    (folder / "text.mp4").write_text("this is not a video\n")
    (folder / "notes.txt").write_text("not a video extension: skipped in folder listings\n")
    (folder / "more").mkdir()
    shutil.copy(folder / "good.mp4", folder / "more" / "deep.mp4")
    return folder


def _by_name(report: dict) -> dict[str, dict]:
    return {row["path"].rsplit("/", 1)[-1]: row for row in report["files"]}


def test_verify_folder_reports_good_cut_and_unreadable(media, run_cli):
    proc = run_cli("data", "info", "--verify", "--jobs", "2", "--json", str(media))
    assert proc.returncode == EXIT_SKIPPED, proc.stderr
    report = json.loads(proc.stdout)
    rows = _by_name(report)
    assert sorted(rows) == ["cut.mp4", "cut.webm", "good.mp4", "good.webm", "lost_index.mp4", "text.mp4"]
    assert [r["path"] for r in report["files"]] == sorted(r["path"] for r in report["files"])  # order kept
    for name in ("good.mp4", "good.webm"):
        assert rows[name]["verdict"] == "ok" and rows[name]["decoded"] == rows[name]["tried"] == FRAMES
        assert rows[name]["decoded_ranges"] == [[0, FRAMES - 1]]
    for name in ("cut.webm", "cut.mp4"):
        row = rows[name]
        expected = decodable_frames(media / name)
        assert 0 < expected < FRAMES  # the reference: only a prefix of the frames decode
        assert row["verdict"] == "cut" and row["decoded"] == expected, row
        assert row["decoded_ranges"] == [[0, expected - 1]] and row["expected_frames"] == FRAMES
        assert f"frames 0-{expected - 1} of {FRAMES} decode" in row["reason"]
        assert row["declared_bytes"] > row["file_bytes"] == (media / name).stat().st_size
    assert rows["lost_index.mp4"]["verdict"] == "cut" and rows["lost_index.mp4"]["decoded"] == 0
    assert rows["text.mp4"]["verdict"] == "unreadable" and "not a readable video" in rows["text.mp4"]["reason"]
    summary = report["summary"]
    assert (summary["files"], summary["ok"], summary["cut"], summary["unreadable"]) == (6, 2, 3, 1)
    assert summary["text"] == "6 files: 2 ok, 3 cut, 1 unreadable"


def test_default_check_is_cheap_and_still_catches_cut_files(media, run_cli):
    proc = run_cli("data", "info", "--json", "-r", str(media))
    assert proc.returncode == EXIT_SKIPPED, proc.stderr
    rows = _by_name(json.loads(proc.stdout))
    assert "deep.mp4" in rows and "notes.txt" not in rows  # -r looks in subfolders, by extension
    assert {n: r["verdict"] for n, r in rows.items()} == {
        "cut.mp4": "cut", "cut.webm": "cut", "deep.mp4": "ok", "good.mp4": "ok", "good.webm": "ok",
        "lost_index.mp4": "cut", "text.mp4": "unreadable"}
    assert rows["good.mp4"]["tried"] == 2 and rows["good.mp4"]["frames"] == FRAMES  # first and last only
    assert rows["cut.webm"]["expected_frames"] == FRAMES > rows["cut.webm"]["frames"]


def test_table_is_whole_at_80_columns(media, run_cli, tmp_path):
    shutil.copy(media / "good.webm", tmp_path / "[odd]name.webm")  # brackets are not markup
    files = [tmp_path / "[odd]name.webm", media / "cut.webm", media / "cut.mp4", media / "text.mp4"]
    proc = run_cli("data", "info", "--verify", *map(str, files), env={"COLUMNS": "80"})
    assert proc.returncode == EXIT_SKIPPED and "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), proc.stdout
    assert "…" not in proc.stdout and "..." not in proc.stdout  # nothing cut off
    cells = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    paths = "".join(c[0].strip() for c in cells)  # long paths fold onto the next line
    verdicts = " ".join(c[2].strip() for c in cells if c[2].strip())
    for f in files:
        assert str(f) in paths
    cut_webm = decodable_frames(media / "cut.webm")
    assert f"cut: frames 0-{cut_webm - 1} of {FRAMES} decode" in verdicts
    assert "unreadable: not a readable video container" in verdicts
    summary = " ".join(line for line in lines if line[:1] not in "│┏┃┡└")
    assert "4 files: 1 ok, 2 cut, 1 unreadable" in summary


def test_file_names_beginning_with_a_dash(media, run_cli, monkeypatch, tmp_path):
    """Kinetics ids can begin with '-': '-- -x.mp4' and './-x.mp4' both reach the files."""
    for name in ("-abc_000010_000020.mp4", "-def_000000_000010.mp4"):
        shutil.copy(media / "good.mp4", tmp_path / name)
    monkeypatch.chdir(tmp_path)
    proc = run_cli("data", "info", "--json", "./-abc_000010_000020.mp4", "--", "-def_000000_000010.mp4")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["files"]
    assert [(r["path"], r["verdict"]) for r in rows] == [("-abc_000010_000020.mp4", "ok"),
                                                         ("-def_000000_000010.mp4", "ok")]


def test_help_documents_exit_codes_and_dash_names():
    from typer.testing import CliRunner

    from dtfcli.cli import app

    result = CliRunner().invoke(app, ["data", "info", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "'--'" in result.output and "./-name.mp4" in result.output
    assert all(code in result.output for code in ("0 every file is ok", "3 some are not", "1 none is"))
    assert all(len(line) <= 80 for line in result.output.splitlines())
    wrong = CliRunner().invoke(app, ["data", "info", "--backend", "ffmpeg", "clip.mp4"])
    assert isinstance(wrong.exception, DTFError) and "choose from auto, pyav, decord" in str(wrong.exception)


def test_exit_code_one_when_nothing_is_readable_or_nothing_to_check(media, run_cli, tmp_path):
    bad = run_cli("data", "info", str(media / "text.mp4"), str(tmp_path / "missing.mp4"))
    assert bad.returncode == EXIT_ERROR and "no such file" in bad.stdout
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sub").mkdir()
    shutil.copy(media / "good.mp4", tmp_path / "empty" / "sub" / "a.mp4")
    nothing = run_cli("data", "info", str(tmp_path / "empty"))
    assert nothing.returncode == EXIT_ERROR and "Traceback" not in nothing.stderr
    assert "no video files in" in nothing.stderr and "-r" in nothing.stderr


# -- the library behind it ------------------------------------------------------------------
def test_container_sizes_tell_a_cut_file(media):
    write_video(media.parent / "good.avi", 12, codec="mpeg4")  # UCF101/HMDB51's container
    data = (media.parent / "good.avi").read_bytes()
    (media.parent / "cut.avi").write_bytes(data[: len(data) * 2 // 3])
    for path in (media / "good.mp4", media / "good.webm", media.parent / "good.avi"):
        assert declared_size(path) == path.stat().st_size and truncation(path) == ""
    for path in (media / "cut.webm", media / "cut.mp4", media.parent / "cut.avi"):
        assert declared_size(path) > path.stat().st_size
        assert truncation(path).startswith("file cut short")
    assert declared_size(media / "text.mp4") is None and truncation(media / "text.mp4") == ""
    data = (media / "good.mp4").read_bytes()
    moov = data.index(b"moov") - 4  # an MP4 cut exactly where its index box would begin
    (media.parent / "boundary.mp4").write_bytes(data[:moov])
    assert "moov" in truncation(media.parent / "boundary.mp4")


class _ReaderWithBadFrames:
    """A reader over a real file's timeline whose given frames fail to decode (damage in the
    middle of a file is hard to make reliably: decoders conceal it)."""

    def __init__(self, real, bad):
        self.real, self.bad, self.calls = real, set(bad), []
        self.index, self.num_frames, self.fps, self.duration = real.index, real.num_frames, real.fps, real.duration
        self.backend = real.backend

    def get_frames(self, indices):
        self.calls.append(list(indices))
        if self.bad & set(indices):
            raise VideoDecodeError(self.real.path, "1 of 1 frames could not be decoded")
        return self.real.get_frames(indices)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_every_frame_is_tried_in_small_sorted_chunks_and_gaps_are_found(media, monkeypatch):
    from dtfcli.data.video import open_video

    write_video(media.parent / "long.mp4", 150)
    readers = []

    def fake_open(path, backend="auto", **kw):
        readers.append(_ReaderWithBadFrames(open_video(path, backend), bad={70, 71, 72, 140}))
        return readers[-1]

    monkeypatch.setattr(verify, "open_video", fake_open)
    check = check_video(media.parent / "long.mp4", full=True)
    assert check.verdict == "damaged" and check.decoded == 146 and check.tried == 150
    assert check.reason == "146 of 150 frames decode (not 70-72, 140)"
    assert check.decoded_ranges == [(0, 69), (73, 139), (141, 149)]
    calls = readers[0].calls
    assert max(len(c) for c in calls) <= verify.CHUNK_FRAMES and all(c == sorted(c) for c in calls)
    assert calls[0] == list(range(64))
    cheap = check_video(media.parent / "long.mp4")
    assert cheap.verdict == "ok" and readers[1].calls == [[0], [149]]


def test_folders_list_videos_by_extension_and_frame_folders_count_as_one(tmp_path):
    from PIL import Image

    (tmp_path / "frames" / "101").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "frames" / "101" / f"{i + 1:05d}.jpg")
    (tmp_path / "b.WEBM").write_bytes(b"x")
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "readme.md").write_text("x")
    videos, empty = collect_videos([tmp_path])
    assert videos == [tmp_path / "a.mp4", tmp_path / "b.WEBM"] and empty == []
    videos, _ = collect_videos([tmp_path], recursive=True)
    assert tmp_path / "frames" / "101" in videos
    assert collect_videos([tmp_path / "frames" / "101"])[0] == [tmp_path / "frames" / "101"]
    assert collect_videos([tmp_path / "frames"]) == ([], [tmp_path / "frames"])
