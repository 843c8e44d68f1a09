"""Sampling plans and clip transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _videos import read_code, write_video

from dtfcli.data.sampling import (
    crop_boxes,
    resized_size,
    sample_dense_clip,
    sample_segments,
    sample_test_views,
)
from dtfcli.data.transforms import TestTransform, TrainTransform, denormalize
from dtfcli.data.video import open_video


@pytest.mark.parametrize("num_frames, clip_len, interval", [(300, 16, 4), (250, 8, 8), (100, 16, 2), (1000, 32, 2)])
def test_test_views_are_uniform_and_cover_the_video(num_frames, clip_len, interval):
    views = sample_test_views(num_frames, clip_len=clip_len, frame_interval=interval, num_clips=10,
                              num_crops=3, frame_size=(240, 320), crop_size=224)
    assert len(views) == 30
    clips = [v.positions for v in views if v.crop == 0]
    assert len(clips) == 10
    starts = np.array([c[0] for c in clips])
    gaps = np.diff(starts)
    assert gaps.min() > 0 and gaps.max() - gaps.min() <= 1  # evenly spaced
    assert clips[0][0] == 0 and clips[-1][-1] == num_frames - 1  # first and last frame covered
    for clip in clips:
        assert len(clip) == clip_len and all(b - a == interval for a, b in zip(clip, clip[1:], strict=False))
    # every crop of a clip shares its frames
    for v in views:
        assert v.positions == clips[v.clip]


def test_three_crops_along_the_long_side():
    h, w = resized_size(240, 320, 224)
    assert (h, w) == (224, 298)
    boxes = crop_boxes(h, w, 224)
    assert [n for _, n in boxes] == ["left", "centre", "right"]
    assert boxes[0][0] == (0, 0, 224, 224) and boxes[2][0] == (0, w - 224, 224, 224)
    assert boxes[1][0][1] == (w - 224) // 2
    portrait = crop_boxes(*resized_size(320, 240, 224), 224)
    assert [n for _, n in portrait] == ["top", "centre", "bottom"]
    assert portrait[2][0][0] + 224 == resized_size(320, 240, 224)[0]


def test_segment_sampling_picks_one_frame_per_segment():
    gen = torch.Generator().manual_seed(0)
    for num_frames in (8, 37, 100, 301):
        edges = np.linspace(0, num_frames, 9)
        for _ in range(20):
            positions = sample_segments(num_frames, 8, random=True, generator=gen)
            assert len(positions) == 8
            for k, p in enumerate(positions):
                assert int(edges[k]) <= p < max(int(edges[k + 1]), int(edges[k]) + 1)
        middle = sample_segments(num_frames, 8, random=False)
        assert all(int(edges[k]) <= p < int(edges[k + 1]) + 1 for k, p in enumerate(middle))


def test_segment_sampling_random_draws_vary_but_stay_ordered():
    gen = torch.Generator().manual_seed(1)
    draws = {tuple(sample_segments(100, 8, generator=gen)) for _ in range(10)}
    assert len(draws) > 1
    assert all(list(d) == sorted(d) for d in draws)


def test_short_video_rule_pads_with_the_last_frame():
    positions = sample_dense_clip(10, 8, 2, random=True)
    assert positions == [0, 2, 4, 6, 8, 9, 9, 9]
    assert sample_dense_clip(10, 8, 2, short_video="loop") == [0, 2, 4, 6, 8, 0, 2, 4]
    few = sample_segments(5, 8, random=False)
    assert len(few) == 8 and few == sorted(few) and set(few) == set(range(5))
    views = sample_test_views(10, clip_len=8, frame_interval=2, num_clips=3, num_crops=1)
    assert all(v.positions == (0, 2, 4, 6, 8, 9, 9, 9) for v in views)


def test_short_video_clip_from_a_real_file(tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, 5)
    reader = open_video(path, "pyav")
    clip = reader.read_clip(sample_dense_clip(reader.num_frames, 16, 1))
    assert clip.shape[0] == 16
    assert [read_code(f) for f in clip.numpy()] == [0, 1, 2, 3, 4] + [4] * 11


def _gradient_clip(t=4, h=60, w=80) -> torch.Tensor:
    """uint8 (T, H, W, 3): brightness rises left to right, same in every frame."""
    row = torch.linspace(0, 255, w).round().to(torch.uint8)
    return row.view(1, 1, w, 1).expand(t, h, w, 3).contiguous()


def test_train_transform_shapes_and_same_crop_for_every_frame():
    clip = _gradient_clip()
    torch.manual_seed(0)
    out = TrainTransform(crop_size=32, scale_range=(40, 56))(clip)
    assert out.dtype == torch.float32 and tuple(out.shape) == (3, 4, 32, 32)
    assert torch.allclose(out[:, 0], out[:, 3])  # identical frames stay identical


def test_train_transform_flips_only_when_allowed():
    clip = _gradient_clip()

    def rises(out):
        return bool(out[0, 0, :, -1].mean() > out[0, 0, :, 0].mean())

    torch.manual_seed(0)
    no_flip = TrainTransform(crop_size=32, scale_range=(40, 56), flip=False)
    assert all(rises(no_flip(clip)) for _ in range(20))
    with_flip = TrainTransform(crop_size=32, scale_range=(40, 56), flip=True)
    results = {rises(with_flip(clip)) for _ in range(40)}
    assert results == {True, False}


def test_train_transform_with_randaugment_runs_on_video():
    torch.manual_seed(0)
    out = TrainTransform(crop_size=32, scale_range=(40, 56), flip=False, randaugment=True)(_gradient_clip())
    assert tuple(out.shape) == (3, 4, 32, 32) and torch.isfinite(out).all()


def test_test_transform_three_crops_and_normalisation():
    clip = _gradient_clip(t=2, h=60, w=120)
    views = sample_test_views(2, clip_len=2, frame_interval=1, num_clips=1, num_crops=3,
                              frame_size=(60, 120), crop_size=30)
    crops = TestTransform(30).views(clip, views)
    assert tuple(crops.shape) == (3, 3, 2, 30, 30)
    means = [c.mean().item() for c in crops]
    assert means[0] < means[1] < means[2]  # left, centre, right of a left-to-right gradient
    restored = denormalize(crops[1]).float()
    resized = torch.nn.functional.interpolate(clip.permute(0, 3, 1, 2).float(), size=(30, 60), mode="bilinear",
                                              antialias=True, align_corners=False)
    centre = resized[:, :, :, 15:45].permute(0, 2, 3, 1)
    assert (restored - centre).abs().mean() < 2
    single = TestTransform(30)(clip)
    assert tuple(single.shape) == (3, 2, 30, 30) and torch.allclose(single, crops[1], atol=1e-5)
