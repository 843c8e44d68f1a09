"""Temporal modules that sit after a spatial conv (DTF-Net) or after W-MSA (DTF-Transformer).

Every module maps a (B, C, T, H, W) feature, or a frames-major (B*T, C, H, W) one (the
layout the backbones carry: a clip's T frames consecutive), to the same shape and starts
as the identity, so a backbone initialised from 2D ImageNet weights first behaves like the
2D network.
They are the paper's Table 1 ablations plus common baselines:

=============  =================================================  ===========================
kind           module                                             paper
=============  =================================================  ===========================
``none``       identity                                           2D-ResNet / C2D
``dtf``        `DTFBlock` (FA + correlation + dynamic filter)     DTF
``dtf_nofa``   `DTFBlock` without FA and correlation              DTF-baseline (Table 1b)
``dtf_agg``    `DTFBlock` with FA, no correlation to the filter   Table 1b, aggregation row
``dtf_cor``    `DTFBlock` with correlation, no aggregation        Table 1b, correlation row
``dtf_fixed``  `DTFBlock` with one learnt filter per channel      DTF_F (Table 1a)
``conv1d``     `TemporalConv`, 3-tap temporal conv                DTF_1d (Table 1a)
``dyn1d``      `DynamicTemporalConv`, per-location 3-tap kernel   DTF_1d+ (Table 1a)
``tsm``        `TemporalShift` (placed before conv1 instead)      TSM (Table 1d)
=============  =================================================  ===========================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dtfcli.models.dtf import DTFBlock

DTF_VARIANTS = {
    "dtf": dict(aggregation=True, correlation=True, dynamic=True),
    "dtf_nofa": dict(aggregation=False, correlation=False, dynamic=True),
    "dtf_agg": dict(aggregation=True, correlation=False, dynamic=True),
    "dtf_cor": dict(aggregation=False, correlation=True, dynamic=True),
    "dtf_fixed": dict(aggregation=False, correlation=False, dynamic=False),
}
TEMPORAL_KINDS = ("none", *DTF_VARIANTS, "conv1d", "dyn1d", "tsm")


def _clip_view(x: Tensor, num_frames: int | None) -> Tensor:
    """A frames-major (B*T, C, H, W) tensor as (B, T, C, H*W)."""
    if num_frames is None or x.shape[0] % num_frames:
        raise ValueError(
            f"a frames-major (B*T, C, H, W) input needs the module's num_frames to divide its "
            f"batch, got shape {tuple(x.shape)} and num_frames={num_frames}"
        )
    return x.reshape(x.shape[0] // num_frames, num_frames, x.shape[1], -1)


class TemporalConv(nn.Module):
    """x + Conv_t(x): a full C -> C temporal convolution of `kernel_size` taps (zero padded),
    zero-initialised (the factorised (2+1)D temporal conv of the paper's DTF_1d).
    `num_frames` is needed for frames-major input only."""

    def __init__(self, channels: int, kernel_size: int = 3, num_frames: int | None = None):
        super().__init__()
        self.num_frames = num_frames
        self.conv = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0), bias=False)
        nn.init.zeros_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 5:
            return x + self.conv(x)
        # Frames-major: one channel matmul per tap over the frames it reaches.
        clip = _clip_view(x, self.num_frames)
        t, k = clip.shape[1], self.conv.kernel_size[0]
        out = clip.clone()
        for i in range(k):
            shift = i - k // 2  # output frame f reads input frame f + shift
            lo, hi = max(0, -shift), min(t, t - shift)
            if lo < hi:
                out[:, lo:hi] += torch.matmul(self.conv.weight[:, :, i, 0, 0], clip[:, lo + shift : hi + shift])
        return out.view(x.shape)


class DynamicTemporalConv(nn.Module):
    """x + alpha * (per-location temporal conv): the paper's DTF_1d+, a 1D version of
    dynamic convolution. At every location a 1x1 conv over the flattened C x T feature
    predicts a `kernel_size`-tap kernel for each group of G channels."""

    def __init__(self, channels: int, num_frames: int, kernel_size: int = 3, groups: int = 16):
        super().__init__()
        if channels % groups != 0:
            raise ValueError(f"dyn1d: channels ({channels}) must be a multiple of groups ({groups})")
        self.channels, self.num_frames, self.kernel_size, self.groups = channels, num_frames, kernel_size, groups
        self.kernel_estimator = nn.Conv2d(channels * num_frames, channels // groups * kernel_size, 1, bias=False)
        nn.init.kaiming_normal_(self.kernel_estimator.weight, mode="fan_out", nonlinearity="relu")
        self.alpha = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # frames-major: an ablation, run through the clip layout
            n, c, h, w = x.shape
            clip = _clip_view(x, self.num_frames).view(n // self.num_frames, self.num_frames, c, h, w)
            return self(clip.transpose(1, 2)).transpose(1, 2).reshape(n, c, h, w)
        b, c, t, h, w = x.shape
        if t != self.num_frames:
            raise ValueError(f"dyn1d built for T={self.num_frames}, got T={t}")
        k, g = self.kernel_size, self.groups
        kernels = self.kernel_estimator(x.reshape(b, c * t, h, w)).view(b, c // g, 1, k, 1, h, w)
        padded = F.pad(x, (0, 0, 0, 0, k // 2, k // 2))
        taps = torch.stack([padded[:, :, i : i + t] for i in range(k)], dim=2)  # (B, C, k, T, H, W)
        out = (taps.view(b, c // g, g, k, t, h, w) * kernels).sum(3).view(b, c, t, h, w)
        return x + out * self.alpha.view(1, c, 1, 1, 1)

    def macs(self, x: Tensor) -> int:
        return x.numel() * self.kernel_size  # k taps per channel, location and frame


class TemporalShift(nn.Module):
    """Temporal shift (Lin et al., TSM, ICCV 2019): 1/`fold_div` of the channels move one
    frame back, another 1/`fold_div` one frame forward, zero filled. No parameters.
    `num_frames` is needed for frames-major input only."""

    def __init__(self, fold_div: int = 8, num_frames: int | None = None):
        super().__init__()
        self.fold_div = fold_div
        self.num_frames = num_frames

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        fold = c // self.fold_div
        if x.dim() == 4:  # frames-major: time is the second axis of the clip view
            out = torch.zeros_like(x)  # in x's memory format (channels-last stays so)
            src, dst = _clip_view(x, self.num_frames), _clip_view(out, self.num_frames)
            dst[:, :-1, :fold] = src[:, 1:, :fold]
            dst[:, 1:, fold : 2 * fold] = src[:, :-1, fold : 2 * fold]
            dst[:, :, 2 * fold :] = src[:, :, 2 * fold :]
            return out
        out = torch.zeros_like(x)
        out[:, :fold, :-1] = x[:, :fold, 1:]
        out[:, fold : 2 * fold, 1:] = x[:, fold : 2 * fold, :-1]
        out[:, 2 * fold :] = x[:, 2 * fold :]
        return out

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}, num_frames={self.num_frames}"


def build_temporal_module(
    kind: str, channels: int, num_frames: int, kernel_size: int = 3, filter_groups: int = 16
) -> nn.Module:
    """The temporal module that follows a spatial conv; `nn.Identity` for none and tsm."""
    if kind in DTF_VARIANTS:
        return DTFBlock(channels, num_frames, kernel_size, filter_groups, **DTF_VARIANTS[kind])
    if kind == "conv1d":
        return TemporalConv(channels, num_frames=num_frames)
    if kind == "dyn1d":
        return DynamicTemporalConv(channels, num_frames, groups=filter_groups)
    if kind in ("none", "tsm"):
        return nn.Identity()
    raise ValueError(f"unknown temporal module {kind!r}; choose one of {', '.join(TEMPORAL_KINDS)}")
