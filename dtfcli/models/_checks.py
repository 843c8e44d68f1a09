"""Input checks shared by the video backbones."""

from __future__ import annotations

from torch import Tensor


def frames_inside(num_frames: int, early_stride: int, layer: str) -> int:
    """Frames inside the network for a clip of `num_frames` (the first layer strides time)."""
    if num_frames < early_stride or num_frames % early_stride:
        raise ValueError(
            f"num_frames ({num_frames}) must be a positive multiple of the {layer}'s temporal stride ({early_stride})"
        )
    return num_frames // early_stride


def check_clip(x: Tensor, num_frames: int) -> None:
    """A batch of RGB clips (B, 3, num_frames, H, W), or a one-line error saying what differs."""
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"expected clips of shape (B, 3, T, H, W), got {tuple(x.shape)}")
    if x.shape[2] != num_frames:
        raise ValueError(f"this model takes {num_frames}-frame clips, got {x.shape[2]} frames")
