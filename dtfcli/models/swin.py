"""DTF-Transformer: a 2D Swin Transformer made a video model by DTF blocks
(Long et al., ECCV 2022, sec. 3.4; Swin: Liu et al., ICCV 2021).

- patch embedding: conv (early_stride x 4 x 4), stride (early_stride, 4, 4): 64 input
  frames become 16 frames inside the network;
- Swin stages run on every frame (windows of 7 x 7 within a frame);
- in every pair of successive blocks, the non-shifted one (W-MSA) gets a DTF block after
  its attention residual and before its MLP, on the features regrouped to (B, C, T, H, W);
- final LayerNorm, global average pool over (T, H, W), dropout, linear classifier.

The Swin blocks, window attention and patch merging are torchvision's, so parameter names
match torchvision's `swin_t/s/b` and ImageNet weights map one to one (the patch
embedding gains a time axis); the attention has a native CPU path for inference
(`window_attention.WindowAttention`).
Input (B, 3, num_frames, H, W) -> logits (B, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock

from dtfcli.models._checks import check_clip, frames_inside
from dtfcli.models.temporal import build_temporal_module
from dtfcli.models.window_attention import WindowAttention


class FramesToTokens(nn.Module):
    """(B, C, T, H, W) -> (B*T, H, W, C): the layout torchvision's Swin blocks take."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 3, 4, 1).reshape(b * t, h, w, c)


class HiddenGELU(nn.GELU):
    """GELU for the MLP's hidden layer: in place when no autograd graph is needed.

    Its input is the first linear layer's output, which nothing else holds, so overwriting
    it is safe and saves allocating and writing a second (tokens x 4C) tensor: 3% of a
    DTF-Swin-B forward on a CPU (docs/benchmarks.md). With autograd it is `nn.GELU`."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        return torch.ops.aten.gelu_(x, approximate=self.approximate)


class DTFSwinBlock(SwinTransformerBlock):
    """A torchvision Swin block with an optional temporal module between attention and MLP."""

    def __init__(self, *args, temporal: nn.Module | None = None, frames: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames = frames
        self.temporal = temporal
        for i, layer in enumerate(self.mlp):  # parameter-free: the state dict is unchanged
            if type(layer) is nn.GELU:
                self.mlp[i] = HiddenGELU(approximate=layer.approximate)

    def forward(self, x: Tensor) -> Tensor:  # x: (B*T, H, W, C)
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        if self.temporal is not None:  # frames-major (B*T, C, H, W) in and out
            x = self.temporal(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class DTFSwin(nn.Module):
    """Swin video backbone with temporal modules after W-MSA.

    Args:
        embed_dim, depths, num_heads, window_size: Swin sizes (Swin-B: 128, (2, 2, 18, 2),
            (4, 8, 16, 32), 7).
        num_classes: classifier outputs.
        num_frames: input clip length; a multiple of `early_stride`.
        temporal: kind of temporal module ("dtf" for DTF-Transformer, "none" for 2D Swin).
        temporal_stages: stages (1-4) whose non-shifted blocks get a temporal module.
        early_stride: temporal kernel and stride of the patch embedding (paper: 4).
        patch_size: spatial patch size (4).
        kernel_size, filter_groups: k and G of the DTF block.
        stochastic_depth: drop-path rate, linearly increasing over blocks.
        dropout: before the classifier.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        window_size: int = 7,
        num_classes: int = 400,
        num_frames: int = 64,
        temporal: str = "dtf",
        temporal_stages: Sequence[int] = (1, 2, 3, 4),
        early_stride: int = 4,
        patch_size: int = 4,
        kernel_size: int = 3,
        filter_groups: int = 16,
        mlp_ratio: float = 4.0,
        stochastic_depth: float = 0.5,
        dropout: float = 0.5,
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError("depths and num_heads need one entry per stage")
        self.num_frames = num_frames
        self.frames_inside = t = frames_inside(num_frames, early_stride, "patch embedding")
        self.num_classes = num_classes
        norm = partial(nn.LayerNorm, eps=1e-5)

        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv3d(
                    3, embed_dim, (early_stride, patch_size, patch_size), stride=(early_stride, patch_size, patch_size)
                ),
                FramesToTokens(),
                norm(embed_dim),
            )
        ]
        total, block_id = sum(depths), 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads, strict=True)):
            dim = embed_dim * 2**i
            blocks = []
            for j in range(depth):
                shifted = j % 2 == 1
                use_temporal = not shifted and (i + 1) in temporal_stages and temporal not in ("none", "tsm")
                blocks.append(
                    DTFSwinBlock(
                        dim,
                        heads,
                        window_size=[window_size] * 2,
                        shift_size=[window_size // 2 if shifted else 0] * 2,
                        mlp_ratio=mlp_ratio,
                        stochastic_depth_prob=stochastic_depth * block_id / max(total - 1, 1),
                        norm_layer=norm,
                        attn_layer=WindowAttention,
                        temporal=build_temporal_module(temporal, dim, t, kernel_size, filter_groups)
                        if use_temporal
                        else None,
                        frames=t,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim, norm))
        self.features = nn.Sequential(*layers)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = norm(self.num_features)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) clip -> (B, C, T/early_stride, H/32, W/32) feature map."""
        check_clip(x, self.num_frames)
        b = x.shape[0]
        tokens = self.norm(self.features(x))  # (B*T, H, W, C)
        bt, h, w, c = tokens.shape
        return tokens.view(b, bt // b, h, w, c).permute(0, 4, 1, 2, 3)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(self.dropout(features.mean(dim=(2, 3, 4))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
