"""The DTF block's linear algebra along time and across channels: the real DFT along time
as matrices, the modulation of a spectrum by a filter shared by channel groups, and the
complex channel mixing of the released code, each with its own backward where autograd's
would be slow or large. The block itself (`dtfcli.models.dtf`) strings them together.

Conventions: spectra are real tensors with the real and imaginary parts as separate planes
(no complex dtype anywhere), laid out (B, bin, real/imag, C, H*W) for frames-major
features. Every function computes in its inputs' dtype (float32, float64, or the
autocast dtype the block picks).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dtfcli import native
from dtfcli.models.aggregation import exporting_graph


def num_bins(num_frames: int) -> int:
    """Frequency bins of the real FFT of a length-T signal: floor(T/2) + 1."""
    return num_frames // 2 + 1


def real_dft_matrices(num_frames: int, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """Orthonormal real DFT along time as matrices.

    Returns ``forward`` (2M, T) and ``inverse`` (T, 2M): for a signal x of length T,
    ``forward @ x`` is [Re rfft(x); Im rfft(x)] and ``inverse @ [re; im]`` equals
    ``irfft(re + i im, n=T)``, both with norm="ortho". As irfft does, the inverse ignores
    the imaginary parts of the DC and Nyquist bins (their sine rows are zero).
    """
    t, m = num_frames, num_bins(num_frames)
    ang = 2 * math.pi * torch.outer(torch.arange(m, dtype=torch.float64), torch.arange(t, dtype=torch.float64)) / t
    scale = 1 / math.sqrt(t)
    forward = torch.cat([torch.cos(ang), -torch.sin(ang)], 0) * scale
    weight = torch.full((m, 1), 2.0, dtype=torch.float64)  # each bin stands for itself and its mirror
    weight[0] = 1.0
    if t % 2 == 0:
        weight[-1] = 1.0
    inverse = torch.cat([torch.cos(ang) * weight, -torch.sin(ang) * weight], 0).T * scale
    return forward.to(device=device, dtype=dtype), inverse.to(device=device, dtype=dtype)


def _build_transforms(num_frames: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
    forward, inverse = real_dft_matrices(num_frames, dtype, device)
    t, m = num_frames, num_bins(num_frames)
    fwd = forward.view(2, m, t).transpose(0, 1).reshape(2 * m, t)
    inv_re, inv_im = inverse[:, :m], inverse[:, m:]
    inv = torch.stack((inv_re, inv_im), 2).reshape(t, 2 * m)
    inv_of_i = torch.stack((inv_im, -inv_re), 2).reshape(t, 2 * m)
    to_time = torch.stack((inv, inv_of_i), 1).reshape(2 * t, 2 * m)
    return fwd, inv, to_time, inverse.sum(1)


_TRANSFORMS: dict[tuple[int, torch.dtype, torch.device], tuple[Tensor, ...]] = {}


def frames_major_transforms(num_frames: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
    """The transforms in the block's (bin, real/imag) order.

    forward (2M, T) and inverse (T, 2M) as `real_dft_matrices`; to_time (2T, 2M) with rows
    (frame, u/v): u = irfft(S'), v = irfft(i S') (i (a + ib) = -b + ia); ones_response (T,):
    irfft of 1 + i in every bin.

    Cached per (T, dtype, device). Under torch.compile they are built inside the graph,
    which makes them constants of it (dynamo ignores a cache, and warns about one).
    """
    if torch.compiler.is_compiling():
        return _build_transforms(num_frames, dtype, device)
    key = (num_frames, dtype, torch.device(device))
    hit = _TRANSFORMS.get(key)
    if hit is None:
        # Built outside inference mode: a tensor made there could never join a training graph.
        with torch.inference_mode(False), torch.no_grad():
            hit = _TRANSFORMS[key] = _build_transforms(num_frames, dtype, device)
    return hit


class _Modulation(torch.autograd.Function):
    """`modulate` by the native kernels, forward and backward in one pass each."""

    @staticmethod
    def forward(ctx, spectrum: Tensor, filt: Tensor) -> Tensor:
        ctx.save_for_backward(spectrum, filt)
        return native.modulate(spectrum, filt)

    @staticmethod
    def backward(ctx, grad: Tensor):
        spectrum, filt = ctx.saved_tensors
        return native.modulate_backward(spectrum, filt, grad, *ctx.needs_input_grad)


def modulate(spectrum: Tensor, filt: Tensor) -> Tensor:
    """S' = S * S_c: spectrum (B, M, 2, C/G, G, HW), filter (B, C/G, 2, M, HW); the G
    channels of a group share their filter (a broadcast, no copy)."""
    if filt.shape[0] == spectrum.shape[0] and not torch.jit.is_tracing():
        if torch.is_grad_enabled() and (spectrum.requires_grad or filt.requires_grad):
            if native.modulate_usable(spectrum, filt):
                return _Modulation.apply(spectrum, filt)
        else:
            fused = native.modulate(spectrum, filt)
            if fused is not None:
                return fused
    filt = filt.permute(0, 3, 2, 1, 4).unsqueeze(4)  # (B, M, 2, C/G, 1, HW)
    sr, si, fr, fi = spectrum[:, :, 0], spectrum[:, :, 1], filt[:, :, 0], filt[:, :, 1]
    exporting = exporting_graph()  # an exported graph may later run with autograd on
    if exporting or (torch.is_grad_enabled() and (spectrum.requires_grad or filt.requires_grad)):
        return torch.stack((sr * fr - si * fi, sr * fi + si * fr), dim=2)
    out = spectrum.new_empty(spectrum.shape)  # no autograd: fewer passes, no temporaries
    torch.mul(sr, fr, out=out[:, :, 0])
    out[:, :, 0].addcmul_(si, fi, value=-1)
    torch.mul(sr, fi, out=out[:, :, 1])
    out[:, :, 1].addcmul_(si, fr)
    return out


def _real_matrix(complex_weight: Tensor, dtype: torch.dtype, adjoint: bool = False) -> Tensor:
    """[[Wr, -Wi], [Wi, Wr]] of a (C, C, 2) complex weight, in ``dtype``; with ``adjoint``
    its transpose [[Wr^T, Wi^T], [-Wi^T, Wr^T]] (the real matrix of W^H), built contiguous
    in the same pass."""
    wr, wi = complex_weight.to(dtype).unbind(-1)
    if adjoint:
        wr, wi = wr.t(), -wi.t()
    return torch.cat([torch.cat([wr, -wi], 1), torch.cat([wi, wr], 1)], 0)


def mixing_adjoint(complex_weight: Tensor, grad: Tensor, matrix: Tensor | None = None) -> Tensor:
    """The mixing's transpose applied to ``grad`` (N, 2C, L), per spectrum: the input's
    gradient. ``matrix``: the forward's real matrix, when at hand.

    On a CPU in half precision a batched GEMM whose matrix is a transposed view takes a
    path several times slower than with a contiguous one (bfloat16, C = 512, 64 locations:
    2.8 ms against 0.45 for 3 spectra, 22.7 against 3.9 for 24), so the transpose is built
    contiguous there. Elsewhere the view costs nothing and building would.
    """
    if grad.device.type == "cpu" and grad.dtype in (torch.bfloat16, torch.float16):
        adjoint = _real_matrix(complex_weight, grad.dtype, adjoint=True)
    else:
        adjoint = (matrix if matrix is not None else _real_matrix(complex_weight, grad.dtype)).t()
    return torch.bmm(adjoint.expand(grad.shape[0], -1, -1), grad)


def mixing_weight_grad(grad: Tensor, z: Tensor, channels: int) -> Tensor:
    """The complex weight's gradient (C, C, 2) from the output's gradient and the input,
    both (N, 2C, L), in their dtype. (In bfloat16 each in-place GEMM rounds the running
    sum: 0.36% relative error at 6 spectra and 0.61% at 24, against 0.17% for products
    rounded once and summed in float32. A float32 accumulator would cost a pass over
    4 C^2 values per spectrum, more than the GEMM itself at small L on a CPU.)"""
    g = torch.mm(grad[0], z[0].t())
    for n in range(1, z.shape[0]):
        g.addmm_(grad[n], z[n].t())
    c = channels
    return torch.stack((g[:c, :c] + g[c:, c:], g[c:, :c] - g[:c, c:]), -1)


class SpectralChannelMixing(nn.Module):
    """A complex C x C linear map over channels (the released code's ``FFTLinear``), applied
    as one real (2C x 2C) matmul.

    ``complex_weight[o, i] = (re, im)``. Rows and columns of the real matrix are ordered
    (part, channel): [[Wr, -Wi], [Wi, Wr]], which is exactly the complex product; the
    matmul does the 4 real multiply-adds of each complex one (and FLOP counters see them).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.complex_weight = nn.Parameter(torch.randn(channels, channels, 2) * 0.02)

    def real_matrix(self) -> Tensor:
        return _real_matrix(self.complex_weight, self.complex_weight.dtype)

    def forward(self, z: Tensor) -> Tensor:
        """z: (N, 2C, L), rows [real parts of the C channels; imaginary parts]; the matmul
        runs in z's dtype."""
        if torch.is_grad_enabled() and (z.requires_grad or self.complex_weight.requires_grad):
            return _ComplexMixing.apply(z, self.complex_weight)
        # A batched matmul with the matrix broadcast (expand: no copy); torch.matmul of a
        # matrix by a 3-D tensor would fold z's transpose into one GEMM and copy it.
        return torch.bmm(_real_matrix(self.complex_weight, z.dtype).expand(z.shape[0], -1, -1), z)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class _ComplexMixing(torch.autograd.Function):
    """`SpectralChannelMixing` with a backward that accumulates the weight's gradient in
    place, one GEMM per spectrum, and returns it for the complex weight directly.

    Autograd of the broadcast batched matmul would form N (2C x 2C) products and then sum
    them (N x 4 MiB at C = 512), and take the (part, channel) blocks of that sum apart
    through the concatenations of `real_matrix`. At the 16 block shapes of DTF-Net R50
    (batch 1) the mixing's forward and backward took 78 ms instead of 86 (4-19% less per
    shape, most at C = 512 with 64 locations). The weight's gradient:
    with G = sum_n grad_n z_n^T in the [[Wr, -Wi], [Wi, Wr]] block order,
    d/dWr = G_rr + G_ii and d/dWi = G_ir - G_ri.
    """

    @staticmethod
    def forward(ctx, z: Tensor, complex_weight: Tensor) -> Tensor:
        matrix = _real_matrix(complex_weight, z.dtype)
        ctx.save_for_backward(z, matrix, complex_weight)
        ctx.weight_dtype = complex_weight.dtype
        return torch.bmm(matrix.expand(z.shape[0], -1, -1), z)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, matrix, complex_weight = ctx.saved_tensors
        grad_z = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_z = mixing_adjoint(complex_weight, grad, matrix)
        if ctx.needs_input_grad[1]:
            grad_weight = mixing_weight_grad(grad, z, matrix.shape[0] // 2).to(ctx.weight_dtype)
        return grad_z, grad_weight
