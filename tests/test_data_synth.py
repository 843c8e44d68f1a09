"""The synthetic motion dataset: layout, balance, determinism, and on-screen directions."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from dtfcli.data.datasets import build_dataset
from dtfcli.data.synth import (
    CODECS,
    SYNTH_CLASSES,
    Track,
    _composite,
    _main_track,
    _render_varied,
    encode_video,
    render_video,
    synthesize_dataset,
)
from dtfcli.data.video import open_video

EXPECTED = [
    "Moving something from left to right", "Moving something from right to left", "Moving something up",
    "Moving something down", "Moving something closer", "Moving something away", "Turning something clockwise",
    "Turning something counterclockwise", "Something appearing", "Something disappearing",
    "Moving something back and forth", "Holding something still",
]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize_dataset(root, videos_per_class=2, seed=3, val_videos_per_class=1, min_side=32, max_side=48)
    return root


def test_class_names_and_order():
    assert list(SYNTH_CLASSES) == EXPECTED


def test_output_opens_in_the_ssv2_reader_balanced(synth_root):
    train = build_dataset("ssv2", synth_root, "train")
    val = build_dataset("ssv2", synth_root, "validation")
    assert train.classes == EXPECTED and val.classes == EXPECTED
    assert Counter(s.label for s in train.samples) == {c: 2 for c in range(12)}
    assert Counter(s.label for s in val.samples) == {c: 1 for c in range(12)}
    assert not train.missing and not val.missing
    codecs = set()
    for sample in train.samples + val.samples:
        reader = open_video(sample.path)
        assert reader.num_frames >= 12
        clip = reader.read_clip(range(0, reader.num_frames, max(1, reader.num_frames // 4)))
        assert clip.dtype == torch.uint8 and clip.shape[-1] == 3
        codecs.add(reader.index.codec_name)
    assert len(codecs) >= 4  # codec is randomised too (five in the varied style)


def test_same_seed_same_video_whatever_the_workers(synth_root, tmp_path):
    """A video depends on (seed, split, class, number) only: class 5's first training video
    comes out the same alone, from two worker processes, as inside the full dataset."""
    alone = tmp_path / "alone"
    synthesize_dataset(alone, videos_per_class=1, seed=3, val_videos_per_class=0, classes=[5], workers=2,
                       min_side=32, max_side=48)
    full_entries = json.loads((synth_root / "labels" / "train.json").read_text())
    alone_entries = json.loads((alone / "labels" / "train.json").read_text())
    assert full_entries[5]["template"] == alone_entries[0]["template"] == "Moving [something] away"
    assert full_entries[5]["label"] == alone_entries[0]["label"]
    path_a = build_dataset("ssv2", synth_root, "train").samples[5].path
    path_b = build_dataset("ssv2", alone, "train").samples[0].path
    assert open(path_a, "rb").read() == open(path_b, "rb").read()  # byte for byte
    a, b = open_video(path_a), open_video(path_b)
    assert a.num_frames == b.num_frames
    assert torch.equal(a.get_frames(range(a.num_frames)), b.get_frames(range(b.num_frames)))
    other = render_video(5, np.random.default_rng([4, 0, 5, 0]), min_side=32, max_side=48)
    same = render_video(5, np.random.default_rng([3, 0, 5, 0]), min_side=32, max_side=48)
    assert other.frames.shape != same.frames.shape or not np.array_equal(other.frames, same.frames)


def _centroid_track(motion: str, seed: int, h=96, w=128):
    """Render one white square sprite along a class's track on black: per-frame (x, y, area)."""
    rng = np.random.default_rng(seed)
    track = _main_track(motion, rng, 24, h, w)
    sprite = torch.ones(4, 64, 64)
    frames = _composite(torch.zeros(24, 3, h, w), sprite, track)[:, 0]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    area = frames.sum(dim=(1, 2))
    weight = area.clamp(min=1e-6)
    return (frames * xs).sum(dim=(1, 2)) / weight, (frames * ys).sum(dim=(1, 2)) / weight, area


