"""Sampling plans: which frame positions make a clip.

All plans work on ``num_frames`` positions (a reader's timeline; read them with
``reader.read_clip(positions)``, which picks frames by time) and return lists of ints in
``[0, num_frames)``, in temporal order.

Short videos (fewer frames than a clip spans): the rule is **pad**: positions past the
last frame repeat the last frame, so a clip never runs backwards or jumps (which would turn
"left to right" into "back and forth").  ``short_video="loop"`` wraps around to the first
frame instead (MMAction2's behaviour) for those who want it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SHORT_VIDEO_RULES = ("pad", "loop")


def _fit(positions: list[int], num_frames: int, short_video: str) -> list[int]:
    if short_video not in SHORT_VIDEO_RULES:
        raise ValueError(f"short_video must be one of {SHORT_VIDEO_RULES}, not {short_video!r}")
    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    if short_video == "loop":
        return [p % num_frames for p in positions]
    return [min(max(p, 0), num_frames - 1) for p in positions]


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform int in [0, high] (inclusive)."""
    return int(torch.randint(0, high + 1, (1,), generator=generator).item())


def sample_dense_clip(
    num_frames: int,
    clip_len: int,
    frame_interval: int,
    *,
    random: bool = True,
    short_video: str = "pad",
    generator: torch.Generator | None = None,
) -> list[int]:
    """One dense clip: ``clip_len`` positions ``frame_interval`` apart (Kinetics-style).

    ``random``: start uniformly at random where the clip fits (training), else centre it.
    A clip longer than the video starts at 0 and follows the short-video rule.
    """
    span = (clip_len - 1) * frame_interval + 1
    slack = num_frames - span
    start = (_randint(slack, generator) if random else slack // 2) if slack > 0 else 0
    return _fit([start + i * frame_interval for i in range(clip_len)], num_frames, short_video)


def sample_segments(
    num_frames: int,
    num_segments: int,
    *,
    random: bool = True,
    offset: float = 0.5,
    generator: torch.Generator | None = None,
) -> list[int]:
    """TSN-style: split the video into ``num_segments`` equal segments, one frame from each.

    ``random``: a uniformly random frame inside each segment (training); else the frame at
    fraction ``offset`` of each segment (0.5 = the middle).  With fewer frames than
    segments, segments are shorter than a frame and neighbours share a frame (still one
    per segment, in order).
    """
    length = num_frames / num_segments
    positions = []
    for k in range(num_segments):
        lo = int(k * length)
        hi = max(lo, int((k + 1) * length) - 1)
        if random:
            positions.append(lo + _randint(hi - lo, generator))
        else:
            positions.append(min(int((k + offset) * length), num_frames - 1))
    return positions


@dataclass(frozen=True)
class TestView:
    """One test view: a clip (``positions``) and a spatial crop of the resized frame.

    ``box`` is (top, left, height, width) in the frame resized so its short side equals
    the crop size; ``crop_name`` is left/centre/right (landscape) or top/centre/bottom.
    """

    __test__ = False  # not a pytest test class, despite the name

    clip: int
    crop: int
    positions: tuple[int, ...]
    box: tuple[int, int, int, int]
    crop_name: str


Box = tuple[int, int, int, int]  # (top, left, height, width)


def crop_boxes(height: int, width: int, crop_size: int, num_crops: int = 3) -> list[tuple[Box, str]]:
    """``num_crops`` (1 or 3) square boxes along the long side: (box, name) pairs."""
    if num_crops not in (1, 3):
        raise ValueError("num_crops must be 1 or 3")
    size_h, size_w = min(crop_size, height), min(crop_size, width)
    centre = ((height - size_h) // 2, (width - size_w) // 2, size_h, size_w)
    if num_crops == 1:
        return [(centre, "centre")]
    if width >= height:
        return [((centre[0], 0, size_h, size_w), "left"), (centre, "centre"),
                ((centre[0], width - size_w, size_h, size_w), "right")]
    return [((0, centre[1], size_h, size_w), "top"), (centre, "centre"),
            ((height - size_h, centre[1], size_h, size_w), "bottom")]


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) after scaling the short side to ``short_side`` (as torchvision's Resize(int))."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def sample_test_views(
    num_frames: int,
    *,
    clip_len: int = 16,
    frame_interval: int = 4,
    num_clips: int = 10,
    num_crops: int = 3,
    frame_size: tuple[int, int] | None = None,
    crop_size: int = 224,
    mode: str = "dense",
    short_video: str = "pad",
) -> list[TestView]:
    """The multi-view test: ``num_clips`` clips x ``num_crops`` crops (clip-major order).

    ``mode="dense"``: clips of ``clip_len`` x ``frame_interval`` whose starts are spaced
    uniformly from the first frame to the last possible start (the first clip starts at
    frame 0, the last ends at the last frame; one clip is centred).  ``mode="segments"``:
    clip k takes the frame at fraction (k + 0.5) / num_clips of each of ``clip_len``
    segments (Something-Something).  ``frame_size`` (H, W) of the video: crops are placed
    on it after scaling its short side to ``crop_size``; omitted, boxes are (0, 0, crop, crop).
    """
    if mode not in ("dense", "segments"):
        raise ValueError("mode must be 'dense' or 'segments'")
    clips: list[list[int]] = []
    if mode == "segments":
        for k in range(num_clips):
            clips.append(sample_segments(num_frames, clip_len, random=False, offset=(k + 0.5) / num_clips))
    else:
        span = (clip_len - 1) * frame_interval + 1
        slack = max(num_frames - span, 0)
        for k in range(num_clips):
            start = round(k * slack / (num_clips - 1)) if num_clips > 1 else slack // 2
            clips.append(_fit([start + i * frame_interval for i in range(clip_len)], num_frames, short_video))
    if frame_size is None:
        boxes = [((0, 0, crop_size, crop_size), "centre")] * num_crops
    else:
        boxes = crop_boxes(*resized_size(*frame_size, crop_size), crop_size, num_crops)
    return [TestView(c, j, tuple(clip), box, name)
            for c, clip in enumerate(clips) for j, (box, name) in enumerate(boxes)]
