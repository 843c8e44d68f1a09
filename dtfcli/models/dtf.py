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

The transforms along time are real DFTs computed as two small matmuls (T is 1-16 inside
these networks, where a matmul beats a strided FFT call); they equal
`torch.fft.rfft/irfft(norm="ortho")` to float precision (tests). Everything stays in real
arithmetic.

Precision: float32 (float64 for float64 input). Under autocast the block computes in
autocast's dtype (bfloat16 or float16): its matmuls (transforms, filter estimator, channel
mixing) then run on the tensor cores / AMX with float32 accumulation, like the convolutions
around it, and the norm keeps float32 statistics. The released code's FFTs ran in float32
(cuFFT has no bfloat16), which would leave the block's GEMMs, the mixing above all, on a
GPU's float32 units at a fraction of the convolutions' speed; ``float32_spectrum=True``
restores that behaviour.

Layout: the block works on frames-major tensors, (B*T, C, H, W) with the T frames of a clip
consecutive, which is how the backbones carry their features (every spatial layer is a 2D
one). Then each transform along time is one matmul over (B, T, C*H*W) views, spectra are
laid out (B, bin, real/imag, C, H*W), and the channel mixing is a batched matmul per bin,
all without copies. (B, C, T, H, W) input is accepted too and transposed in and out.