@pytest.mark.parametrize("seed", range(3))
def test_directions_as_seen_on_screen(seed):
    x, y, _ = _centroid_track("right", seed)
    assert x[-1] - x[0] > 20 and abs(y[-1] - y[0]) < x[-1] - x[0]  # left to right = increasing x
    x, y, _ = _centroid_track("up", seed)
    assert y[0] - y[-1] > 15 and abs(x[-1] - x[0]) < y[0] - y[-1]  # up = decreasing row index
    _, _, area = _centroid_track("closer", seed)
    assert area[-1] > 2 * area[0]
    _, _, area = _centroid_track("appear", seed)
    assert area[0] < 1 and area[-1] > 100
    x, y, _ = _centroid_track("back_and_forth", seed)
    travel = torch.hypot(x - x[0], y - y[0])
    assert travel.max() > 8 and travel[-1] < 2
    x, y, _ = _centroid_track("still", seed)
    assert torch.hypot(x - x[0], y - y[0]).max() < 0.5


def test_clockwise_is_clockwise_as_viewed():
    """A bar pointing right with a bright tip, turned a quarter of the clockwise class's way:
    on screen (rows go down), the tip must move from the right towards the bottom."""
    h = w = 64
    sprite = torch.zeros(4, 64, 64)
    sprite[:, 28:36, 32:64] = 1  # bar from the centre to the right edge
    t = 5
    angle = np.linspace(0, math.pi / 2, t)
    track = Track(np.full(t, 32.0), np.full(t, 32.0), np.full(t, 48.0), angle, np.ones(t))
    frames = _composite(torch.zeros(t, 3, h, w), sprite, track)[:, 0]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cx = (frames * xs).sum(dim=(1, 2)) / frames.sum(dim=(1, 2))
    cy = (frames * ys).sum(dim=(1, 2)) / frames.sum(dim=(1, 2))
    assert cx[0] > 40 and abs(cy[0] - 32) < 2  # starts pointing right
    assert cy[-1] > 40 and abs(cx[-1] - 32) < 2  # ends pointing down: clockwise on screen
    # and the clockwise class's track turns by a positive (clockwise) angle
    for seed in range(5):
        turn = _main_track("clockwise", np.random.default_rng(seed), 24, 96, 128)
        assert turn.angle[-1] - turn.angle[0] >= math.pi / 2 - 1e-6


def test_reversed_pairs_are_time_reversals():
    """Class 2k+1 is class 2k played backwards: same draw, reversed main-object track."""
    for forward, backward in ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)):
        a = render_video(forward, np.random.default_rng(11), min_side=48, max_side=48)
        b = render_video(backward, np.random.default_rng(11), min_side=48, max_side=48)
        assert a.frames.shape == b.frames.shape
        assert not np.array_equal(a.frames, b.frames)


def test_no_class_is_tied_to_size_or_frame_rate():
    """Nuisance factors are drawn from one distribution for all classes."""
    sizes, rates = {}, {}
    for c in (0, 1, 6, 11):
        draws = [render_video(c, np.random.default_rng([99, c, k]), min_side=32, max_side=64) for k in range(6)]
        sizes[c] = {d.frames.shape[1:3] for d in draws}
        rates[c] = {d.fps for d in draws}
    assert all(len(s) >= 3 for s in sizes.values())
    assert all(len(r) >= 2 for r in rates.values())


