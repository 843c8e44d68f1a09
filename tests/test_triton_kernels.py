"""The DTF block's Triton kernels for CUDA tensors (frame-wise aggregation, modulation),
checked without a GPU.

- In Triton's interpreter, which runs the kernels' source on CPU tensors: against the
  eq. 6-8 brute force and autograd through it, and complex tensors for the modulation, as
  `test_native.py` checks the C kernels.
  The interpreter must be chosen before Triton is imported, so these tests run in a
  subprocess (`test_kernels_in_the_triton_interpreter`) and are skipped in this one.
- Compiled for Hopper (sm_90) ahead of time, as a GPU would compile them on first use:
  they must compile, for float32 and bfloat16 features.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_aggregation import brute_force_aggregation

from dtfcli import native
from dtfcli.models import DTFBlock, frame_aggregation

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in test_kernels_in_the_triton_interpreter")

try:
    import triton  # noqa: F401

    from dtfcli.native import triton_aggregation, triton_modulation
except Exception:  # no Triton in this environment
    triton_aggregation = triton_modulation = None
needs_triton = pytest.mark.skipif(triton_aggregation is None, reason="Triton is not installed")


@needs_triton
@pytest.mark.skipif(INTERPRETED, reason="the parent process runs the interpreted tests")
def test_kernels_in_the_triton_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "DTF_NATIVE": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[1],
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20, summary  # the interpreted tests ran, not skipped


def _frames(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).contiguous()


@interpreted
@pytest.mark.parametrize(
    "shape,k",
    [
        ((2, 6, 4, 5, 6), 3),
        ((1, 3, 1, 4, 4), 3),  # one frame: correlation only
        ((1, 4, 3, 6, 3), 5),
        ((1, 5, 3, 2, 9), 1),
        ((1, 11, 3, 9, 10), 3),  # 90 locations: two programs per frame, 11 channels: a partial block
    ],
)
@pytest.mark.parametrize("aggregate", [True, False])
def test_forward_kernel_equals_brute_force(shape, k, aggregate):
    x = torch.randn(shape)
    y, corr, weights = triton_aggregation.frame_aggregation(_frames(x), k, aggregate, need_weights=True)
    y_ref, corr_ref = brute_force_aggregation(x.double(), k)
    torch.testing.assert_close(corr.transpose(1, 2).double(), corr_ref, rtol=1e-5, atol=1e-5)
    if aggregate:
        torch.testing.assert_close(y.transpose(1, 2).double(), y_ref, rtol=1e-5, atol=1e-5)
        if shape[2] > 1:
            expected = torch.softmax(corr_ref[:, :, 1:].double(), dim=1)
            torch.testing.assert_close(weights.transpose(1, 2).double(), expected, rtol=1e-5, atol=1e-6)
    else:
        assert y is None and weights is None


# Every flag combination of the backward kernels (aggregate or not; gradients of y, of the
# correlation or both) on the shape with two programs per frame and a partial channel block;
# the other shapes (a batch of 2, one frame, k = 5) with both modes and both gradients. The
# interpreter is slow: the full cross product ran each flag combination on every shape again.
_FLAG_COMBINATIONS = [(a, gy, gc) for a in (True, False) for gy, gc in ((True, True), (True, False), (False, True))]
_BACKWARD_CASES = [((1, 11, 3, 9, 10), 3, *flags) for flags in _FLAG_COMBINATIONS] + [
    (shape, k, aggregate, True, True)
    for shape, k in (((2, 6, 4, 5, 6), 3), ((1, 3, 1, 4, 4), 3), ((1, 4, 3, 6, 3), 5))
    for aggregate in (True, False)
]


@interpreted
@pytest.mark.parametrize(
    "shape,k,aggregate,with_grad_y,with_grad_corr",
    _BACKWARD_CASES,
    ids=["x".join(map(str, c[0])) + f"-k{c[1]}-" + "-".join(map(str, c[2:])) for c in _BACKWARD_CASES],
)
def test_backward_kernels_equal_autograd_through_brute_force(shape, k, aggregate, with_grad_y, with_grad_corr):
    x = torch.randn(shape)
    grad_y = torch.randn(shape) if with_grad_y else None
    grad_corr = torch.randn(shape[0], k * k, *shape[2:]) if with_grad_corr else None
    x64 = x.double().requires_grad_(True)
    y_ref, corr_ref = brute_force_aggregation(x64, k)
    if not aggregate:
        y_ref = x64
    loss = sum((out * g.double()).sum() for out, g in ((y_ref, grad_y), (corr_ref, grad_corr)) if g is not None)
    (expected,) = torch.autograd.grad(loss, x64)

    _, _, weights = triton_aggregation.frame_aggregation(_frames(x), k, aggregate, need_weights=True)
    got = triton_aggregation.frame_aggregation_backward(
        _frames(x),
        weights,
        _frames(grad_y) if grad_y is not None else None,
        _frames(grad_corr) if grad_corr is not None else None,
        k,
        aggregate,
    )
    torch.testing.assert_close(got.transpose(1, 2).double(), expected, rtol=1e-4, atol=1e-4)


@interpreted
def test_padding_keeps_non_finite_values_of_other_rows_out():
    # An inf in the last column is the flat neighbour of the next row's first column; zero
    # padding must not read it (masked loads), forward and backward.
    x = torch.randn(1, 2, 4, 5, 5)
    x[:, 1, :, 1, 4] = float("inf")
    y, corr, _ = triton_aggregation.frame_aggregation(_frames(x), 3, True, need_weights=False)
    y_ref, corr_ref = brute_force_aggregation(x.double(), 3)
    at = (slice(None), slice(None), 1, 2, 0)
    assert torch.isfinite(corr_ref[at]).all() and torch.isfinite(y_ref[at]).all()
    torch.testing.assert_close(corr.transpose(1, 2)[at].double(), corr_ref[at], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.transpose(1, 2)[at].double(), y_ref[at], rtol=1e-5, atol=1e-5)

    x = torch.randn(1, 4, 3, 5, 5)
    grad_y = torch.randn(1, 4, 3, 5, 5)
    grad_y[:, 1, :, 1, 4] = float("inf")
    x64 = x.double().requires_grad_(True)
    y_ref, _ = brute_force_aggregation(x64, 3)
    (expected,) = torch.autograd.grad((y_ref * grad_y.double().nan_to_num(posinf=0.0)).sum(), x64)
    _, _, weights = triton_aggregation.frame_aggregation(_frames(x), 3, True, need_weights=True)
    got = triton_aggregation.frame_aggregation_backward(_frames(x), weights, _frames(grad_y), None, 3, True)
    at = (slice(None), slice(None), 2, 2, 0)
    assert torch.isfinite(got.transpose(1, 2)[at]).all()
    torch.testing.assert_close(got.transpose(1, 2)[at].double(), expected[at], rtol=1e-4, atol=1e-4)


@interpreted
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_features_are_computed_in_float32_and_rounded_once(dtype):
    x = torch.randn(1, 6, 3, 5, 6).to(dtype)
    y, corr, _ = triton_aggregation.frame_aggregation(_frames(x), 3, True, need_weights=False)
    y32, corr32, _ = triton_aggregation.frame_aggregation(_frames(x.float()), 3, True, need_weights=False)
    assert y.dtype == corr.dtype == dtype
    # within one unit in the last place of the float32 result (the interpreter's
    # conversion may truncate where a GPU rounds to nearest)
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(y.float(), y32, rtol=ulp, atol=1e-6)
    torch.testing.assert_close(corr.float(), corr32, rtol=ulp, atol=1e-6)


@interpreted
def test_the_autograd_function_takes_the_kernels_and_matches_tensor_operations(monkeypatch):
    calls = []
    forward, backward = native.gpu_frame_aggregation, native.gpu_frame_aggregation_backward

    def counted(fn):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            calls.append(out is not None)
            return out

        return wrapper

    monkeypatch.setattr(native, "gpu_frame_aggregation", counted(forward))
    monkeypatch.setattr(native, "gpu_frame_aggregation_backward", counted(backward))
    x = torch.randn(2, 8, 4, 6, 7, requires_grad=True)
    y, corr = frame_aggregation(x)
    (y.square().sum() + corr.sin().sum()).backward()
    grad = x.grad.clone()
    assert calls == [True, True], calls

    monkeypatch.setenv("DTF_TRITON", "0")
    assert native.gpu_status().startswith("off")
    x.grad = None
    y2, corr2 = frame_aggregation(x)
    (y2.square().sum() + corr2.sin().sum()).backward()
    assert calls == [True, True, False, False]
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(corr, corr2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, x.grad, rtol=1e-4, atol=1e-4)


@interpreted
@pytest.mark.parametrize("training", [False, True])
def test_dtf_block_is_the_same_with_the_kernels(monkeypatch, training):
    block = DTFBlock(16, 4, filter_groups=4).train(training)
    with torch.no_grad():
        block.alpha.normal_()
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 16, 4, 6, 6, requires_grad=True)
    out = block(x)
    out.square().sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in block.parameters() if p.grad is not None]
    x.grad = None
    block.zero_grad()
    monkeypatch.setenv("DTF_TRITON", "0")
    out2 = block(x)
    out2.square().sum().backward()
    grads2 = [x.grad] + [p.grad for p in block.parameters() if p.grad is not None]
    torch.testing.assert_close(out, out2, rtol=1e-4, atol=1e-4)
    for g, g2 in zip(grads, grads2, strict=True):
        torch.testing.assert_close(g, g2, rtol=1e-4, atol=1e-4)


def _signature(name: str, dtype: str) -> dict:
    sizes = {"frames": "i32", "channels": "i32", "height": "i32", "width": "i32"}
    spectral = {"bins": "i32", "groups": "i32", "group_size": "i32", "length": "i32"}
    f, f32 = f"*{dtype}", "*fp32"
    return {
        "forward": {"x": f, "y": f, "corr": f, "weights": f32, **sizes, "inv_c": "fp32"},
        "score_grad": {"x": f, "weights": f32, "grad_y": f, "grad_corr": f, "scores": f32, **sizes, "inv_c": "fp32"},
        "input_grad": {"x": f, "weights": f32, "grad_y": f, "scores": f32, "grad_x": f, **sizes},
        "modulate_forward": {"spectrum": f, "filt": f, "out": f, **spectral},
        "modulate_backward": {"spectrum": f, "filt": f, "grad": f, "grad_spectrum": f, "grad_filter": f, **spectral},
    }[name]


def _kernel_sources():
    """(name, source, constants) of every kernel, with the flags a training step uses."""
    aggregation = {"BLOCK_L": triton_aggregation.BLOCK_L, "BLOCK_C": triton_aggregation.BLOCK_C}
    flags = {
        "forward": {"K": 3, "KK": 16, "AGGREGATE": True, "STORE_WEIGHTS": True},
        "score_grad": {"K": 3, "KK": 16, "THROUGH_SOFTMAX": True, "HAS_GRAD_CORR": True},
        "input_grad": {"K": 3, "AGGREGATE": True, "HAS_GRAD_Y": True},
    }
    for name, source in triton_aggregation._SOURCES.items():
        yield name, source, {**flags[name], **aggregation}, triton_aggregation.NUM_WARPS
    block = {"BLOCK": triton_modulation.BLOCK}
    yield "modulate_forward", triton_modulation._modulate_forward, block, triton_modulation.NUM_WARPS
    backward = {"NEED_SPECTRUM": True, "NEED_FILTER": True, **block}
    yield "modulate_backward", triton_modulation._modulate_backward, backward, triton_modulation.NUM_WARPS


@needs_triton
@pytest.mark.skipif(INTERPRETED, reason="the interpreter does not compile")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_kernels_compile_for_hopper(dtype):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    for name, source, constants, warps in _kernel_sources():
        signature = {**_signature(name, dtype), **dict.fromkeys(constants, "constexpr")}
        compiled = triton.compile(
            ASTSource(fn=triton.jit(source), signature=signature, constexprs=constants),
            target=GPUTarget("cuda", 90, 32),
            options={"num_warps": warps, "enable_fp_fusion": True},
        )
        assert len(compiled.asm["cubin"]) > 1000, name


@interpreted
@pytest.mark.parametrize(  # each gradient flag combination in float32; bfloat16 with both gradients
    "dtype,need",
    [
        (torch.float32, (True, True)),
        (torch.float32, (True, False)),
        (torch.float32, (False, True)),
        (torch.bfloat16, (True, True)),
    ],
    ids=["float32-both", "float32-spectrum", "float32-filter", "bfloat16-both"],
)
def test_modulation_kernels_are_the_complex_product_and_its_gradient(dtype, need):
    b, m, cg, g, length = 2, 3, 4, 5, 300  # 300 locations: two blocks, the second partial
    spectrum = torch.randn(b, m, 2, cg, g, length)
    filt = torch.randn(b, cg, 2, m, length)
    grad = torch.randn(b, m, 2, cg, g, length)
    # reference: complex tensors in float64, the filter broadcast over the group
    s = torch.complex(spectrum[:, :, 0].double(), spectrum[:, :, 1].double()).requires_grad_(True)
    f = torch.complex(filt[:, :, 0].double(), filt[:, :, 1].double()).permute(0, 2, 1, 3)  # (B, M, C/G, L)
    f = f.detach().requires_grad_(True)
    out = s * f.unsqueeze(3)
    gc = torch.complex(grad[:, :, 0].double(), grad[:, :, 1].double())
    # for the real loss Re<g, out>, autograd's gradient (conjugate Wirtinger) is g * conj(f)
    loss = (gc.conj() * out).real.sum()
    gs, gf = torch.autograd.grad(loss, (s, f))

    got = triton_modulation.modulate(spectrum.to(dtype), filt.to(dtype))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 5e-2}
    assert got.dtype == dtype
    torch.testing.assert_close(torch.complex(got[:, :, 0].double(), got[:, :, 1].double()), out.detach(), **tol)
    grad_s, grad_f = triton_modulation.modulate_backward(spectrum.to(dtype), filt.to(dtype), grad.to(dtype), *need)
    if need[0]:
        torch.testing.assert_close(torch.complex(grad_s[:, :, 0].double(), grad_s[:, :, 1].double()), gs, **tol)
    else:
        assert grad_s is None
    if need[1]:
        expected = torch.stack((gf.real, gf.imag), 2).permute(0, 3, 2, 1, 4)  # back to (B, C/G, 2, M, L)
        torch.testing.assert_close(grad_f.double(), expected, **{**tol, "atol": tol["atol"] * g})
    else:
        assert grad_f is None


@interpreted
@pytest.mark.parametrize("training", [False, True])
def test_the_block_takes_the_modulation_kernels(monkeypatch, training):
    calls = []
    for name in ("modulate", "modulate_backward"):
        kernel = getattr(triton_modulation, name)
        monkeypatch.setattr(triton_modulation, name, lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    block = DTFBlock(16, 4, filter_groups=4).train(training)
    x = torch.randn(1, 16, 4, 5, 5, requires_grad=training)
    out = block(x)
    if training:
        out.sum().backward()
    assert "modulate" in calls and ("modulate_backward" in calls) == training


@needs_triton
@pytest.mark.skipif(INTERPRETED, reason="outside the interpreter only")
def test_cpu_tensors_never_take_the_triton_path_and_the_status_names_it(monkeypatch):
    assert native.gpu_status().startswith("Triton ")
    assert not native.triton_usable(torch.randn(1, 2, 3, 4, 4))
    assert not native._on_triton(torch.randn(1, 2, 2, 1, 3, 5), torch.randn(1, 1, 2, 2, 5))
    monkeypatch.setenv("DTF_TRITON", "0")
    assert native.gpu_status().startswith("off (DTF_TRITON=0)")


@needs_triton
@pytest.mark.skipif(INTERPRETED, reason="the script starts its own interpreter")
def test_a_block_launches_a_few_kernels_on_the_gpu_path():
    # benchmarks/count_launches.py counts the computing ATen operations and the Triton
    # launches of one block, the tensor-operation path against the Triton kernels.
    script = Path(__file__).parents[1] / "benchmarks" / "count_launches.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--channels", "16", "--frames", "4", "--size", "6"],
        capture_output=True,
        text=True,
        cwd=script.parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("inference", "training") and len(parts) == 3:
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    (tensor_inf, triton_inf), (tensor_train, triton_train) = counts["inference"], counts["training"]
    assert tensor_inf > 60 and tensor_train > 250, counts  # the loop over the k^2 offsets
    # inference: 9 for the block's arithmetic, 8 that derive the folded weights on every call
    assert triton_inf <= 20 and triton_train <= 100, counts
    assert "triton:aggregation.forward" in proc.stdout and "triton:modulation.backward" in proc.stdout


@interpreted
def test_kernels_that_fail_on_a_device_leave_the_block_on_tensor_operations(monkeypatch):
    # A Triton that cannot compile for the GPU at hand must cost speed, not the run.
    def broken(*args, **kwargs):
        raise RuntimeError("PTX .version 9.4 does not support .target sm_61\nmore lines")

    block = DTFBlock(16, 4, filter_groups=4).train()
    x = torch.randn(1, 16, 4, 5, 5, requires_grad=True)
    monkeypatch.setenv("DTF_TRITON", "0")
    expected = block(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    monkeypatch.delenv("DTF_TRITON")

    monkeypatch.setattr(native, "_triton_checked", {})
    monkeypatch.setattr(triton_aggregation, "frame_aggregation", broken)
    with pytest.warns(RuntimeWarning, match=r"do not run on cpu for torch.float32 \(RuntimeError: PTX .version"):
        out = block(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-4)
    assert native._triton_checked == {("cpu", torch.float32): False}
    assert "tensor operations on cpu float32 (kernels failed)" in native.gpu_status()
    assert not native.triton_usable(x.detach())  # decided once: no second warning, no second try