Inference: with the norm's running statistics fixed, everything after the modulation is
linear, so the norm and alpha are folded into the mixing weights, and the mixing is
applied after the inverse transform: irfft(W S') = Re(W) irfft(S') + Im(W) irfft(i S')
exactly (irfft is real-linear), a real C x 2C matmul per frame (2 C^2 multiply-adds per
location and frame) instead of a complex C x C one per bin (4 C^2 per location and bin),
which also adds the residual in the same call (`baddbmm`). Nothing derived from the
weights is kept between calls (an edit through ``param.data`` leaves no trace a cache
could key on); each call copies whichever side of the mixing is smaller into the other's
layout (`_mix_folded`), as the filter estimator does (`_estimate`).

The transforms, the modulation and the channel mixing live in `dtfcli.models.spectral`.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dtfcli.models.aggregation import FrameAggregation, exporting_graph
from dtfcli.models.spectral import (
    SpectralChannelMixing,
    frames_major_transforms,
    mixing_adjoint,
    mixing_weight_grad,
    modulate,
    num_bins,
    real_dft_matrices,
)

__all__ = ["DTFBlock", "SpectralChannelMixing", "num_bins", "real_dft_matrices"]


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """Autocast's dtype while it is on for this device type, else None (also where autocast
    does not exist, e.g. meta)."""
    try:
        on = torch.is_autocast_enabled(device_type)
    except (RuntimeError, TypeError):
        return None
    return torch.get_autocast_dtype(device_type) if on else None


def _autocast_off(device_type: str):
    """Autocast off: the block casts for itself (`DTFBlock.compute_dtype`)."""
    if _autocast_dtype(device_type) is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def _statistics_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the norm's statistics and of what is derived from the weights: float32,
    or float64 for a float64 block."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class _RecomputingBlock(torch.autograd.Function):
    """`DTFBlock._forward_per_bin` in training with ``recompute=True``: the forward keeps the
    block's input and the normalised mixing output (z after the norm, before alpha) for the
    backward pass, which recomputes the memory-bound head (aggregation, spectrum, filter
    estimator, modulation) with a graph and writes out the rest: the inverse transform, the
    norm (`native_batch_norm_backward` from the normalised values and 1/std) and the complex
    mixing.

    What it saves against recomputing the whole block (PyTorch's checkpoint): the second
    mixing GEMM, the norm's forward and the inverse transform of each block, and the
    autograd graph of those steps. What it costs: the normalised z, 1.5 times the block's
    input at T = 4 (2M / T), kept in the features' precision (bfloat16 under autocast).
    Saved tensors go through ``ctx.save_for_backward``, so saved-tensor hooks such as
    ``torch.autograd.graph.save_on_cpu`` see them. Measured on DTF-Net R50 in
    docs/benchmarks.md.

    Inputs: the frames-major input, the block, the dtype it computes in
    (`DTFBlock.compute_dtype`), and the tensors that get gradients (alpha, bias, the
    mixing's complex weight, the filter estimator's weight or the fixed filter).
    Outputs: the block's output and the batch mean and unbiased variance for the running
    statistics (no gradient).
    """

    @staticmethod
    def forward(ctx, x: Tensor, block: DTFBlock, dtype: torch.dtype, alpha, bias, complex_weight, filter_weight):
        f, spectrum, filt = block._prepare(x, dtype)
        n, c, h, w = f.shape
        t, bins = block.num_frames, num_bins(block.num_frames)
        b = n // t
        modulated = modulate(spectrum, filt).view(b * bins, 2 * c, h * w)
        del spectrum, filt
        z = block.mixing(modulated).view(b * bins * 2, c, h * w)
        del modulated
        # The normalised z without alpha: what the norm's backward needs, with values of
        # order one, so it can be kept in the features' precision (under bfloat16 autocast a
        # float32 copy would be three times the input's bytes; z itself would lose its
        # small deviations from a large mean). A float32 unit weight for half z: the
        # kernel then keeps float32 statistics.
        stat = _statistics_dtype(dtype)
        unit = None if dtype == stat else z.new_ones(c, dtype=stat)
        xhat, mean, invstd = torch.native_batch_norm(z, unit, None, None, None, True, 0.0, block.norm.eps)
        var = block._unbiased_var(invstd, z)
        del z
        normed = xhat * alpha.to(dtype).view(1, c, 1)
        inverse_dft = frames_major_transforms(t, dtype, f.device)[1]
        out = torch.baddbmm(f.view(b, t, c * h * w), inverse_dft.expand(b, t, 2 * bins), normed.view(b, 2 * bins, -1))
        del normed
        out = out.view(n, c, h, w).add_(bias.to(dtype).view(1, c, 1, 1))
        ctx.block = block
        ctx.dtype = dtype
        half_input = x.dtype in (torch.float16, torch.bfloat16)
        ctx.save_for_backward(x, xhat.to(x.dtype) if half_input else xhat, invstd)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor, _grad_mean, _grad_var):
        x, xhat, invstd = ctx.saved_tensors
        block: DTFBlock = ctx.block
        need_x, _, _, need_alpha, need_bias, need_mixing, need_filter = ctx.needs_input_grad
        with _autocast_off(x.device.type):
            dtype, stat = ctx.dtype, invstd.dtype
            xhat = xhat.to(dtype)
            grad_out = grad_out.to(dtype).contiguous()
            n, c, h, w = grad_out.shape
            t, bins = block.num_frames, num_bins(block.num_frames)
            b = n // t
            grad_bias = grad_out.sum((0, 2, 3), dtype=stat).to(block.bias.dtype) if need_bias else None
            # through the inverse transform: (2M, T) times (B, T, C*HW)
            inverse_dft = frames_major_transforms(t, dtype, xhat.device)[1]
            grad_normed = torch.matmul(inverse_dft.t().contiguous(), grad_out.view(b, t, c * h * w))
            # The norm's backward from the normalised values: with mean 0 and 1/std 1 the
            # kernel treats xhat as its own normalisation, and the true 1/std goes into the
            # weight (d/dz = alpha/std (g - mean(g) - xhat mean(g xhat)); d/dalpha = sum g xhat).
            grad_z, grad_alpha, _ = torch.ops.aten.native_batch_norm_backward(
                grad_normed.view_as(xhat), xhat, block.alpha.to(stat) * invstd, None, None,
                torch.zeros_like(invstd), torch.ones_like(invstd), True, 0.0, [True, need_alpha, False],
            )  # fmt: skip
            del xhat, grad_normed
            with torch.enable_grad():
                head_input = x.detach().requires_grad_(need_x)
                _, spectrum, filt = block._prepare(head_input, dtype)
                modulated = modulate(spectrum, filt).view(b * bins, 2 * c, h * w)
            grad_z = grad_z.view(b * bins, 2 * c, h * w)
            grad_mixing = None
            if need_mixing:
                grad_mixing = mixing_weight_grad(grad_z, modulated.detach(), c)
                grad_mixing = grad_mixing.to(block.mixing.complex_weight.dtype)
            grad_modulated = mixing_adjoint(block.mixing.complex_weight, grad_z)
            del grad_z
            targets = [p for p, needed in ((head_input, need_x), (block.filter_weight, need_filter)) if needed]
            grads = list(torch.autograd.grad(modulated, targets, grad_modulated, allow_unused=True)) if targets else []
            grad_x = grad_filter = None
            if need_x:
                grad_x = grads.pop(0)
                grad_x = grad_out if grad_x is None else grad_x.add_(grad_out)  # the residual
                grad_x = grad_x.to(x.dtype)
            if need_filter:
                grad_filter = grads.pop(0)
        if grad_alpha is not None:
            grad_alpha = grad_alpha.to(block.alpha.dtype)
        return grad_x, None, None, grad_alpha, grad_bias, grad_mixing, grad_filter