def test_cli_synth_writes_a_dataset(tmp_path, run_cli):
    out = tmp_path / "cli"
    summary = run_cli("data", "synth", "--out", str(out), "-n", "1", "--val-per-class", "0",
                      "--classes", "0,Holding something still", "--style", "plain", "--json", check=True)
    assert json.loads(summary.stdout)["style"] == "plain"
    ds = build_dataset("ssv2", out, "train")
    assert ds.classes == EXPECTED and sorted(s.label for s in ds.samples) == [0, 11]
    bad = run_cli("data", "synth", "--out", str(tmp_path / "x"), "--classes", "Juggling")
    assert bad.returncode != 0 and "Juggling" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
    bad = run_cli("data", "synth", "--out", str(tmp_path / "y"), "--style", "glossy")
    assert bad.returncode != 0 and "glossy" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
    info = run_cli("data", "info", ds.samples[0].path, "--json", check=True)
    assert json.loads(info.stdout)["files"][0]["frames"] >= 12


def test_cli_synth_append_adds_videos_and_keeps_the_earlier_ones(tmp_path, run_cli):
    """--append grows a dataset (more of some classes, say): new ids after the last, the earlier
    videos and label entries untouched; the appended videos are those a fresh run would write."""
    out = tmp_path / "grow"
    run_cli("data", "synth", "--out", str(out), "-n", "1", "--val-per-class", "1", "--classes", "0,1",
            "--style", "plain", "--min-side", "32", "--max-side", "48", check=True)
    before = {p.name: p.read_bytes() for p in (out / "20bn-something-something-v2").iterdir()}
    train_before = json.loads((out / "labels" / "train.json").read_text())
    added = run_cli("data", "synth", "--out", str(out), "--append", "-n", "2", "--val-per-class", "0",
                    "--classes", "6", "--seed", "5", "--style", "plain", "--min-side", "32", "--max-side", "48",
                    check=True)
    assert "added 2 training and 0 validation videos" in added.stdout
    train = json.loads((out / "labels" / "train.json").read_text())
    assert train[:2] == train_before and [e["id"] for e in train[2:]] == ["5", "6"]  # ids 1-4 were taken
    assert len(json.loads((out / "labels" / "validation.json").read_text())) == 2
    assert all((out / "20bn-something-something-v2" / name).read_bytes() == data for name, data in before.items())
    ds = build_dataset("ssv2", out, "train")
    assert sorted(s.label for s in ds.samples) == [0, 1, 6, 6]
    fresh = tmp_path / "fresh"
    synthesize_dataset(fresh, videos_per_class=2, seed=5, val_videos_per_class=0, classes=[6], style="plain",
                       min_side=32, max_side=48)
    appended = [s.path for s in ds.samples if s.label == 6]
    assert [open(p, "rb").read() for p in appended] == [open(s.path, "rb").read()
                                                        for s in build_dataset("ssv2", fresh, "train").samples]
    alone = run_cli("data", "synth", "--out", str(tmp_path / "none"), "--append", "-n", "1")
    assert alone.returncode == 1 and "--append needs a dataset" in alone.stderr


def test_shipped_examples_are_a_readable_ssv2_dataset():
    """examples/synth-mini (see examples/README.md) is what the quickstart and tests use."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples" / "synth-mini"
    ds = build_dataset("ssv2", root, "train", clip_len=8)
    assert ds.classes == EXPECTED
    assert sorted(ds.classes[s.label] for s in ds.samples) == sorted(EXPECTED[i] for i in (0, 1, 6, 7))
    for i in range(len(ds)):
        item = ds[i]
        assert "error" not in item and item["clip"].shape[0] == 8


def test_plain_style_still_makes_the_shipped_examples():
    """The plain style draws exactly as before: its frames for seed 7 are the pictures
    encoded in examples/synth-mini (compared decoded, so an encoder update cannot fail it)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples" / "synth-mini"
    ds = build_dataset("ssv2", root, "train")
    def smooth(frames):  # 4x4 means: the codec's loss and the sensor noise average out
        clip = torch.as_tensor(np.asarray(frames, np.float32)).permute(0, 3, 1, 2)
        return torch.nn.functional.avg_pool2d(clip, 4)

    for sample in ds.samples:
        video = render_video(sample.label, np.random.default_rng([7, 0, sample.label, 0]), style="plain")
        reader = open_video(sample.path)
        decoded = smooth(reader.get_frames(range(reader.num_frames)).numpy())
        assert decoded.shape == smooth(video.frames).shape
        # about 2 grey levels here; the same frames in reverse order differ by 5 to 15
        assert (decoded - smooth(video.frames)).abs().mean() < 4


