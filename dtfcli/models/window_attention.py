"""Swin's (shifted) window attention with a native CPU path for inference.

`WindowAttention` is torchvision's `ShiftedWindowAttention`: the same parameters (so the
same state-dict keys and ImageNet weights) and the same function. When no autograd graph
is needed and the input is a float32 CPU tensor, the attention between the qkv and output
projections runs in one native kernel (`dtfcli/native/dtf_attention.c`): per (window, head)
the scores, the relative position bias, the shift mask, the softmax and the weighted sum of
values, with the window partition and the cyclic shift replaced by a table of token
positions (`window_layout`).
torchvision's function stays the path for training, other devices and dtypes, and the
reference the kernel is tested against.

Why: at Swin's 49-token windows torchvision spends about a third of the attention's time
outside the two projections (small batched matmuls, a bias add, a mask add, a softmax and
five token copies); see docs/benchmarks.md.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.swin_transformer import ShiftedWindowAttention

from dtfcli import native

# What the kernel takes: up to 64 tokens per window, heads 16, 32 or 64 channels wide.
_MAX_TOKENS = 64
_HEAD_WIDTHS = (16, 32, 64)


def effective_shift(height: int, width: int, window: tuple[int, int], shift: tuple[int, int]) -> tuple[int, int]:
    """The shift torchvision applies: none along a side the window covers whole."""
    return (0 if window[0] >= height else shift[0], 0 if window[1] >= width else shift[1])


@functools.lru_cache(maxsize=64)
def window_layout(height: int, width: int, window: tuple[int, int], shift: tuple[int, int]):
    """Where each window token comes from, and the shift mask, for an (H, W) image whose
    sides are multiples of the window.

    Returns ``index`` (windows, L) int64: the row-major image position of token i of window
    w after torchvision's cyclic shift by -shift (window w covers rows and columns of the
    shifted image, and its tokens come from (y + shift) mod H); and ``mask`` (windows, L, L),
    -100 between tokens from different regions of the shifted image and 0 elsewhere (as
    torchvision builds it), or None without a shift.
    """
    (wh, ww), (sh, sw) = window, shift
    with torch.inference_mode(False), torch.no_grad():  # cached: must serve any later mode
        rows = (torch.arange(height) + sh) % height
        cols = (torch.arange(width) + sw) % width
        position = rows[:, None] * width + cols[None, :]
        index = _partition(position, wh, ww).contiguous()
        if not (sh or sw):
            return index, None
        labels = torch.zeros(height, width)
        region = 0
        for hs in ((0, -wh), (-wh, -sh), (-sh, None)):
            for ws in ((0, -ww), (-ww, -sw), (-sw, None)):
                labels[hs[0] : hs[1], ws[0] : ws[1]] = region
                region += 1
        labels = _partition(labels, wh, ww)
        differs = labels[:, None, :] != labels[:, :, None]
        mask = torch.zeros(differs.shape).masked_fill_(differs, -100.0)
        return index, mask


def _partition(grid: Tensor, wh: int, ww: int) -> Tensor:
    """(H, W) -> (windows, wh * ww), windows and tokens row-major."""
    h, w = grid.shape
    return grid.view(h // wh, wh, w // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)


class WindowAttention(ShiftedWindowAttention):
    """torchvision's `ShiftedWindowAttention` (W-MSA / SW-MSA) with the native inference
    path described in the module docstring. Input and output (B, H, W, C)."""

    def forward(self, x: Tensor) -> Tensor:
        out = self._native_forward(x)
        return out if out is not None else super().forward(x)

    def _native_forward(self, x: Tensor) -> Tensor | None:
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            return None
        if self.training and (self.attention_dropout > 0 or self.dropout > 0):
            return None
        if x.dim() != 4 or not native.usable(x):
            return None
        b, h, w, c = x.shape
        window = (self.window_size[0], self.window_size[1])
        tokens = window[0] * window[1]
        if tokens > _MAX_TOKENS or c // self.num_heads not in _HEAD_WIDTHS:
            return None
        # As torchvision: zero tokens pad the sides to multiples of the window (they take part
        # as keys, unmasked), and no shift along a side the window covers whole.
        pad_h, pad_w = -h % window[0], -w % window[1]
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        shift = effective_shift(h + pad_h, w + pad_w, window, (self.shift_size[0], self.shift_size[1]))
        index, mask = window_layout(h + pad_h, w + pad_w, window, shift)
        bias = self.get_relative_position_bias()  # (1, heads, L, L)
        addend = bias if mask is None else bias + mask.unsqueeze(1)  # (1 or windows, heads, query, key)
        padded = -(-tokens // 16) * 16  # the kernel holds queries in 16-float vectors
        addend = F.pad(addend.transpose(-1, -2), (0, padded - tokens)).contiguous()
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias)
        out = native.window_attention(qkv, addend, index, self.num_heads)
        if out is None:  # e.g. a score that is not finite: torchvision's softmax defines it
            return None
        out = F.linear(out, self.proj.weight, self.proj.bias)
        return out[:, :h, :w].contiguous() if pad_h or pad_w else out
