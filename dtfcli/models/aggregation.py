"""Frame-wise aggregation (FA), Long et al., "Dynamic Temporal Filtering in Video Models",
ECCV 2022, section 3.3, eq. 6-8.

For every location (h, w) of frame t the query is F[t, :, h, w]; the keys are the k x k
neighbours of (h, w) in frame t+1 (zero padded). With neighbour offsets d_1..d_{k^2} in
row-major order (dy, then dx, each from -(k//2) to +(k//2)):

    corr[t, j, h, w] = <F[t-1, :, h, w], F[t, :, h + dy_j, w + dx_j]> / C      t >= 1
    corr[0, j, h, w] = <F[0,   :, h, w], F[0, :, h + dy_j, w + dx_j]> / C
    A[t]             = sum_j softmax_j(corr[t]) * F[t, :, h + dy_j, w + dx_j]  t >= 1
    Y[t]             = F[t] + A[t + 1]    for t < T - 1,     Y[T - 1] = F[T - 1]

`corr` (k^2 channels, T steps) is the correlation feature F_cor that also feeds the filter
estimator; its frame-0 entry (frame 0 against itself) follows the authors' released CUDA
kernel, which the paper does not specify.

Memory: the autograd function below saves only F and the k^2 softmax weights (k^2 / C of
F's size) and recomputes the shifted neighbours in the backward pass, so training never
holds a k^2-times unfolded copy of F (nor the k^2 shifted products a naive loop of tensor
operations would leave to autograd).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dtfcli import native


def neighbour_offsets(kernel_size: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) of the k x k window in the order of the correlation channels."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"frame-wise aggregation needs an odd kernel size, got {kernel_size}")
    r = kernel_size // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]


def _window(size_h: int, size_w: int, dy: int, dx: int):
    """Slices (query region, key region) so that query[h, w] meets key[h + dy, w + dx]."""
    qh = slice(max(0, -dy), min(size_h, size_h - dy))
    qw = slice(max(0, -dx), min(size_w, size_w - dx))
    kh = slice(qh.start + dy, qh.stop + dy)
    kw = slice(qw.start + dx, qw.stop + dx)
    return (..., qh, qw), (..., kh, kw)


def _correlate(query: Tensor, key: Tensor, offsets, out: Tensor) -> None:
    """out[:, :, j] = <query, key shifted by offsets[j]> / C over channels; zero outside.

    Frames-major tensors: query and key (B, T', C, H, W), out (B, T', k^2, H, W)."""
    c = query.shape[2]
    h, w = query.shape[-2:]
    for j, (dy, dx) in enumerate(offsets):
        q_idx, k_idx = _window(h, w, dy, dx)
        if q_idx[1].start >= q_idx[1].stop or q_idx[2].start >= q_idx[2].stop:
            continue
        out[:, :, j][q_idx] = torch.linalg.vecdot(query[q_idx], key[k_idx], dim=2).div_(c)


class _FrameAggregationFn(torch.autograd.Function):
    """FA on a frames-major (B, T, C, H, W) tensor; returns Y (same layout) and the
    correlation scores (B, T, k^2, H, W)."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel_size: int, aggregate: bool):
        ctx.kernel_size = kernel_size
        ctx.aggregate = aggregate
        fused = native.frame_aggregation(x, kernel_size, aggregate, need_weights=ctx.needs_input_grad[0])
        if fused is None:
            fused = native.gpu_frame_aggregation(x, kernel_size, aggregate, need_weights=ctx.needs_input_grad[0])
        if fused is not None:
            y, corr, weights = fused
            ctx.save_for_backward(x, weights)
            return (y if aggregate else x.view_as(x)), corr
        return _FrameAggregationFn._forward_tensor_ops(ctx, x, kernel_size, aggregate)

    @staticmethod
    def _forward_tensor_ops(ctx, x: Tensor, kernel_size: int, aggregate: bool):
        """The reference path (any dtype and device): a loop over the k^2 offsets."""
        b, t, c, h, w = x.shape
        offsets = neighbour_offsets(kernel_size)
        k2 = len(offsets)
        corr = x.new_zeros(b, t, k2, h, w)
        _correlate(x[:, :1], x[:, :1], offsets, corr[:, :1])
        y = x.clone() if aggregate else x
        weights = None
        if t > 1:
            prev, nxt = x[:, :-1], x[:, 1:]
            _correlate(prev, nxt, offsets, corr[:, 1:])
            if aggregate:
                weights = torch.softmax(corr[:, 1:], dim=2)
                head = y[:, :-1]
                for j, (dy, dx) in enumerate(offsets):
                    q_idx, k_idx = _window(h, w, dy, dx)
                    head[q_idx].addcmul_(weights[:, :, j : j + 1][q_idx], nxt[k_idx])
        ctx.save_for_backward(x, weights)
        if not aggregate:
            y = x.view_as(x)  # Y = F: returned as a view, autograd passes its gradient through
        return y, corr

    @staticmethod
    def backward(ctx, grad_y: Tensor | None, grad_corr: Tensor | None):
        x, weights = ctx.saved_tensors
        fused = native.frame_aggregation_backward(x, weights, grad_y, grad_corr, ctx.kernel_size, ctx.aggregate)
        if fused is None:
            fused = native.gpu_frame_aggregation_backward(x, weights, grad_y, grad_corr, ctx.kernel_size, ctx.aggregate)
        if fused is not None:
            return fused, None, None
        return _FrameAggregationFn._backward_tensor_ops(ctx, x, weights, grad_y, grad_corr)

    @staticmethod
    def _backward_tensor_ops(ctx, x: Tensor, weights: Tensor | None, grad_y: Tensor | None, grad_corr: Tensor | None):
        b, t, c, h, w = x.shape
        offsets = neighbour_offsets(ctx.kernel_size)
        grad_x = grad_y.clone() if grad_y is not None else torch.zeros_like(x)
        x0 = x[:, 0]
        gx0 = grad_x[:, 0]

        # Frame 0's self-correlation: corr0_j = <x0, shift_j(x0)> / C.
        if grad_corr is not None:
            g0 = grad_corr[:, 0]
            for j, (dy, dx) in enumerate(offsets):
                q_idx, k_idx = _window(h, w, dy, dx)
                gj = g0[:, j : j + 1][q_idx] / c
                gx0[q_idx].addcmul_(gj, x0[k_idx])
                gx0[k_idx].addcmul_(gj, x0[q_idx])
        if t == 1:
            return grad_x, None, None

        prev, nxt = x[:, :-1], x[:, 1:]
        g_prev = grad_x[:, :-1]
        g_next = grad_x[:, 1:]
        g_scores = grad_corr[:, 1:].clone() if grad_corr is not None else None

        if ctx.aggregate and grad_y is not None:
            g_head = grad_y[:, :-1]
            g_weights = torch.zeros_like(weights)
            for j, (dy, dx) in enumerate(offsets):
                q_idx, k_idx = _window(h, w, dy, dx)
                g_weights[:, :, j][q_idx] = torch.linalg.vecdot(g_head[q_idx], nxt[k_idx], dim=2)
                g_next[k_idx].addcmul_(weights[:, :, j : j + 1][q_idx], g_head[q_idx])
            # softmax backward over the k^2 neighbours
            g_soft = weights * (g_weights - (weights * g_weights).sum(2, keepdim=True))
            g_scores = g_soft if g_scores is None else g_scores + g_soft

        if g_scores is not None:
            for j, (dy, dx) in enumerate(offsets):
                q_idx, k_idx = _window(h, w, dy, dx)
                gj = g_scores[:, :, j : j + 1][q_idx] / c
                g_prev[q_idx].addcmul_(gj, nxt[k_idx])
                g_next[k_idx].addcmul_(gj, prev[q_idx])
        return grad_x, None, None