def test_varied_style_is_deterministic_and_the_default():
    a = render_video(7, np.random.default_rng([1, 2, 3]), min_side=48, max_side=64)
    b = render_video(7, np.random.default_rng([1, 2, 3]), min_side=48, max_side=64, style="varied")
    c = render_video(7, np.random.default_rng([1, 2, 4]), min_side=48, max_side=64)
    assert np.array_equal(a.frames, b.frames) and (a.fps, a.codec, a.placeholder) == (b.fps, b.codec, b.placeholder)
    assert a.frames.shape != c.frames.shape or not np.array_equal(a.frames, c.frames)
    assert a.track is not None and len(a.track.x) == len(a.frames)
    with pytest.raises(ValueError, match="glossy"):
        render_video(0, np.random.default_rng(0), style="glossy")


def _footprint(class_index: int, key, side=64):
    """Render a varied clip twice from the same draw, with and without its main object: the
    difference is the object alone, whatever the background, clutter, lighting and noise.
    Returns the video, and per frame the object's centroid (x, y) and area in pixels."""
    shown = _render_varied(class_index, np.random.default_rng(key), side, side, ("h264",))
    hidden = _render_varied(class_index, np.random.default_rng(key), side, side, ("h264",), hide_main=True)
    assert shown.frames.shape == hidden.frames.shape
    diff = np.abs(shown.frames.astype(float) - hidden.frames.astype(float)).max(axis=3)
    mask = (diff > 25).astype(float)
    t, h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w]
    area = mask.sum(axis=(1, 2))
    cx = (mask * xs).sum(axis=(1, 2)) / np.maximum(area, 1)
    cy = (mask * ys).sum(axis=(1, 2)) / np.maximum(area, 1)
    return shown, cx, cy, area, mask


_KEYS = [[5, k] for k in range(2)]


@pytest.mark.parametrize("key", _KEYS[:1])
def test_varied_classes_move_as_named_on_screen(key):
    """Measured from the pixels: the main object goes where the class says, in the varied style too."""
    w_of = {}
    for c in range(12):
        video, cx, cy, area, _ = _footprint(c, key)
        h, w = video.frames.shape[1:3]
        short = min(h, w)
        w_of[c] = w
        visible = area > 0.3 * np.median(area[area > 0])
        first, last = np.flatnonzero(visible)[[0, -1]]
        dx, dy = cx[last] - cx[first], cy[last] - cy[first]
        if c == 0:
            assert dx > 0.15 * w and abs(dy) < dx, (c, dx, dy)
        elif c == 1:
            assert -dx > 0.15 * w and abs(dy) < -dx, (c, dx, dy)
        elif c == 2:
            assert -dy > 0.15 * h and abs(dx) < -dy, (c, dx, dy)
        elif c == 3:
            assert dy > 0.15 * h and abs(dx) < dy, (c, dx, dy)
        elif c == 4:
            assert area[-1] > 1.8 * area[0], (c, area[0], area[-1])
        elif c == 5:
            assert area[0] > 1.8 * area[-1], (c, area[0], area[-1])
        elif c in (6, 7, 11):
            assert np.hypot(cx[visible] - cx[first], cy[visible] - cy[first]).max() < 0.1 * short, c
        elif c == 8:
            assert area[0] < 0.1 * area.max() and area[-1] > 0.5 * area.max(), c
        elif c == 9:
            assert area[-1] < 0.1 * area.max() and area[0] > 0.5 * area.max(), c
        elif c == 10:
            # Out and back: the end is nearer the start than the far point by half at least
            # (the camera shake alone moves the picture by up to 6% of the short side).
            travel = np.hypot(cx - cx[0], cy - cy[0])
            assert travel.max() > 0.1 * short and travel[-1] < 0.5 * travel.max(), c


