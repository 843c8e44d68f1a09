"""The Dynamic Temporal Filter (DTF) block, Long et al., ECCV 2022, sections 3.2-3.3.

Input F: (B, C, T, H, W). With M = T // 2 + 1 frequency bins:

1. frame-wise aggregation: Y, F_cor = FA(F)                       (eq. 6-8)
2. spectrum:  S = rFFT_T(Y), orthonormal, (B, C, M, H, W) complex    (eq. 1)
3. filter:    S_i = W_g . flatten(concat(Y, F_cor) over (C + k^2) x T) at every location,
              C/G x M complex values; S_c[c] = S_i[c // G] (channel expansion)   (sec. 3.2)
4. modulate:  S' = S * S_c                                           (eq. 4)
5. released code, not in the paper: complex C x C channel mixing, batch norm over the
   real and imaginary parts (no affine), and a per-channel scale alpha initialised to
   zero, so that a new block is the identity.
6. f' = inverse rFFT (n = T, orthonormal); output = F + f' + bias    (eq. 5; residual on F)

The spectral path (2-6) runs in float32 even under autocast. The transforms along time are
real DFTs computed as two small matmuls (T is 1-16 inside these networks, where a matmul
beats a strided FFT call); they equal `torch.fft.rfft/irfft(norm="ortho")` to float
precision (tests). Everything stays in real arithmetic, laid out per channel as
[real bins; imaginary bins], so the mixing, the norm and the inverse need no copies.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dtfcli.models.aggregation import FrameAggregation


def _fp32_region(device_type: str):
    """Autocast off (the FFTs need float32); a no-op where autocast does not exist (meta)."""
    try:
        on = torch.is_autocast_enabled(device_type)
    except (RuntimeError, TypeError):
        on = False
    return torch.autocast(device_type=device_type, enabled=False) if on else contextlib.nullcontext()


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


@functools.lru_cache(maxsize=64)
def _cached_dft(num_frames: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    # Built outside inference mode: a tensor made there could never join a training graph.
    with torch.inference_mode(False), torch.no_grad():
        return real_dft_matrices(num_frames, dtype, device)


class SpectralChannelMixing(nn.Module):
    """A complex C x C linear map over channels, applied as one real (2C x 2C) matmul.

    ``complex_weight[o, i] = (re, im)``. Rows and columns of the real matrix are ordered
    (channel, part): entry ((o, p), (i, q)) is Wr for p = q, -Wi for (p, q) = (re, im) and
    Wi for (im, re), which is exactly the complex product; the matmul does the 4 real
    multiply-adds of each complex one (and FLOP counters see them all).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.complex_weight = nn.Parameter(torch.randn(channels, channels, 2) * 0.02)

    def real_matrix(self) -> Tensor:
        wr, wi = self.complex_weight.unbind(-1)
        c = self.channels
        return torch.stack([torch.stack([wr, -wi], -1), torch.stack([wi, wr], -1)], 1).reshape(2 * c, 2 * c)

    def forward(self, z: Tensor) -> Tensor:
        """z: (B, 2C, L), row 2c the real part of channel c and row 2c + 1 its imaginary part."""
        return torch.matmul(self.real_matrix(), z)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class DTFBlock(nn.Module):
    """Dynamic Temporal Filter block on (B, C, T, H, W) features; output has the same shape.

    Args:
        channels: C.
        num_frames: T, the temporal length inside the network (the filter estimator is a
            linear map over (C + k^2) x T values, so T is fixed at construction).
        recompute: in training, keep only the input for the backward pass and recompute
            the block there (less memory for a little more compute).
        kernel_size: k of the frame-wise aggregation window (paper: 3).
        filter_groups: G, channels sharing one learnt filter (paper: 16). C must divide by G.
        aggregation: use frame-wise aggregation (Y = F + A) before the FFT.
        correlation: feed the correlation feature F_cor to the filter estimator.
        dynamic: estimate a filter per location (True) or learn one fixed filter per
            channel group (False, the paper's DTF_F ablation).
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        kernel_size: int = 3,
        filter_groups: int = 16,
        aggregation: bool = True,
        correlation: bool = True,
        dynamic: bool = True,
        recompute: bool = True,
    ):
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"DTF block needs at least one frame, got num_frames={num_frames}")
        if channels % filter_groups != 0:
            raise ValueError(
                f"DTF block: channels ({channels}) must be a multiple of filter_groups G ({filter_groups})"
            )
        self.channels = channels
        self.num_frames = num_frames
        self.kernel_size = kernel_size
        self.filter_groups = filter_groups
        self.aggregation = aggregation
        self.correlation = correlation
        self.dynamic = dynamic
        self.recompute = recompute
        bins = num_bins(num_frames)
        n_filters = channels // filter_groups

        self.frame_aggregation = (
            FrameAggregation(kernel_size, aggregate=aggregation) if (aggregation or correlation) else None
        )
        if dynamic:
            in_ch = (channels + (kernel_size**2 if correlation else 0)) * num_frames
            # Output channels laid out as (filter, real/imag, bin).
            self.filter_estimator = nn.Conv2d(in_ch, n_filters * bins * 2, kernel_size=1, bias=False)
            nn.init.kaiming_normal_(self.filter_estimator.weight, mode="fan_out", nonlinearity="relu")
            self.register_parameter("fixed_filter", None)
        else:
            self.filter_estimator = None
            # An all-pass start; the block's output is the identity anyway while alpha = 0.
            fixed = torch.zeros(n_filters, bins, 2)
            fixed[..., 0] = 1.0
            self.fixed_filter = nn.Parameter(fixed)
        self.mixing = SpectralChannelMixing(channels)
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        # Batch norm over real and imaginary parts together, as the released code does.
        self.norm = nn.BatchNorm1d(channels, affine=False)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"DTF block expects (B, C, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.channels or x.shape[2] != self.num_frames:
            raise ValueError(
                f"DTF block built for C={self.channels}, T={self.num_frames} got C={x.shape[1]}, "
                f"T={x.shape[2]} (the model's number of frames is fixed when it is built)"
            )

    def filter_parts(self, y: Tensor, corr: Tensor | None) -> Tensor:
        """The frequency filter as real and imaginary parts: (B, C/G, 2, M, H*W), or
        (1, C/G, 2, M, 1) for the fixed filter."""
        b, c, t, h, w = y.shape
        if not self.dynamic:
            return self.fixed_filter.to(y.dtype).permute(0, 2, 1)[None, ..., None]
        # The 1x1 conv over concat(Y, F_cor) flattened channel-major as (C + k^2) x T, applied
        # as one matmul per part so that the concatenation is never materialised.
        weight = self.filter_estimator.weight.flatten(1)  # (out, (C + k^2) T)
        out = torch.matmul(weight[:, : c * t], y.reshape(b, c * t, h * w))
        if corr is not None:  # the output is small (C/G x 2M per location): adding is cheap
            out = out + torch.matmul(weight[:, c * t :], corr.reshape(b, -1, h * w))
        return out.view(b, -1, 2, num_bins(t), h * w)

    def estimate_filter(self, y: Tensor, corr: Tensor | None) -> Tensor:
        """The frequency filter S_i, complex: (B, C/G, M, H, W) (dynamic) or (1, C/G, M, 1, 1)."""
        parts = self.filter_parts(y, corr)
        h, w = (y.shape[-2:] if self.dynamic else (1, 1))
        return torch.complex(parts[:, :, 0], parts[:, :, 1]).unflatten(-1, (h, w))

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        with _fp32_region(x.device.type):
            if self.recompute and self.training and torch.is_grad_enabled():
                # Keep only the input for the backward pass and recompute the block there:
                # the spectra it would otherwise save are several times the input's size.
                out, stats = checkpoint(self._forward_fp32, x, use_reentrant=False, preserve_rng_state=False)
            else:
                out, stats = self._forward_fp32(x)
        if stats is not None:
            self._update_running_stats(*stats)
        return out.to(x.dtype)

    def _forward_fp32(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        f = x if x.dtype in (torch.float32, torch.float64) else x.float()  # half -> float32
        b, c, t, h, w = f.shape
        if self.frame_aggregation is not None:
            y, corr = self.frame_aggregation(f)
            if not self.correlation:
                corr = None
        else:
            y, corr = f, None
        bins, g, hw = num_bins(t), self.filter_groups, h * w
        forward_dft, inverse_dft = _cached_dft(t, f.dtype, f.device)
        # S = rFFT_T(Y): (B*C, 2M, HW), per channel [real bins; imaginary bins]
        spectrum = torch.matmul(forward_dft, y.reshape(b * c, t, hw)).view(b, c // g, g, 2, bins, hw)
        filt = self.filter_parts(y, corr).unsqueeze(2)  # shared by the G channels of a group
        sr, si, fr, fi = spectrum[:, :, :, 0], spectrum[:, :, :, 1], filt[:, :, :, 0], filt[:, :, :, 1]
        modulated = torch.stack((sr * fr - si * fi, sr * fi + si * fr), dim=3)  # S' = S * S_c
        z = self.mixing(modulated.view(b, 2 * c, bins * hw))  # rows (channel, part)
        z, stats = self._normalise(z.view(b, c, 2 * bins * hw))  # norm over both parts
        z = z * self.alpha.view(1, c, 1)
        out = torch.matmul(inverse_dft, z.view(b * c, 2 * bins, hw)).view(b, c, t, h, w)
        return f + out + self.bias.view(1, c, 1, 1, 1), stats

    def _normalise(self, z: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """Batch norm without affine over (2B, C, L). In training, batch statistics; the
        running statistics are updated by the caller, once per forward even when the block
        is recomputed in the backward pass."""
        norm = self.norm
        if self.training or not norm.track_running_stats:
            with torch.no_grad():
                var, mean = torch.var_mean(z, dim=(0, 2), correction=1)
            return F.batch_norm(z, None, None, training=True, eps=norm.eps), (mean, var)
        return F.batch_norm(z, norm.running_mean, norm.running_var, training=False, eps=norm.eps), None

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor) -> None:
        norm = self.norm
        if not (self.training and norm.track_running_stats):
            return
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        norm.running_mean.lerp_(mean, momentum)
        norm.running_var.lerp_(var, momentum)

    def macs(self, x: Tensor) -> int:
        """Multiply-adds a FLOP counter of aten matmuls/convs does not see: the complex
        modulation S * S_c (4 real multiply-adds per complex product). The frame-wise
        aggregation reports its own."""
        b, c, t, h, w = x.shape
        return 4 * b * c * num_bins(t) * h * w

    def transform_macs(self, x: Tensor) -> int:
        """Multiply-adds of the forward and inverse real DFTs along time (two matmuls of
        2M x T per channel and location). Counted apart from the total, as the paper leaves
        its FFTs out; a FLOP counter sees them as matmuls, so `measure_cost` moves them."""
        b, c, t, h, w = x.shape
        return 2 * b * c * h * w * 2 * num_bins(t) * t

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_frames={self.num_frames}, k={self.kernel_size}, "
            f"G={self.filter_groups}, aggregation={self.aggregation}, correlation={self.correlation}, "
            f"dynamic={self.dynamic}"
        )
