"""DTF-Net: a 2D ResNet made a video model by DTF blocks (Long et al., ECCV 2022, sec. 3.4).

Layout (paper and the authors' released code):
- stem: conv (early_stride x 7 x 7), stride (early_stride, 2, 2): 16 input frames become
  4 frames inside the network ("early stride" 4); then max-pool 1x3x3, stride (1, 2, 2);
- every spatial conv is 1 x k x k, so frames are processed independently except in the
  temporal modules;
- a temporal module (the DTF block by default) right after the 3x3 conv of every
  bottleneck in the selected stages (Table 1c; after both 3x3 convs of a basic block, as
  in the released code);
- global average pool over (T, H, W), dropout 0.5, linear classifier.

Input (B, 3, num_frames, H, W) -> logits (B, num_classes). Parameter names follow
torchvision's ResNet, so 2D ImageNet weights map one to one (kernels gain a time axis).

Execution: since every conv after the stem is 1 x k x k, features are carried frames-major,
(B*T, C, H, W), and every conv runs as a 2D convolution (`FrameConv`); the stem's
non-overlapping temporal kernel becomes a 2D conv over channels regrouped as (C, frame).
Parameters stay 3D (the same state dict as a Conv3d network). This is not an
approximation: a 1 x k x k Conv3d is exactly a 2D conv per frame. It matters on a CPU,
where PyTorch sends many 5-D convolutions of batch 1 to a slow unfused path (its oneDNN
heuristic looks at N*C*T*H of the input and rejects these shapes), 5-15x slower than the
same 2D convolution; and the temporal modules get the layout they work best on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dtfcli.models._checks import check_clip, frames_inside
from dtfcli.models.temporal import TemporalConv, TemporalShift, build_temporal_module


class FrameConv(nn.Conv3d):
    """A Conv3d of kernel (kt, k, k) and temporal stride kt (the frames it covers do not
    overlap), run as a 2D convolution. Parameters and state dict are the Conv3d's.

    Input: a frames-major (B*T, C, H, W) tensor (kt must be 1), or a (B, C, T, H, W) clip
    (the stem), whose groups of kt frames become (C, kt) channels. Output: frames-major
    (B*T/kt, C_out, H', W'), channels-last when the clip is ``channels_last_3d``, so that
    the whole network then runs its convolutions channels-last (NHWC kernels on GPUs).
    """

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, kt: int = 1):
        super().__init__(cin, cout, (kt, k, k), stride=(kt, stride, stride), padding=(0, k // 2, k // 2), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        kt = self.kernel_size[0]
        weight = self.weight.flatten(1, 2)  # (out, C * kt, k, k), channels ordered (C, frame)
        if x.dim() == 5:
            b, c, t, h, w = x.shape
            if t % kt:
                raise ValueError(f"{t} frames do not divide into groups of {kt} (the temporal stride)")
            groups = x.view(b, c, t // kt, kt, h, w)
            if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
                # (B*T', H, W, C*kt) in memory: the regrouped frames in channels-last, one copy
                x = groups.permute(0, 2, 4, 5, 1, 3).reshape(b * (t // kt), h, w, c * kt).permute(0, 3, 1, 2)
            else:
                x = groups.transpose(1, 2).reshape(b * (t // kt), c * kt, h, w)
        elif kt != 1:
            raise ValueError(f"a conv covering {kt} frames needs a (B, C, T, H, W) clip, got {tuple(x.shape)}")
        return F.conv2d(x, weight, None, self.stride[1:], self.padding[1:])


def conv1xkxk(cin: int, cout: int, k: int = 3, stride: int = 1) -> FrameConv:
    return FrameConv(cin, cout, k, stride)


class _TemporalSettings:
    """What a residual block needs to build its temporal modules."""

    def __init__(self, kind: str, num_frames: int, kernel_size: int, filter_groups: int, tsm_fold_div: int):
        self.kind, self.num_frames = kind, num_frames
        self.kernel_size, self.filter_groups, self.tsm_fold_div = kernel_size, filter_groups, tsm_fold_div

    def module(self, channels: int) -> nn.Module:
        return build_temporal_module(self.kind, channels, self.num_frames, self.kernel_size, self.filter_groups)

    def shift(self) -> nn.Module:
        return TemporalShift(self.tsm_fold_div, self.num_frames) if self.kind == "tsm" else nn.Identity()


class VideoBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None, temporal: _TemporalSettings):
        super().__init__()
        width = planes
        self.shift = temporal.shift()  # TSM shifts the residual branch's input
        self.conv1 = conv1xkxk(cin, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv1xkxk(width, width, 3, stride)
        self.temporal = temporal.module(width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1xkxk(width, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.shift(x))))
        out = self.relu(self.bn2(self.temporal(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class VideoBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None, temporal: _TemporalSettings):
        super().__init__()
        self.shift = temporal.shift()
        self.conv1 = conv1xkxk(cin, planes, 3, stride)
        self.temporal1 = temporal.module(planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv1xkxk(planes, planes, 3)
        self.temporal2 = temporal.module(planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.temporal1(self.conv1(self.shift(x)))))
        out = self.bn2(self.temporal2(self.conv2(out)))
        return self.relu(out + identity)


class DTFNet(nn.Module):
    """ResNet video backbone with a temporal module in every residual block of chosen stages.

    Args:
        block: "bottleneck" (ResNet-50/101) or "basic" (ResNet-18/34 style).
        layers: residual blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
        widths: planes of the four stages (64, 128, 256, 512 for the standard ResNets).
        num_classes: classifier outputs.
        num_frames: input clip length; must be a multiple of `early_stride`.
        temporal: kind of temporal module (see `dtfcli.models.temporal`); "dtf" for DTF-Net,
            "none" for C2D, "tsm" for TSM.
        temporal_stages: stages (1-4, res2-res5) that get temporal modules (Table 1c).
        early_stride: temporal stride and kernel of the stem conv (paper: 4).
        kernel_size: k of the frame-wise aggregation; filter_groups: G of the DTF filter.
        stem_width: output channels of the stem conv.
        dropout: before the classifier (paper: 0.5).
    """

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 400,
        num_frames: int = 16,
        temporal: str = "dtf",
        temporal_stages: Sequence[int] = (1, 2, 3, 4),
        early_stride: int = 4,
        kernel_size: int = 3,
        filter_groups: int = 16,
        tsm_fold_div: int = 8,
        stem_width: int = 64,
        dropout: float = 0.5,
    ):
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("layers and widths need one entry per stage (4)")
        bad = [s for s in temporal_stages if s not in (1, 2, 3, 4)]
        if bad:
            raise ValueError(f"temporal_stages must be among 1-4 (res2-res5), got {bad}")
        block_cls = {"bottleneck": VideoBottleneck, "basic": VideoBasicBlock}.get(block)
        if block_cls is None:
            raise ValueError(f"block must be 'bottleneck' or 'basic', got {block!r}")
        self.num_frames = num_frames
        self.frames_inside = frames_inside(num_frames, early_stride, "stem")
        self.num_classes = num_classes

        self.conv1 = FrameConv(3, stem_width, 7, stride=2, kt=early_stride)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        cin = stem_width
        for i, (n_blocks, planes) in enumerate(zip(layers, widths, strict=True), start=1):
            settings = _TemporalSettings(
                temporal if i in temporal_stages else "none",
                self.frames_inside,
                kernel_size,
                filter_groups,
                tsm_fold_div,
            )
            stride = 1 if i == 1 else 2
            blocks = []
            for j in range(n_blocks):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or cin != planes * block_cls.expansion:
                    down = nn.Sequential(
                        conv1xkxk(cin, planes * block_cls.expansion, 1, stride=s),
                        nn.BatchNorm2d(planes * block_cls.expansion),
                    )
                blocks.append(block_cls(cin, planes, s, down, settings))
                cin = planes * block_cls.expansion
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.num_features = cin
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Temporal modules keep their own identity-start init (zeros for TemporalConv).
        temporal_convs = {id(m.conv) for m in self.modules() if isinstance(m, TemporalConv)}
        for m in self.modules():
            if isinstance(m, nn.Conv3d) and id(m) not in temporal_convs:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) clip -> (B, C, T/early_stride, H/32, W/32) feature map (a view of
        the frames-major features)."""
        check_clip(x, self.num_frames)
        b = x.shape[0]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # frames-major from here on
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.view(b, self.frames_inside, *x.shape[1:]).transpose(1, 2)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(features.mean(dim=(2, 3, 4))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