class DTFBlock(nn.Module):
    """Dynamic Temporal Filter block on (B, C, T, H, W) features; output has the same shape.

    Args:
        channels: C.
        num_frames: T, the temporal length inside the network (the filter estimator is a
            linear map over (C + k^2) x T values, so T is fixed at construction).
        recompute: in training, keep only the input and the normalised mixing output for the
            backward pass and recompute the rest of the block there (2.5x the input saved
            at T = 4 instead of about 11x, for a little more compute).
        kernel_size: k of the frame-wise aggregation window (paper: 3).
        filter_groups: G, channels sharing one learnt filter (paper: 16). C must divide by G.
        aggregation: use frame-wise aggregation (Y = F + A) before the FFT.
        correlation: feed the correlation feature F_cor to the filter estimator.
        dynamic: estimate a filter per location (True) or learn one fixed filter per
            channel group (False, the paper's DTF_F ablation).
        float32_spectrum: under autocast, keep the block's arithmetic in float32 (as the
            released code's FFTs did) instead of autocast's dtype (see the module doc).
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
        float32_spectrum: bool = False,
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
        self.float32_spectrum = float32_spectrum
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
        if x.dim() == 5:
            if x.shape[1] != self.channels or x.shape[2] != self.num_frames:
                raise ValueError(
                    f"DTF block built for C={self.channels}, T={self.num_frames} got C={x.shape[1]}, "
                    f"T={x.shape[2]} (the model's number of frames is fixed when it is built)"
                )
        elif x.dim() == 4:
            if x.shape[1] != self.channels or x.shape[0] % self.num_frames:
                raise ValueError(
                    f"DTF block built for C={self.channels}, T={self.num_frames} got a frames-major "
                    f"(B*T, C, H, W) tensor of shape {tuple(x.shape)}"
                )
        else:
            raise ValueError(
                f"DTF block expects (B, C, T, H, W) or frames-major (B*T, C, H, W), got shape {tuple(x.shape)}"
            )

    def _dims(self, x: Tensor) -> tuple[int, int, int, int]:
        """(B, C, T, H*W) of a (B, C, T, H, W) or frames-major (B*T, C, H, W) input."""
        t = self.num_frames
        if x.dim() == 5:
            return x.shape[0], x.shape[1], t, x.shape[3] * x.shape[4]
        return x.shape[0] // t, x.shape[1], t, x.shape[2] * x.shape[3]

    @property
    def filter_weight(self) -> Tensor:
        """The learnt filter parameters: the estimator's weight, or the fixed filter (DTF_F)."""
        return self.fixed_filter if self.filter_estimator is None else self.filter_estimator.weight

    def compute_dtype(self, x: Tensor) -> torch.dtype:
        """The dtype of the block's arithmetic for input x: autocast's (bfloat16 or float16)
        while autocast is on for x's device, unless ``float32_spectrum``; else float64 for
        float64 input and float32 otherwise (half input without autocast included). The
        norm's statistics are float32 (float64) in every case."""
        if x.dtype == torch.float64:
            return torch.float64
        low = _autocast_dtype(x.device.type)
        return low if low is not None and not self.float32_spectrum else torch.float32

    def _folds_inference(self) -> bool:
        """Inference with fixed norm statistics: the linear tail is folded (see the module doc)."""
        return not self.training and self.norm.track_running_stats

    def filter_parts(self, y: Tensor, corr: Tensor | None) -> Tensor:
        """The frequency filter as real and imaginary parts: (B, C/G, 2, M, H*W), or
        (1, C/G, 2, M, 1) for the fixed filter. y: frames-major (B, T, C, H, W), corr
        (B, T, k^2, H, W)."""
        b, t, c, h, w = y.shape
        if not self.dynamic:
            return self.fixed_filter.to(y.dtype).permute(0, 2, 1)[None, ..., None]
        # The 1x1 conv over concat(Y, F_cor) flattened channel-major as (C + k^2) x T (the
        # weight's column order), applied as one matmul per part on the frames-major
        # features, whose rows are (frame, channel) (`_estimate` reorders one side); the
        # concatenation is never materialised.
        weight = self.filter_estimator.weight.flatten(1)  # (out, (C + k^2) T), cast by `_estimate`
        out = self._estimate(weight[:, : c * t], y.reshape(b, t, c, h * w))
        if corr is not None:  # the output is small (C/G x 2M per location): adding is cheap
            k2 = corr.shape[2]
            out = out + self._estimate(weight[:, c * t :], corr.reshape(b, t, k2, h * w))
        return out.view(b, -1, 2, num_bins(t), h * w)

    def _estimate(self, weight: Tensor, features: Tensor) -> Tensor:
        """weight (out, K*T) with columns (channel, frame) times frames-major features
        (B, T, K, L): (B, out, L), in the features' dtype. One of the two must be
        reordered to the other's order; the smaller copy is made (the weight at large H*W,
        the features at large T*C with few locations, e.g. 19 MiB of weight against 6 MiB
        of features in a DTF-Swin-B stage-3 block)."""
        b, t, k, length = features.shape
        n_out = weight.shape[0]
        # An exported graph (torch.export, ONNX) reorders the weight: the choice must not
        # depend on the batch size, which is a free dimension of the exported graph.
        if exporting_graph() or n_out <= b * length:
            reordered = weight.reshape(n_out, k, t).transpose(1, 2).reshape(n_out, t * k).to(features.dtype)
            return torch.matmul(reordered, features.reshape(b, t * k, length))
        return torch.matmul(weight.to(features.dtype), features.transpose(1, 2).reshape(b, k * t, length))

    def estimate_filter(self, y: Tensor, corr: Tensor | None) -> Tensor:
        """The frequency filter S_i, complex: (B, C/G, M, H, W) (dynamic) or (1, C/G, M, 1, 1).
        y and corr frames-major, as `frame_aggregation` returns them."""
        parts = self.filter_parts(y, corr)
        h, w = y.shape[-2:] if self.dynamic else (1, 1)
        return torch.complex(parts[:, :, 0], parts[:, :, 1]).unflatten(-1, (h, w))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T, H, W), or frames-major (B*T, C, H, W) as the backbones carry it;
        the output has the input's shape."""
        self._check(x)
        five_d = x.dim() == 5
        frames = x.transpose(1, 2).flatten(0, 1) if five_d else x  # frames-major (B*T, C, H, W)
        dtype = self.compute_dtype(x)
        with _autocast_off(x.device.type):
            if self.recompute and self.training and torch.is_grad_enabled():
                # Keep the input and the normalised mixing output for the backward pass and
                # recompute the rest there: the spectra it would otherwise save are several
                # times the input's size (see `_RecomputingBlock`).
                out, mean, var = _RecomputingBlock.apply(
                    frames, self, dtype, self.alpha, self.bias, self.mixing.complex_weight, self.filter_weight
                )
                stats = (mean, var)
            elif self._folds_inference():
                out, stats = self._forward_folded(frames, dtype), None
            else:
                out, stats = self._forward_per_bin(frames, dtype)
        if stats is not None:
            self._update_running_stats(*stats)
        out = out.to(x.dtype)
        if not five_d and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # The block computes on (B, T, C, H*W) rows; a channels-last network gets its
            # layout back, so that the convolutions around the block stay channels-last.
            out = out.contiguous(memory_format=torch.channels_last)
        if five_d:
            b, c, t, h, w = x.shape
            out = out.view(b, t, c, h, w).transpose(1, 2)
        return out

    def _prepare(self, x: Tensor, dtype: torch.dtype):
        """The frames-major input in ``dtype``, its aggregation's spectrum and the filter."""
        f = x.to(dtype).contiguous()
        n, c, h, w = f.shape
        t = self.num_frames
        b = n // t
        video = f.view(b, t, c, h, w)
        if self.frame_aggregation is not None:
            y, corr = self.frame_aggregation(video)
            if not self.correlation:
                corr = None
        else:
            y, corr = video, None
        bins, g = num_bins(t), self.filter_groups
        forward_dft = frames_major_transforms(t, f.dtype, f.device)[0]
        # S = rFFT_T(Y), one matmul: (B, 2M, C*HW), rows (bin, real/imag)
        spectrum = torch.matmul(forward_dft, y.reshape(b, t, c * h * w)).view(b, bins, 2, c // g, g, h * w)
        return f, spectrum, self.filter_parts(y, corr)

    def _forward_per_bin(self, x: Tensor, dtype: torch.dtype) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """The block as trained: mixing per bin, norm with batch statistics (in training)."""
        f, spectrum, filt = self._prepare(x, dtype)
        n, c, h, w = f.shape
        t, bins = self.num_frames, num_bins(self.num_frames)
        b = n // t
        modulated = modulate(spectrum, filt).view(b * bins, 2 * c, h * w)
        z = self.mixing(modulated)  # rows (real/imag, channel)
        # per channel over both parts; alpha is the norm's scale (one pass, not two)
        z, stats = self._normalise(z.view(b * bins * 2, c, h * w), scale=self.alpha.to(_statistics_dtype(dtype)))
        inverse_dft = frames_major_transforms(t, f.dtype, f.device)[1]
        # f + irfft(z), the residual added by the matmul itself
        out = torch.baddbmm(f.view(b, t, c * h * w), inverse_dft.expand(b, t, 2 * bins), z.view(b, 2 * bins, -1))
        return out.view(n, c, h, w).add_(self.bias.to(f.dtype).view(1, c, 1, 1)), stats

    def _forward_folded(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """The same function with the norm's running statistics: norm and alpha folded into
        the mixing, which runs after the inverse transform (see the module doc)."""
        f, spectrum, filt = self._prepare(x, dtype)
        n, c, h, w = f.shape
        t, bins = self.num_frames, num_bins(self.num_frames)
        b = n // t
        modulated = modulate(spectrum, filt)
        to_time = frames_major_transforms(t, f.dtype, f.device)[2]
        # [irfft(S'); irfft(i S')] per frame: (B, T, 2, C, HW)
        uv = torch.matmul(to_time, modulated.view(b, 2 * bins, c * h * w)).view(n, 2, c, h * w)
        scale, shift = self._folded_norm(f.dtype, f.device)
        out = self._mix_folded(f.view(n, c, h * w), uv, scale)
        if exporting_graph():  # the TorchScript-based ONNX exporter loses an in-place add into a view
            return (out.view(b, t, c, h * w) + shift.view(1, t, c, 1)).view(n, c, h, w)
        out.view(b, t, c, h * w).add_(shift.view(1, t, c, 1))
        return out.view(n, c, h, w)

    def _folded_norm(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """The norm's running statistics and alpha as a per-channel scale (C,), in float32
        (float64), and the (T, C) shift, in ``dtype``, that the norm's mean (the same in
        every bin and part) and the bias leave: a fixed pattern in time."""
        norm = self.norm
        exact = _statistics_dtype(dtype)
        ones_response = frames_major_transforms(self.num_frames, exact, device)[3]
        scale = self.alpha.to(exact) * torch.rsqrt(norm.running_var.to(exact) + norm.eps)
        mean_term = scale * norm.running_mean.to(exact)
        if exporting_graph():  # the TorchScript-based ONNX exporter has no addr
            shift = self.bias.to(exact) - ones_response[:, None] * mean_term
        else:
            shift = torch.addr(self.bias.to(exact), ones_response, mean_term, alpha=-1)
        return scale, shift.to(dtype)

    def _mix_folded(self, f: Tensor, uv: Tensor, scale: Tensor) -> Tensor:
        """f + diag(scale) [Re W, Im W] [u; v] per frame: f (N, C, L), uv (N, 2, C, L), the
        result (N, C, L) in f's dtype.

        The complex weight (C, C, 2) has columns (channel, real/imag) and uv rows
        (real/imag, channel): one is copied into the other's order, the smaller. Where the
        weight is copied (early stages: few channels, many locations) the scale is folded
        into that copy, in float32, in the same pass, and the GEMM adds the residual; where
        the features are (late stages, C x 2C weights of up to 32 MiB against a few
        locations), the weight is used as stored and the scale applied to the output.
        """
        n, c, length = f.shape
        complex_weight = self.mixing.complex_weight
        if exporting_graph() or c <= n * length:  # exported: the same order whatever the batch size
            permuted = complex_weight.to(scale.dtype).permute(0, 2, 1)  # (C, real/imag, C), a view
            recording = torch.is_grad_enabled() and (permuted.requires_grad or scale.requires_grad)  # Grad-CAM
            if recording or torch.compiler.is_compiling() or torch.jit.is_tracing():  # without ``out=`` there
                weight = (permuted * scale.view(c, 1, 1)).to(f.dtype).reshape(c, 2 * c)
            else:  # one pass
                weight = torch.mul(permuted, scale.view(c, 1, 1), out=f.new_empty(c, 2, c)).view(c, 2 * c)
            return torch.baddbmm(f, weight.expand(n, c, 2 * c), uv.view(n, 2 * c, length))
        weight = complex_weight.to(f.dtype).reshape(c, 2 * c)
        mixed = torch.bmm(weight.expand(n, c, 2 * c), uv.transpose(1, 2).reshape(n, 2 * c, length))
        return torch.addcmul(f, mixed, scale.to(f.dtype).view(1, c, 1))

    def _normalise(self, z: Tensor, scale: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """The norm (no affine of its own) times a per-channel scale, over (N, C, L). In
        training, batch statistics; the running statistics are updated by the caller, once
        per forward (`_RecomputingBlock` computes its own, for ``recompute=True``)."""
        norm = self.norm
        if self.training or not norm.track_running_stats:
            # The kernel returns the batch mean and 1/sqrt(biased var + eps) it normalised
            # with: the running statistics come from those, without a second pass over z.
            out, mean, invstd = torch.native_batch_norm(z, scale, None, None, None, True, 0.0, norm.eps)
            return out, (mean.detach(), self._unbiased_var(invstd.detach(), z))
        return F.batch_norm(z, norm.running_mean, norm.running_var, scale, training=False, eps=norm.eps), None

    def _unbiased_var(self, invstd: Tensor, z: Tensor) -> Tensor:
        """The unbiased batch variance (what the running variance tracks) from the kernel's
        1/sqrt(biased var + eps) over z (N, C, L), in the statistics' dtype."""
        n = z.numel() // z.shape[1]
        return ((invstd.double().pow(-2) - self.norm.eps) * (n / max(n - 1, 1))).to(invstd.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor) -> None:
        norm = self.norm
        if not (self.training and norm.track_running_stats):
            return
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        # (under torch.compile the statistics of a half z may come back in its dtype)
        norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), momentum)
        norm.running_var.lerp_(var.to(norm.running_var.dtype), momentum)

    def macs(self, x: Tensor) -> int:
        """Multiply-adds a FLOP counter of aten matmuls/convs does not see: the complex
        modulation S * S_c (4 real multiply-adds per complex product). The frame-wise
        aggregation reports its own."""
        b, c, t, hw = self._dims(x)
        return 4 * b * c * num_bins(t) * hw

    def transform_macs(self, x: Tensor) -> int:
        """Multiply-adds of the forward and inverse real DFTs along time (two matmuls of
        2M x T per channel and location). Counted apart from the total, as the paper leaves
        its FFTs out; a FLOP counter sees them as matmuls, so `measure_cost` moves them.
        In folded inference the inverse gives two signals per channel (irfft(S'), irfft(iS'))."""
        b, c, t, hw = self._dims(x)
        inverse = 2 if self._folds_inference() else 1
        return (1 + inverse) * b * c * hw * 2 * num_bins(t) * t

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_frames={self.num_frames}, k={self.kernel_size}, "
            f"G={self.filter_groups}, aggregation={self.aggregation}, correlation={self.correlation}, "
            f"dynamic={self.dynamic}"
        )
