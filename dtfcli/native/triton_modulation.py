"""The DTF block's spectrum modulation, S' = S * S_c (eq. 4), as Triton kernels for CUDA
tensors.

Layouts as in `dtfcli.models.spectral.modulate`: spectrum (B, M, 2, C/G, G, L) and filter
(B, C/G, 2, M, L), real and imaginary parts in dimension 2; the G channels of a group share
their filter. As tensor operations the product with its gradient is about 30 kernel
launches per training step of a block (four products, a stack, broadcast reductions over
the group); here the forward is one kernel and the backward one, which sums the filter's
gradient over the group in float32 registers. Half features are read and written in their
dtype with float32 arithmetic, as the CPU kernels do. Tested like the aggregation's
kernels (`tests/test_triton_aggregation.py`).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

BLOCK = 256  # locations (forward: group channels x locations) per program
NUM_WARPS = 4


@triton.jit
def _spectrum_program(bins, groups):
    """(clip, bin, filter group) of this program: axis 0 of the grid runs over all three."""
    pid = tl.program_id(0)
    return pid // (groups * bins), (pid // groups) % bins, pid % groups


def _modulate_forward(spectrum, filt, out, bins, groups, group_size, length, BLOCK: tl.constexpr):
    # one program per (clip, bin, filter group) and block of the group's G x L elements
    b, m, cg = _spectrum_program(bins, groups)
    span = group_size * length
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < span
    part = (groups * span).to(tl.int64)  # real -> imaginary part of the spectrum
    s_at = ((b * bins + m) * 2).to(tl.int64) * groups * span + cg * span + offs
    f_part = (bins * length).to(tl.int64)
    f_at = ((b * groups + cg) * 2).to(tl.int64) * f_part + m * length + offs % length
    sr = tl.load(spectrum + s_at, mask=ok, other=0.0).to(tl.float32)
    si = tl.load(spectrum + s_at + part, mask=ok, other=0.0).to(tl.float32)
    fr = tl.load(filt + f_at, mask=ok, other=0.0).to(tl.float32)
    fi = tl.load(filt + f_at + f_part, mask=ok, other=0.0).to(tl.float32)
    tl.store(out + s_at, (sr * fr - si * fi).to(out.dtype.element_ty), mask=ok)
    tl.store(out + s_at + part, (sr * fi + si * fr).to(out.dtype.element_ty), mask=ok)


def _modulate_backward(
    spectrum,
    filt,
    grad,
    grad_spectrum,
    grad_filter,
    bins,
    groups,
    group_size,
    length,
    NEED_SPECTRUM: tl.constexpr,
    NEED_FILTER: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # one program per (clip, bin, filter group) and block of locations; a loop over the
    # group's G channels, so the filter's gradient is summed here and written once
    b, m, cg = _spectrum_program(bins, groups)
    span = group_size * length
    loc = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = loc < length
    part = (groups * span).to(tl.int64)
    base = ((b * bins + m) * 2).to(tl.int64) * groups * span + cg * span
    f_part = (bins * length).to(tl.int64)
    f_at = ((b * groups + cg) * 2).to(tl.int64) * f_part + m * length + loc
    fr = tl.load(filt + f_at, mask=ok, other=0.0).to(tl.float32)
    fi = tl.load(filt + f_at + f_part, mask=ok, other=0.0).to(tl.float32)
    acc_r = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_i = tl.zeros((BLOCK,), dtype=tl.float32)
    for g in range(group_size):
        at = base + g * length + loc
        gr = tl.load(grad + at, mask=ok, other=0.0).to(tl.float32)
        gi = tl.load(grad + at + part, mask=ok, other=0.0).to(tl.float32)
        if NEED_SPECTRUM:  # conj(S_c) * g
            tl.store(grad_spectrum + at, (gr * fr + gi * fi).to(grad_spectrum.dtype.element_ty), mask=ok)
            tl.store(grad_spectrum + at + part, (gi * fr - gr * fi).to(grad_spectrum.dtype.element_ty), mask=ok)
        if NEED_FILTER:  # conj(S) * g, summed over the group
            sr = tl.load(spectrum + at, mask=ok, other=0.0).to(tl.float32)
            si = tl.load(spectrum + at + part, mask=ok, other=0.0).to(tl.float32)
            acc_r += gr * sr + gi * si
            acc_i += gi * sr - gr * si
    if NEED_FILTER:
        tl.store(grad_filter + f_at, acc_r.to(grad_filter.dtype.element_ty), mask=ok)
        tl.store(grad_filter + f_at + f_part, acc_i.to(grad_filter.dtype.element_ty), mask=ok)


_SOURCES = {"forward": _modulate_forward, "backward": _modulate_backward}


@functools.cache
def kernels() -> dict:
    """JIT-compiled on first launch (see `triton_aggregation.kernels`)."""
    return {name: triton.jit(fn) for name, fn in _SOURCES.items()}


def modulate(spectrum: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """S' = S * S_c, in the inputs' dtype (both contiguous, of one dtype)."""
    b, m, _, cg, g, length = spectrum.shape
    out = torch.empty_like(spectrum)
    grid = (b * m * cg, triton.cdiv(g * length, BLOCK))
    kernels()["forward"][grid](
        spectrum, filt, out, m, cg, g, length, BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=True
    )
    return out


def modulate_backward(
    spectrum: torch.Tensor, filt: torch.Tensor, grad: torch.Tensor, need_spectrum: bool, need_filter: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients with respect to the spectrum and the filter (summed over the group), each
    only where asked for, in the inputs' dtype."""
    b, m, _, cg, g, length = spectrum.shape
    grad = grad.to(spectrum.dtype).contiguous()
    grad_spectrum = torch.empty_like(spectrum) if need_spectrum else None
    grad_filter = torch.empty_like(filt) if need_filter else None
    if need_spectrum or need_filter:
        kernels()["backward"][(b * m * cg, triton.cdiv(length, BLOCK))](
            spectrum,
            filt,
            grad,
            grad_spectrum if need_spectrum else grad,
            grad_filter if need_filter else grad,
            m,
            cg,
            g,
            length,
            NEED_SPECTRUM=need_spectrum,
            NEED_FILTER=need_filter,
            BLOCK=BLOCK,
            num_warps=NUM_WARPS,
            enable_fp_fusion=True,
        )
    return grad_spectrum, grad_filter
