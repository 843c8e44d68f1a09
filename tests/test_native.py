"""The native frame-aggregation kernel: the same function as eq. 6-8 (brute force), used by
the DTF block in float32 on the CPU, and a clean fallback when it cannot be built."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from test_aggregation import brute_force_aggregation

from dtfcli import native
from dtfcli.models import DTFBlock, frame_aggregation
from dtfcli.models import aggregation as fa_module
from dtfcli.models.spectral import _Modulation as DTFBlockModulation

needs_kernel = pytest.mark.skipif(
    not native.status().startswith("native"), reason=f"native kernel not available: {native.status()}"
)


def _tensor_ops_only(monkeypatch):
    for name in ("frame_aggregation", "frame_aggregation_backward", "modulate"):
        monkeypatch.setattr(native, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(native, "modulate_usable", lambda *args, **kwargs: False)


@needs_kernel
@pytest.mark.parametrize(
    "shape,k",
    [
        ((2, 7, 4, 5, 6), 3),  # B, C, T, H, W
        ((1, 3, 1, 4, 4), 3),  # one frame: only the self-correlation
        ((1, 4, 2, 6, 3), 5),  # window wider than the frame
        ((1, 5, 3, 2, 9), 1),  # k = 1: a single neighbour
        ((1, 16, 3, 33, 40), 3),  # several row bands per frame
        ((1, 4, 2, 3, 9), 3),  # one-row bands: the first lies wholly in the plane's border
    ],
)
@pytest.mark.parametrize("aggregate", [True, False])
def test_kernel_equals_brute_force(shape, k, aggregate):
    x = torch.randn(shape)
    frames = x.transpose(1, 2).contiguous()
    y, corr, weights = native.frame_aggregation(frames, k, aggregate, need_weights=True)
    y_ref, corr_ref = brute_force_aggregation(x.double(), k)
    torch.testing.assert_close(corr.transpose(1, 2).double(), corr_ref, rtol=1e-5, atol=1e-5)
    if aggregate:
        torch.testing.assert_close(y.transpose(1, 2).double(), y_ref, rtol=1e-5, atol=1e-5)
        if shape[2] > 1:
            torch.testing.assert_close(weights.double(), torch.softmax(corr_ref.transpose(1, 2)[:, 1:], 2))
    else:
        assert y is None and weights is None


@needs_kernel
def test_kernel_keeps_padding_out_of_non_finite_neighbours():
    # An inf in the last column must not leak into the next row's first column (the kernel
    # walks a plane as one flat array): that location's scores are as in the reference.
    x = torch.randn(1, 2, 4, 5, 5)
    x[:, 1, :, 1, 4] = float("inf")
    frames = x.transpose(1, 2).contiguous()
    y, corr, _ = native.frame_aggregation(frames, 3, True, need_weights=False)
    y_ref, corr_ref = brute_force_aggregation(x.double(), 3)
    at = (slice(None), slice(None), 1, 2, 0)  # frame 1, row 2, column 0: (1, 4) is its wrapped left neighbour
    assert torch.isfinite(corr_ref[at]).all() and torch.isfinite(y_ref[at]).all()
    torch.testing.assert_close(corr.transpose(1, 2)[at].double(), corr_ref[at], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.transpose(1, 2)[at].double(), y_ref[at], rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize(
    "shape,k",
    [
        ((2, 6, 4, 5, 6), 3),
        ((1, 3, 1, 4, 4), 3),
        ((1, 4, 3, 6, 3), 5),
        ((1, 5, 3, 2, 9), 1),
        # bands of 256 // W = 6 rows: 6, 6 and 3 (a middle band, a partial last one); the
        # brute force's autograd costs seconds per hundred locations, so not the 33 rows above
        ((1, 8, 3, 15, 40), 3),
        ((1, 4, 2, 3, 9), 3),  # one-row bands
    ],
)
@pytest.mark.parametrize("aggregate", [True, False])
@pytest.mark.parametrize("with_grad_y,with_grad_corr", [(True, True), (True, False), (False, True)])
def test_backward_kernel_equals_autograd_through_brute_force(shape, k, aggregate, with_grad_y, with_grad_corr):
    x = torch.randn(shape)
    grad_y = torch.randn(shape) if with_grad_y else None
    grad_corr = torch.randn(shape[0], k * k, *shape[2:]) if with_grad_corr else None
    # reference: autograd through the eq. 6-8 loops, in float64
    x64 = x.double().requires_grad_(True)
    y_ref, corr_ref = brute_force_aggregation(x64, k)
    if not aggregate:
        y_ref = x64
    loss = sum((out * g.double()).sum() for out, g in ((y_ref, grad_y), (corr_ref, grad_corr)) if g is not None)
    (expected,) = torch.autograd.grad(loss, x64)

    frames = x.transpose(1, 2).contiguous()
    _, _, weights = native.frame_aggregation(frames, k, aggregate, need_weights=True)
    got = native.frame_aggregation_backward(
        frames,
        weights,
        grad_y.transpose(1, 2).contiguous() if grad_y is not None else None,
        grad_corr.transpose(1, 2).contiguous() if grad_corr is not None else None,
        k,
        aggregate,
    )
    torch.testing.assert_close(got.transpose(1, 2).double(), expected, rtol=1e-4, atol=1e-4)


@needs_kernel
def test_backward_kernel_keeps_padding_out_of_non_finite_neighbours():
    x = torch.randn(1, 4, 3, 5, 5)
    grad_y = torch.randn(1, 4, 3, 5, 5)
    grad_y[:, 1, :, 1, 4] = float("inf")  # the flat left neighbour of (2, 0), not a 2D one
    x64 = x.double().requires_grad_(True)
    y_ref, corr_ref = brute_force_aggregation(x64, 3)
    (expected,) = torch.autograd.grad((y_ref * grad_y.double().nan_to_num(posinf=0.0)).sum(), x64)
    frames = x.transpose(1, 2).contiguous()
    _, _, weights = native.frame_aggregation(frames, 3, True, need_weights=True)
    got = native.frame_aggregation_backward(frames, weights, grad_y.transpose(1, 2).contiguous(), None, 3, True)
    at = (slice(None), slice(None), 2, 2, 0)  # frame 2 gathers g_y of frame 1 from (2, 0)'s neighbours
    assert torch.isfinite(got.transpose(1, 2)[at]).all()
    # away from the inf, the gradient is the finite reference (the inf only reaches its own neighbours)
    torch.testing.assert_close(got.transpose(1, 2)[at].double(), expected[at], rtol=1e-4, atol=1e-4)


@needs_kernel
def test_autograd_function_uses_the_kernel_and_gives_the_same_gradients(monkeypatch):
    x = torch.randn(2, 8, 4, 6, 7, requires_grad=True)
    calls = []
    kernel = native.frame_aggregation

    def counting(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(native, "frame_aggregation", counting)
    y, corr = frame_aggregation(x)
    (y.square().sum() + corr.sin().sum()).backward()
    grad_native = x.grad.clone()
    assert calls, "the float32 CPU path did not call the kernel"

    _tensor_ops_only(monkeypatch)
    x.grad = None
    y2, corr2 = frame_aggregation(x)
    (y2.square().sum() + corr2.sin().sum()).backward()
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(corr, corr2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_native, x.grad, rtol=1e-4, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("training", [False, True])
def test_dtf_block_is_the_same_with_and_without_the_kernel(monkeypatch, training):
    block = DTFBlock(32, 4, filter_groups=8).train(training)
    with torch.no_grad():
        block.alpha.normal_()
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 32, 4, 6, 6)
    out = block(x)
    _tensor_ops_only(monkeypatch)
    torch.testing.assert_close(out, block(x), rtol=1e-4, atol=1e-4)


@needs_kernel
def test_modulation_kernel_is_the_complex_product_and_its_gradient():
    b, m, cg, g, length = 2, 3, 4, 5, 7
    spec = torch.randn(b, m, 2, cg, g, length, requires_grad=True)
    filt = torch.randn(b, cg, 2, m, length, requires_grad=True)
    grad = torch.randn(b, m, 2, cg, g, length)
    out = DTFBlockModulation.apply(spec, filt)
    out.backward(grad)
    # reference: complex tensors, the filter broadcast over the G channels of its group
    s64, f64 = spec.detach().double().requires_grad_(True), filt.detach().double().requires_grad_(True)
    sc = torch.complex(s64[:, :, 0], s64[:, :, 1])  # (B, M, C/G, G, L)
    fc = torch.complex(f64[:, :, 0], f64[:, :, 1]).permute(0, 2, 1, 3).unsqueeze(3)  # (B, M, C/G, 1, L)
    ref = sc * fc
    torch.testing.assert_close(out.double(), torch.stack((ref.real, ref.imag), 2), rtol=1e-5, atol=1e-5)
    g64 = grad.double()
    ((ref.real * g64[:, :, 0]).sum() + (ref.imag * g64[:, :, 1]).sum()).backward()
    torch.testing.assert_close(spec.grad.double(), s64.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(filt.grad.double(), f64.grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # inference: the kernel directly
        torch.testing.assert_close(native.modulate(spec, filt), out)


@needs_kernel
def test_bfloat16_modulation_kernel_is_the_float32_kernel_rounded_once():
    """bfloat16 in and out, float32 inside: the float32 kernel's results on the same values
    rounded to bfloat16, for the product and both gradients (the filter's summed over the
    group in float32), NaN and infinities included."""
    b, m, cg, g, length = 2, 3, 4, 5, 37
    spec = torch.randn(b, m, 2, cg, g, length).bfloat16()
    filt = (torch.randn(b, cg, 2, m, length) * 3).bfloat16()
    grad = torch.randn(b, m, 2, cg, g, length).bfloat16()
    spec[0, 0, 0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    out = native.modulate(spec, filt)
    assert out.dtype == torch.bfloat16
    want = native.modulate(spec.float(), filt.float()).bfloat16()
    torch.testing.assert_close(out, want, rtol=0, atol=0, equal_nan=True)
    got = native.modulate_backward(spec, filt, grad, True, True)
    want = native.modulate_backward(spec.float(), filt.float(), grad.float(), True, True)
    for a, w in zip(got, want, strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a, w.bfloat16(), rtol=0, atol=0, equal_nan=True)
    # and against complex arithmetic on the bfloat16 values (finite entries)
    spec[0, 0, 0, 0, 0, :3] = 0
    sc = torch.complex(spec[:, :, 0].double(), spec[:, :, 1].double())
    fc = torch.complex(filt[:, :, 0].double(), filt[:, :, 1].double()).permute(0, 2, 1, 3).unsqueeze(3)
    ref = sc * fc
    out = native.modulate(spec, filt).double()
    torch.testing.assert_close(out, torch.stack((ref.real, ref.imag), 2), rtol=1e-2, atol=1e-2)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_aggregation_kernel_takes_half_features(dtype):
    """Under autocast the block's features are bfloat16 (float16): the kernel converts them,
    and Y, the scores and the input gradient come back in that dtype, equal to the reference
    on the same values within its precision."""
    x = torch.randn(2, 8, 4, 6, 7).to(dtype)
    frames = x.transpose(1, 2).contiguous()
    y, corr, weights = native.frame_aggregation(frames, 3, True, need_weights=True)
    assert y.dtype == corr.dtype == dtype and weights.dtype == torch.float32
    y_ref, corr_ref = brute_force_aggregation(x.double(), 3)
    torch.testing.assert_close(corr.transpose(1, 2).double(), corr_ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(y.transpose(1, 2).double(), y_ref, rtol=1e-2, atol=2e-2)

    leaf = frames.double().requires_grad_()
    y64, corr64 = frame_aggregation(leaf.transpose(1, 2))
    grad_y, grad_corr = torch.randn_like(y64), torch.randn_like(corr64)
    torch.autograd.backward((y64, corr64), (grad_y, grad_corr))
    grad_x = native.frame_aggregation_backward(
        frames, weights, grad_y.transpose(1, 2).to(dtype), grad_corr.transpose(1, 2).to(dtype), 3, True
    )
    assert grad_x.dtype == dtype
    assert (grad_x.double() - leaf.grad).norm() / leaf.grad.norm() < 1e-2


def test_inputs_the_kernel_does_not_take_use_tensor_operations():
    x = torch.randn(1, 3, 4, 5, 5, dtype=torch.float64)
    assert native.frame_aggregation(x, 3, True, need_weights=False) is None
    assert native.frame_aggregation(x.float().transpose(3, 4), 3, True, need_weights=False) is None
    # and the tensor path still gives the function
    y, corr = fa_module.FrameAggregation(3)(x)
    assert y.dtype == torch.float64 and corr.shape == (1, 3, 9, 5, 5)


def _probe(env: dict, tmp_path) -> str:
    """status(), frame aggregation and window attention in a fresh interpreter with `env`."""
    code = "\n".join(
        [
            "import torch",
            "from dtfcli import native",
            "from dtfcli.models import frame_aggregation",
            "from dtfcli.models.window_attention import WindowAttention",
            "y, c = frame_aggregation(torch.randn(1, 4, 3, 5, 5)); assert torch.isfinite(y).all()",
            "attention = WindowAttention(32, [7, 7], [3, 3], 1).eval()",
            "with torch.inference_mode(): assert torch.isfinite(attention(torch.randn(1, 14, 14, 32))).all()",
            "print(native.status())",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "DTF_CACHE": str(tmp_path / "cache"), **env},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_falls_back_without_a_compiler(tmp_path):
    assert _probe({"CC": str(tmp_path / "no-such-cc")}, tmp_path).startswith("no C compiler")


def test_falls_back_when_the_build_fails(tmp_path):
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: internal error' >&2\nexit 1\n")
    broken.chmod(0o755)
    status = _probe({"CC": str(broken)}, tmp_path)
    assert status.startswith("unavailable") and "internal error" in status
    assert not list((tmp_path / "cache" / "native").glob("*.so")), "a failed build left a library behind"


def test_can_be_turned_off(tmp_path):
    assert _probe({"DTF_NATIVE": "0"}, tmp_path).startswith("off")


@needs_kernel
def test_the_built_library_is_cached_and_reused(tmp_path):
    first = _probe({}, tmp_path)
    libs = list((tmp_path / "cache" / "native").glob("*.so"))
    assert first.startswith("native") and len(libs) == 1
    stamp = libs[0].stat().st_mtime_ns
    assert _probe({}, tmp_path) == first
    assert libs[0].stat().st_mtime_ns == stamp
