"""Clip transforms, built on torchvision.transforms.v2 (which treats a video as (T, C, H, W)).

Input: a reader's clip, uint8 (T, H, W, C).  Output: float32 (C, T, H, W), scaled to
[0, 1] and normalised with the ImageNet mean/std: the layout the models take (batched:
(B, C, T, H, W)).  Every frame of a clip gets the same random parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from dtfcli.data.sampling import TestView, resized_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_video(clip: torch.Tensor) -> tv_tensors.Video:
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected a uint8 clip (T, H, W, 3), got shape {tuple(clip.shape)}")
    return tv_tensors.Video(clip.permute(0, 3, 1, 2))


def _finish() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


class TrainTransform:
    """Random short-side scale in ``scale_range``, random ``crop_size`` crop, horizontal flip
    (off for direction-sensitive data such as Something-Something, where flipping turns
    "left to right" into "right to left"), optional RandAugment (as the authors used for
    Something-Something)."""

    def __init__(self, crop_size: int = 224, scale_range: tuple[int, int] = (256, 340), *,
                 flip: bool = True, randaugment: bool = False, randaugment_ops: int = 2,
                 randaugment_magnitude: int = 9):
        steps = [v2.RandomShortestSize(min_size=list(range(scale_range[0], scale_range[1] + 1)), antialias=True),
                 v2.RandomCrop(crop_size, pad_if_needed=True)]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        if randaugment:
            steps.append(v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment_magnitude))
        self.pipeline = v2.Compose(steps + _finish())

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, C) -> float (C, T, crop, crop)."""
        return self.pipeline(_to_video(clip)).permute(1, 0, 2, 3).contiguous()


class TestTransform:
    """Short side to ``crop_size``, then the crop boxes of the test views (or a centre crop).

    ``__call__(clip)`` returns one centre-cropped view (C, T, S, S);
    ``views(clip, views)`` returns the crops of a clip's views as (N, C, T, S, S).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, crop_size: int = 224):
        self.crop_size = crop_size
        self.resize = v2.Resize(crop_size, antialias=True)
        self.finish = v2.Compose(_finish())

    def _resized(self, clip: torch.Tensor) -> tv_tensors.Video:
        return self.resize(_to_video(clip))

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        video = v2.CenterCrop(self.crop_size)(self._resized(clip))
        return self.finish(video).permute(1, 0, 2, 3).contiguous()

    def views(self, clip: torch.Tensor, views: Sequence[TestView]) -> torch.Tensor:
        """Crops of one clip (all ``views`` must share its positions): (N, C, T, S, S)."""
        video = self._resized(clip)
        expected = resized_size(clip.shape[1], clip.shape[2], self.crop_size)
        if tuple(video.shape[-2:]) != expected:  # pragma: no cover - torchvision rounding changed
            raise RuntimeError(f"resize gave {tuple(video.shape[-2:])}, expected {expected}")
        out = []
        for view in views:
            top, left, h, w = view.box
            crop = v2.functional.crop(video, top, left, h, w)
            out.append(self.finish(crop).permute(1, 0, 2, 3))
        return torch.stack(out)


def denormalize(clip: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation: float (C, T, H, W) -> uint8 (T, H, W, C), for pictures."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return ((clip * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0)
