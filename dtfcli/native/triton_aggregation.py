"""Frame-wise aggregation (eq. 6-8 of the paper) as Triton kernels, for CUDA tensors.

The tensor-operation path of `dtfcli.models.aggregation` is a loop over the k^2 offsets:
about 70 kernel launches for a forward pass and 250 for a backward one. On a GPU each
launch costs several microseconds of host time, which at the small late-stage shapes is
more than the work it launches. Here the forward is one kernel and the backward two, with
the same structure as the CPU kernels in ``dtf_kernels.c``:

- forward: one program per (clip, frame t, block of locations). It forms the k^2 scores
  of its locations, query frame t-1 (frame 0 for t = 0) against the k x k neighbours in
  frame t, over channel blocks; stores them (F_cor); for t >= 1 takes their softmax and
  writes Y[t-1] = F[t-1] + sum_j w_j F[t, neighbour j]. The program of t = 0 copies the
  last frame, Y[T-1] = F[T-1].
- backward, first kernel: the gradient of the scores, from F_cor's gradient and, through
  the softmax, from Y's.
- backward, second kernel: each program gathers the whole input gradient of its frame and
  locations (as query, as key, as aggregated neighbour), so no two programs write one
  element and no atomics are needed.

Features are read in their dtype (float32, bfloat16, float16) and all arithmetic is
float32; outside the frame the neighbours are zero (zero padding), which masked loads give
without reading out of the plane. The kernels are checked against the eq. 6-8 brute force
in Triton's interpreter on the CPU and compiled for Hopper ahead of time in the tests
(``tests/test_triton_aggregation.py``).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

# Tiles of BLOCK_C channels x BLOCK_L locations, 4 elements per thread at 4 warps. The
# loops over the k^2 offsets are not unrolled: unrolled, the hoisted addresses of the k^2
# neighbours took the input-gradient kernel to 255 registers with spills (ptxas for sm_90);
# as loops every kernel needs 64-72 (tests/test_triton_aggregation.py compiles them).
BLOCK_L = 64
BLOCK_C = 8
NUM_WARPS = 4
# Launches ask for fused multiply-adds explicitly (Triton 3.9 warns that its default will
# change): one rounding per multiply-add in the float32 reductions.


@triton.jit
def _shifted(row, col, dy, dx, in_plane, height, width):
    """The flat index of (row + dy, col + dx) and whether it lies in the plane (zero
    padding outside: masked loads read nothing there)."""
    r = row + dy
    c = col + dx
    return r * width + c, in_plane & (r >= 0) & (r < height) & (c >= 0) & (c < width)


@triton.jit
def _frame_tile(frames, height, width, BLOCK_L: tl.constexpr):
    """This program's clip, frame and block of BLOCK_L locations (flat, with row, column
    and whether each lies in the plane): the grid is (clips x frames, location blocks)."""
    pid_bf = tl.program_id(0)
    offs_l = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    return pid_bf // frames, pid_bf % frames, offs_l, offs_l < height * width, offs_l // width, offs_l % width


def _fa_forward(
    x,
    y,
    corr,
    weights,
    frames,
    channels,
    height,
    width,
    inv_c,
    K: tl.constexpr,
    KK: tl.constexpr,
    AGGREGATE: tl.constexpr,
    STORE_WEIGHTS: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    b, t, offs_l, in_plane, row, col = _frame_tile(frames, height, width, BLOCK_L)
    plane = height * width
    frame_size = channels.to(tl.int64) * plane
    rows_j = tl.arange(0, KK)  # padded to a power of two; rows >= K*K are unused
    q_frame = tl.where(t == 0, 0, t - 1)
    key_ptr = x + (b * frames + t).to(tl.int64) * frame_size
    query_ptr = x + (b * frames + q_frame).to(tl.int64) * frame_size

    scores = tl.zeros((KK, BLOCK_L), dtype=tl.float32)
    for c0 in range(0, channels, BLOCK_C):
        cc = c0 + tl.arange(0, BLOCK_C)
        c_ok = cc < channels
        tile = c_ok[:, None] & in_plane[None, :]
        q = tl.load(query_ptr + cc[:, None] * plane + offs_l[None, :], mask=tile, other=0.0).to(tl.float32)
        for j in range(K * K):
            nb, ok = _shifted(row, col, j // K - K // 2, j % K - K // 2, in_plane, height, width)
            kv = tl.load(key_ptr + cc[:, None] * plane + nb[None, :], mask=c_ok[:, None] & ok[None, :], other=0.0)
            kv = kv.to(tl.float32)
            s = tl.sum(q * kv, axis=0)
            scores = tl.where(rows_j[:, None] == j, scores + s[None, :], scores)
    scores = scores * inv_c
    valid = (rows_j[:, None] < K * K) & in_plane[None, :]
    corr_ptr = corr + (b * frames + t).to(tl.int64) * (K * K) * plane
    tl.store(corr_ptr + rows_j[:, None] * plane + offs_l[None, :], scores.to(corr.dtype.element_ty), mask=valid)

    if AGGREGATE:
        if t > 0:
            masked = tl.where(rows_j[:, None] < K * K, scores, float("-inf"))
            e = tl.exp(masked - tl.max(masked, axis=0)[None, :])
            w = e / tl.sum(e, axis=0)[None, :]
            if STORE_WEIGHTS:
                w_ptr = weights + (b * (frames - 1) + t - 1).to(tl.int64) * (K * K) * plane
                tl.store(w_ptr + rows_j[:, None] * plane + offs_l[None, :], w, mask=valid)
            out_ptr = y + (b * frames + t - 1).to(tl.int64) * frame_size
            for c0 in range(0, channels, BLOCK_C):
                cc = c0 + tl.arange(0, BLOCK_C)
                c_ok = cc < channels
                tile = c_ok[:, None] & in_plane[None, :]
                acc = tl.load(query_ptr + cc[:, None] * plane + offs_l[None, :], mask=tile, other=0.0).to(tl.float32)
                for j in range(K * K):
                    nb, ok = _shifted(row, col, j // K - K // 2, j % K - K // 2, in_plane, height, width)
                    kv = tl.load(
                        key_ptr + cc[:, None] * plane + nb[None, :], mask=c_ok[:, None] & ok[None, :], other=0.0
                    ).to(tl.float32)
                    wj = tl.sum(tl.where(rows_j[:, None] == j, w, 0.0), axis=0)
                    acc += wj[None, :] * kv
                tl.store(out_ptr + cc[:, None] * plane + offs_l[None, :], acc.to(y.dtype.element_ty), mask=tile)
        else:  # Y[T-1] = F[T-1]: the last frame has no next frame to aggregate
            last = (b * frames + frames - 1).to(tl.int64) * frame_size
            for c0 in range(0, channels, BLOCK_C):
                cc = c0 + tl.arange(0, BLOCK_C)
                tile = (cc < channels)[:, None] & in_plane[None, :]
                at = cc[:, None] * plane + offs_l[None, :]
                tl.store(y + last + at, tl.load(x + last + at, mask=tile, other=0.0), mask=tile)


def _fa_score_grad(
    x,
    weights,
    grad_y,
    grad_corr,
    scores,
    frames,
    channels,
    height,
    width,
    inv_c,
    K: tl.constexpr,
    KK: tl.constexpr,
    THROUGH_SOFTMAX: tl.constexpr,
    HAS_GRAD_CORR: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """scores[b, t, j, l] = (dL/dcorr + softmax backward of dL/dw) / C, float32."""
    b, t, offs_l, in_plane, row, col = _frame_tile(frames, height, width, BLOCK_L)
    plane = height * width
    frame_size = channels.to(tl.int64) * plane
    rows_j = tl.arange(0, KK)
    valid = (rows_j[:, None] < K * K) & in_plane[None, :]
    at = (b * frames + t).to(tl.int64) * (K * K) * plane + rows_j[:, None] * plane + offs_l[None, :]
    if HAS_GRAD_CORR:
        g = tl.load(grad_corr + at, mask=valid, other=0.0).to(tl.float32)
    else:
        g = tl.zeros((KK, BLOCK_L), dtype=tl.float32)
    if THROUGH_SOFTMAX:
        if t > 0:
            # dL/dw_j = <dL/dY[t-1], F[t, neighbour j]> over channels
            gy_ptr = grad_y + (b * frames + t - 1).to(tl.int64) * frame_size
            key_ptr = x + (b * frames + t).to(tl.int64) * frame_size
            gw = tl.zeros((KK, BLOCK_L), dtype=tl.float32)
            for c0 in range(0, channels, BLOCK_C):
                cc = c0 + tl.arange(0, BLOCK_C)
                c_ok = cc < channels
                gy = tl.load(
                    gy_ptr + cc[:, None] * plane + offs_l[None, :], mask=c_ok[:, None] & in_plane[None, :], other=0.0
                ).to(tl.float32)
                for j in range(K * K):
                    nb, ok = _shifted(row, col, j // K - K // 2, j % K - K // 2, in_plane, height, width)
                    kv = tl.load(
                        key_ptr + cc[:, None] * plane + nb[None, :], mask=c_ok[:, None] & ok[None, :], other=0.0
                    ).to(tl.float32)
                    gw = tl.where(rows_j[:, None] == j, gw + tl.sum(gy * kv, axis=0)[None, :], gw)
            w_at = (b * (frames - 1) + t - 1).to(tl.int64) * (K * K) * plane + rows_j[:, None] * plane
            w = tl.load(weights + w_at + offs_l[None, :], mask=valid, other=0.0)
            g += w * (gw - tl.sum(w * gw, axis=0)[None, :])
    tl.store(scores + at, g * inv_c, mask=valid)


def _fa_input_grad(
    x,
    weights,
    grad_y,
    scores,
    grad_x,
    frames,
    channels,
    height,
    width,
    K: tl.constexpr,
    AGGREGATE: tl.constexpr,
    HAS_GRAD_Y: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """dL/dF[b, f] over a block of locations, gathered from every term F[f] enters:
    query of step f+1 (and of step 0 when f = 0), key of step f, aggregated neighbour of
    step f (f >= 1), and Y[f] itself."""
    b, f, offs_l, in_plane, row, col = _frame_tile(frames, height, width, BLOCK_L)
    plane = height * width
    frame_size = channels.to(tl.int64) * plane
    kk_plane = (K * K) * plane
    as_next_query = f + 1 < frames
    q_of_f = tl.where(f == 0, 0, f - 1)  # the query frame of step f, whose key frame is f
    own = (b * frames + f).to(tl.int64)
    for c0 in range(0, channels, BLOCK_C):
        cc = c0 + tl.arange(0, BLOCK_C)
        c_ok = cc < channels
        tile = c_ok[:, None] & in_plane[None, :]
        here = cc[:, None] * plane + offs_l[None, :]
        if HAS_GRAD_Y:
            acc = tl.load(grad_y + own * frame_size + here, mask=tile, other=0.0).to(tl.float32)
        else:
            acc = tl.zeros((BLOCK_C, BLOCK_L), dtype=tl.float32)
        for j in range(K * K):
            dy = j // K - K // 2
            dx = j % K - K // 2
            # as query at location l: the key is F[step] at l + d_j
            fwd_l, fwd_ok = _shifted(row, col, dy, dx, in_plane, height, width)
            fwd = fwd_l[None, :]
            # as key at location l: the query sat at l - d_j
            back_l, back_ok = _shifted(row, col, -dy, -dx, in_plane, height, width)
            back = back_l[None, :]
            fwd_tile = c_ok[:, None] & fwd_ok[None, :]
            back_tile = c_ok[:, None] & back_ok[None, :]
            if as_next_query:
                step = (b * frames + f + 1).to(tl.int64)
                s = tl.load(scores + step * kk_plane + j * plane + offs_l, mask=in_plane, other=0.0)
                kv = tl.load(x + step * frame_size + cc[:, None] * plane + fwd, mask=fwd_tile, other=0.0)
                acc += s[None, :] * kv.to(tl.float32)
            if f == 0:  # step 0 correlates frame 0 with itself: query and key at once
                s = tl.load(scores + own * kk_plane + j * plane + offs_l, mask=in_plane, other=0.0)
                kv = tl.load(x + own * frame_size + cc[:, None] * plane + fwd, mask=fwd_tile, other=0.0)
                acc += s[None, :] * kv.to(tl.float32)
            s = tl.load(scores + own * kk_plane + j * plane + back_l, mask=back_ok, other=0.0)
            q_ptr = x + (b * frames + q_of_f).to(tl.int64) * frame_size
            qv = tl.load(q_ptr + cc[:, None] * plane + back, mask=back_tile, other=0.0)
            acc += s[None, :] * qv.to(tl.float32)
            if AGGREGATE:  # Y's gradient reaches F[f] as the aggregated neighbour of step f
                if f > 0:
                    w_ptr = weights + (b * (frames - 1) + f - 1).to(tl.int64) * kk_plane + j * plane
                    w = tl.load(w_ptr + back_l, mask=back_ok, other=0.0)
                    gy_prev = grad_y + (b * frames + f - 1).to(tl.int64) * frame_size
                    gv = tl.load(gy_prev + cc[:, None] * plane + back, mask=back_tile, other=0.0)
                    acc += w[None, :] * gv.to(tl.float32)
        tl.store(grad_x + own * frame_size + here, acc.to(grad_x.dtype.element_ty), mask=tile)


_SOURCES = {"forward": _fa_forward, "score_grad": _fa_score_grad, "input_grad": _fa_input_grad}


@functools.cache
def kernels() -> dict:
    """The kernels, JIT-compiled for the GPU on first launch (with ``TRITON_INTERPRET=1``
    set before Triton is imported, run by its interpreter on CPU tensors: the tests)."""
    return {name: triton.jit(fn) for name, fn in _SOURCES.items()}


def _grid(x: torch.Tensor) -> tuple[int, int]:
    b, t, _, h, w = x.shape
    return b * t, triton.cdiv(h * w, BLOCK_L)


def frame_aggregation(
    x: torch.Tensor, kernel_size: int, aggregate: bool, need_weights: bool
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """(Y or None, corr, softmax weights (B, T-1, k^2, H, W) float32 or None) of a
    contiguous frames-major (B, T, C, H, W) tensor, as `dtfcli.native.frame_aggregation`."""
    b, t, c, h, w = x.shape
    k2 = kernel_size * kernel_size
    corr = x.new_empty(b, t, k2, h, w)
    y = torch.empty_like(x) if aggregate else None
    weights = x.new_empty(b, t - 1, k2, h, w, dtype=torch.float32) if (aggregate and need_weights and t > 1) else None
    kernels()["forward"][_grid(x)](
        x,
        y if y is not None else x,
        corr,
        weights if weights is not None else corr,
        t,
        c,
        h,
        w,
        1.0 / c,
        K=kernel_size,
        KK=triton.next_power_of_2(k2),
        AGGREGATE=aggregate,
        STORE_WEIGHTS=weights is not None,
        BLOCK_L=BLOCK_L,
        BLOCK_C=BLOCK_C,
        num_warps=NUM_WARPS,
        enable_fp_fusion=True,
    )
    return y, corr, weights


def frame_aggregation_backward(
    x: torch.Tensor,
    weights: torch.Tensor | None,
    grad_y: torch.Tensor | None,
    grad_corr: torch.Tensor | None,
    kernel_size: int,
    aggregate: bool,
) -> torch.Tensor:
    """dL/dx of `frame_aggregation` from the gradients of Y and corr (either may be None)
    and the weights it returned; in x's dtype."""
    b, t, c, h, w = x.shape
    k2 = kernel_size * kernel_size
    grad_y = grad_y.contiguous() if grad_y is not None else None
    grad_corr = grad_corr.contiguous() if grad_corr is not None else None
    through_softmax = aggregate and t > 1 and grad_y is not None
    if through_softmax and weights is None:
        raise ValueError("the softmax weights of the forward pass are needed for Y's gradient")
    scores = x.new_empty(b, t, k2, h, w, dtype=torch.float32)
    run = kernels()
    run["score_grad"][_grid(x)](
        x,
        weights if weights is not None else scores,
        grad_y if grad_y is not None else x,
        grad_corr if grad_corr is not None else scores,
        scores,
        t,
        c,
        h,
        w,
        1.0 / c,
        K=kernel_size,
        KK=triton.next_power_of_2(k2),
        THROUGH_SOFTMAX=through_softmax,
        HAS_GRAD_CORR=grad_corr is not None,
        BLOCK_L=BLOCK_L,
        BLOCK_C=BLOCK_C,
        num_warps=NUM_WARPS,
        enable_fp_fusion=True,
    )
    grad_x = torch.empty_like(x)
    run["input_grad"][_grid(x)](
        x,
        weights if weights is not None else scores,
        grad_y if grad_y is not None else x,
        scores,
        grad_x,
        t,
        c,
        h,
        w,
        K=kernel_size,
        AGGREGATE=through_softmax,
        HAS_GRAD_Y=grad_y is not None,
        BLOCK_L=BLOCK_L,
        BLOCK_C=BLOCK_C,
        num_warps=NUM_WARPS,
        enable_fp_fusion=True,
    )
    return grad_x