def _turn_seen(mask: np.ndarray, cx: np.ndarray, cy: np.ndarray, a: int, b: int) -> float:
    """Angle (degrees, clockwise on screen) that best turns the object's footprint in frame
    ``a`` into the one in frame ``b``, found by PIL (independent of the renderer's sampler)."""
    from PIL import Image

    src = Image.fromarray((mask[a] * 255).astype(np.uint8))
    best, best_angle = -1.0, 0.0
    for angle in range(-60, 61, 5):
        # PIL turns anticlockwise for a positive angle; move the centroid of a onto that of b.
        turned = src.rotate(-angle, resample=Image.BILINEAR, center=(cx[a], cy[a]),
                            translate=(cx[b] - cx[a], cy[b] - cy[a]))
        overlap = (np.asarray(turned, float) / 255 * mask[b]).sum()
        if overlap > best:
            best, best_angle = overlap, angle
    return best_angle


@pytest.mark.parametrize("key", _KEYS)
def test_varied_turns_are_clockwise_as_named(key):
    for c, sign in ((6, 1), (7, -1)):
        video, cx, cy, area, mask = _footprint(c, key)
        # Frames a few steps apart while the turn is under way (the renderer's own record says when).
        rate = np.abs(np.diff(video.track.angle))
        a = int(np.argmax(rate))
        step = max(1, int(np.ceil(np.radians(25) / max(rate[a], 1e-6))))
        a, b = max(0, a - step // 2), min(len(rate), a - step // 2 + step)
        assert sign * _turn_seen(mask, cx, cy, a, b) > 0, (c, a, b)


def test_the_returned_track_is_where_the_object_is_drawn():
    """``SynthVideo.track`` (frame pixels, after camera shake) against the measured footprint."""
    for c in (0, 3, 10):
        video, cx, cy, area, _ = _footprint(c, [6, c])
        full = area > 0.8 * area.max()
        # The centroid of an irregular shape (a blob, a star) is not its canvas centre: allow
        # one constant offset, the same in every frame, and judge the path.
        dx, dy = (cx - video.track.x)[full], (cy - video.track.y)[full]
        err = np.hypot(dx - np.median(dx), dy - np.median(dy))
        assert np.hypot(np.median(dx), np.median(dy)) < 0.1 * min(video.frames.shape[1:3]), (c, dx, dy)
        assert np.median(err) < 0.05 * min(video.frames.shape[1:3]), (c, err)


def test_varied_backgrounds_differ_and_are_not_flat():
    """The variety is real: twelve backgrounds are all far apart, none is flat, most carry
    fine detail; and whole first frames of "still" clips differ as much."""
    from dtfcli.data import synth_looks

    def thumb_and_detail(image: torch.Tensor):
        fine = image - torch.nn.functional.avg_pool2d(image, 5, 1, 2, count_include_pad=False)
        return torch.nn.functional.adaptive_avg_pool2d(image, 6).flatten(), float(fine.abs().mean())

    thumbs, detailed = [], 0
    for k in range(12):
        image = torch.from_numpy(synth_looks.background(np.random.default_rng([8, k]), 48, 64).astype(np.float32))
        image = image.permute(2, 0, 1)[None]
        assert float(image.std()) > 0.05, k
        thumb, detail = thumb_and_detail(image)
        thumbs.append(thumb)
        detailed += detail > 0.02
    distances = torch.cdist(torch.stack(thumbs), torch.stack(thumbs))
    assert distances[~torch.eye(12, dtype=bool)].min() > 0.3 and detailed >= 6
    frames = [render_video(11, np.random.default_rng([8, k]), min_side=48, max_side=48).frames[0] for k in range(6)]
    thumbs = [thumb_and_detail(torch.from_numpy(f).permute(2, 0, 1).float()[None] / 255)[0] for f in frames]
    distances = torch.cdist(torch.stack(thumbs), torch.stack(thumbs))
    assert distances[~torch.eye(6, dtype=bool)].min() > 0.3


@pytest.mark.parametrize("codec", list(CODECS))
def test_every_codec_round_trips(codec, tmp_path):
    frames = render_video(0, np.random.default_rng(3), min_side=48, max_side=48).frames[:12]
    path = tmp_path / f"clip{CODECS[codec][1]}"
    encode_video(path, frames, 12, codec, quality=0.3)
    reader = open_video(path)
    decoded = reader.get_frames(range(reader.num_frames)).numpy().astype(float)
    assert decoded.shape == frames.shape and np.abs(decoded - frames).mean() < 12


def _object_contrast(class_index: int, key, share: float) -> float:
    """Mean luminance difference (grey levels) between the main object's middle and the scene
    it covers, measured from two renders of the same draw, with and without the object."""
    shown = _render_varied(class_index, np.random.default_rng(key), 64, 64, ("h264",), contrast_share=share)
    hidden = _render_varied(class_index, np.random.default_rng(key), 64, 64, ("h264",), hide_main=True,
                            contrast_share=share)
    luma = np.array([0.299, 0.587, 0.114])
    a, b = shown.frames.astype(float) @ luma, hidden.frames.astype(float) @ luma
    track, (_, h, w) = shown.track, a.shape
    ys, xs = np.mgrid[0:h, 0:w]
    diffs = []
    for i in np.flatnonzero(track.alpha > 0.99):
        middle = np.hypot(xs - track.x[i], ys - track.y[i]) < 0.25 * track.side[i]
        if middle.sum() >= 4:
            diffs.append(a[i][middle].mean() - b[i][middle].mean())
    return abs(float(np.mean(diffs)))


def test_contrast_share_sets_how_often_the_object_stands_out():
    """Share 1: every object lighter or darker than its scene; share 0: random colours only,
    which often leave it close to the scene."""
    always = [_object_contrast(c, [9, c], 1.0) for c in range(12)]
    never = [_object_contrast(c, [9, c], 0.0) for c in range(12)]
    assert min(always) > 45, always
    assert np.median(never) < 0.5 * np.median(always), (never, always)
    default = render_video(3, np.random.default_rng([1, 2]), min_side=48, max_side=48)
    same = render_video(3, np.random.default_rng([1, 2]), min_side=48, max_side=48, contrast_share=0.85)
    assert np.array_equal(default.frames, same.frames)
    with pytest.raises(ValueError, match="between 0 and 1"):
        render_video(3, np.random.default_rng(0), contrast_share=1.5)
    with pytest.raises(ValueError, match="varied style only"):
        render_video(3, np.random.default_rng(0), style="plain", contrast_share=0.5)


def test_cli_synth_contrast_share(tmp_path, run_cli):
    out = tmp_path / "hard"
    summary = run_cli("data", "synth", "--out", str(out), "-n", "1", "--val-per-class", "0", "--classes", "0",
                      "--contrast-share", "0", "--json", check=True)
    assert json.loads(summary.stdout)["contrast_share"] == 0.0
    assert len(build_dataset("ssv2", out, "train").samples) == 1
    bad = run_cli("data", "synth", "--out", str(tmp_path / "p"), "-n", "1", "--style", "plain",
                  "--contrast-share", "0.5")
    assert bad.returncode == 1 and "--contrast-share applies to the varied style only" in bad.stderr
    bad = run_cli("data", "synth", "--out", str(tmp_path / "q"), "-n", "1", "--contrast-share", "1.5")
    assert bad.returncode != 0 and "--contrast-share" in bad.stderr and "Traceback" not in bad.stderr