def exporting_graph() -> bool:
    """Whether a graph is being captured for export (torch.export, the ONNX exporters); not
    torch.compile, whose training graphs keep the memory-saving autograd function."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return torch.jit.is_tracing() or (is_exporting is not None and is_exporting())


def frame_aggregation_graph(x: Tensor, kernel_size: int, aggregate: bool) -> tuple[Tensor, Tensor]:
    """FA on a frames-major (B, T, C, H, W) tensor as out-of-place tensor operations on a
    zero-padded copy: what a captured graph records (the in-place writes into slices of the
    reference path become chains of scatters there, which the ONNX exporters handle badly).
    The same function as `_FrameAggregationFn` (tests); more memory, any autograd."""
    b, t, c, h, w = x.shape
    r = kernel_size // 2
    padded = torch.nn.functional.pad(x, (r, r, r, r))
    shifted = [padded[..., r + dy : r + dy + h, r + dx : r + dx + w] for dy, dx in neighbour_offsets(kernel_size)]
    # frame 0 meets itself, frame t >= 1 meets frame t - 1
    queries = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    corr = torch.stack([(queries * key).sum(2) for key in shifted], dim=2) / c
    if not aggregate or t == 1:
        return x, corr
    weights = torch.softmax(corr[:, 1:], dim=2)
    head = x[:, :-1]
    for j, key in enumerate(shifted):
        head = head + weights[:, :, j : j + 1] * key[:, 1:]
    return torch.cat([head, x[:, -1:]], dim=1), corr


def frame_aggregation(x: Tensor, kernel_size: int = 3, aggregate: bool = True) -> tuple[Tensor, Tensor]:
    """Frame-wise aggregation of a (B, C, T, H, W) feature.

    Returns ``(Y, F_cor)``: the enhanced feature (B, C, T, H, W) (``Y = F`` when
    ``aggregate`` is False) and the correlation scores (B, k*k, T, H, W) before the softmax.
    (The DTF block calls `FrameAggregation` on its frames-major layout instead.)
    """
    if x.dim() != 5:
        raise ValueError(f"frame aggregation expects a (B, C, T, H, W) tensor, got shape {tuple(x.shape)}")
    y, corr = _FrameAggregationFn.apply(x.transpose(1, 2).contiguous(), kernel_size, aggregate)
    return y.transpose(1, 2), corr.transpose(1, 2)


class FrameAggregation(nn.Module):
    """Frame-wise aggregation with its correlation feature (no trainable parameters).

    Args:
        kernel_size: k, the side of the neighbour window in the next frame (odd).
        aggregate: add the attention-weighted neighbours of frame t+1 to frame t; when
            False only the correlation feature is computed (the paper's Table 1b rows).
    """

    def __init__(self, kernel_size: int = 3, aggregate: bool = True):
        super().__init__()
        neighbour_offsets(kernel_size)
        self.kernel_size = kernel_size
        self.aggregate = aggregate

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: frames-major (B, T, C, H, W), contiguous. Returns Y in the same layout and the
        correlation scores (B, T, k^2, H, W)."""
        if x.dim() != 5:
            raise ValueError(f"frame aggregation expects a frames-major (B, T, C, H, W) tensor, got {tuple(x.shape)}")
        if exporting_graph():
            return frame_aggregation_graph(x, self.kernel_size, self.aggregate)
        return _FrameAggregationFn.apply(x.contiguous(), self.kernel_size, self.aggregate)

    def macs(self, x: Tensor) -> int:
        """Multiply-adds: the correlation (C k^2 per location and frame) plus the aggregation."""
        per = x.numel() * self.kernel_size**2  # C k^2 per location and frame, whatever the layout
        return per * (2 if self.aggregate else 1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, aggregate={self.aggregate}"
