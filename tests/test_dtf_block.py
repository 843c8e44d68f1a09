"""The DTF block: convolution theorem (eq. 3), identity start, training, frame lengths."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from dtfcli import native
from dtfcli.models import DTFBlock
from dtfcli.models.spectral import real_dft_matrices

aten = torch.ops.aten


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 8, 16])
def test_real_dft_matrices_equal_torch_fft(frames):
    forward, inverse = real_dft_matrices(frames)
    x = torch.randn(frames, 7, dtype=torch.float64)
    spec = torch.fft.rfft(x, dim=0, norm="ortho")
    torch.testing.assert_close(forward @ x, torch.cat([spec.real, spec.imag]))
    z = torch.randn(2 * (frames // 2 + 1), 7, dtype=torch.float64)
    m = frames // 2 + 1
    expected = torch.fft.irfft(torch.complex(z[:m], z[m:]), n=frames, dim=0, norm="ortho")
    torch.testing.assert_close(inverse @ z, expected)


def circular_conv_reference(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """out[b, c, t] = sum_tau kernels[c, tau] * x[b, c, (t - tau) mod T], by loops."""
    b_, c_, t_, h_, w_ = x.shape
    out = torch.zeros_like(x)
    for c in range(c_):
        for t in range(t_):
            for tau in range(t_):
                out[:, c, t] += kernels[c, tau] * x[:, c, (t - tau) % t_]
    return out


def _make_pure_filter(block: DTFBlock) -> None:
    """Mixing = identity, norm = identity (eval, mean 0, var 1, eps 0), alpha = 1, bias 0."""
    c = block.channels
    with torch.no_grad():
        block.mixing.complex_weight.zero_()
        block.mixing.complex_weight[..., 0].copy_(torch.eye(c))
        block.alpha.fill_(1.0)
        block.bias.zero_()
    block.norm.eps = 0.0
    block.eval()


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 7, 8])
def test_fixed_filter_is_circular_convolution_with_its_inverse_fft(frames):
    torch.manual_seed(frames)
    c, g = 8, 4
    block = DTFBlock(c, frames, filter_groups=g, aggregation=False, correlation=False, dynamic=False).double()
    _make_pure_filter(block)
    with torch.no_grad():
        block.fixed_filter.copy_(torch.randn_like(block.fixed_filter))
    x = torch.randn(2, c, frames, 3, 2, dtype=torch.float64)

    filt = torch.view_as_complex(block.fixed_filter.detach())  # (C/G, M)
    # Channel expansion: channel c uses intermediate filter c // G.
    kernels = torch.fft.irfft(filt, n=frames, dim=-1).repeat_interleave(g, dim=0)  # (C, T)
    expected = x + circular_conv_reference(x, kernels)
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_dynamic_filter_is_a_per_location_convolution():
    torch.manual_seed(3)
    c, g, frames = 8, 2, 4
    block = DTFBlock(c, frames, filter_groups=g).double()
    _make_pure_filter(block)
    x = torch.randn(1, c, frames, 3, 3, dtype=torch.float64)
    out = block(x)
    with torch.no_grad():
        y, corr = block.frame_aggregation(x.transpose(1, 2).contiguous())  # frames-major, as the block
        filt = block.estimate_filter(y, corr)  # (1, C/G, M, H, W)
    y = y.transpose(1, 2)  # back to (B, C, T, H, W)
    for h, w in [(0, 0), (1, 2), (2, 1)]:
        kernels = torch.fft.irfft(filt[0, :, :, h, w], n=frames, dim=-1).repeat_interleave(g, dim=0)
        y_loc = y[:, :, :, h : h + 1, w : w + 1]
        expected = x[:, :, :, h : h + 1, w : w + 1] + circular_conv_reference(y_loc, kernels)
        torch.testing.assert_close(out[:, :, :, h : h + 1, w : w + 1], expected, rtol=1e-10, atol=1e-10)
    # Different locations get different filters.
    assert not torch.allclose(filt[0, :, :, 0, 0], filt[0, :, :, 1, 2])


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(aggregation=False, correlation=False),
        dict(dynamic=False, aggregation=False, correlation=False),
    ],
)
def test_a_fresh_block_is_the_identity(frames, variant):
    block = DTFBlock(32, frames, **variant)
    x = torch.randn(2, 32, frames, 5, 6)
    for mode in (block.train, block.eval):
        mode()
        assert torch.equal(block(x), x)


def test_one_step_changes_every_trainable_parameter():
    block = DTFBlock(32, 4).train()
    with torch.no_grad():  # leave the identity start, where the filter path gets no gradient
        block.alpha.normal_()
    before = {n: p.detach().clone() for n, p in block.named_parameters()}
    opt = torch.optim.SGD(block.parameters(), lr=0.1)
    block(torch.randn(2, 32, 4, 5, 5)).square().mean().backward()
    opt.step()
    unchanged = [n for n, p in block.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def test_from_the_identity_start_alpha_moves_first_then_everything():
    block = DTFBlock(32, 4).train()
    params = dict(block.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.SGD(block.parameters(), lr=0.1)
    x, target = torch.randn(2, 32, 4, 5, 5), torch.randn(2, 32, 4, 5, 5)
    for step in range(2):
        opt.zero_grad()
        (block(x) - target).square().mean().backward()
        opt.step()
        changed = {n for n, p in params.items() if not torch.equal(p, before[n])}
        if step == 0:
            assert changed == {"alpha", "bias"}
    assert changed == set(params)


@pytest.mark.parametrize(
    "variant",
    [dict(), dict(correlation=False), dict(aggregation=False, correlation=False), dict(dynamic=False)],
)
@pytest.mark.parametrize("frames_major,frames", [(False, 4), (True, 4), (True, 1), (True, 3)])
def test_recomputation_gives_the_same_gradients_and_updates_statistics_once(variant, frames_major, frames):
    """The hand-written backward of the recomputing block against autograd through the
    plain forward, in float64, for the input and every parameter."""
    torch.manual_seed(1)
    a = DTFBlock(16, frames, filter_groups=4, recompute=True, **variant).double().train()
    b = DTFBlock(16, frames, filter_groups=4, recompute=False, **variant).double().train()
    with torch.no_grad():
        for p in a.parameters():
            p.normal_()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 16, frames, 4, 5, dtype=torch.float64)
    if frames_major:
        x = x.transpose(1, 2).reshape(2 * frames, 16, 4, 5)
    target = torch.randn_like(x)
    grads = []
    for blk in (a, b):
        xi = x.clone().requires_grad_()
        (blk(xi) * target).square().sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-10, atol=1e-10, msg=name)
    torch.testing.assert_close(a.norm.running_mean, b.norm.running_mean)
    torch.testing.assert_close(a.norm.running_var, b.norm.running_var)
    assert a.norm.num_batches_tracked.item() == b.norm.num_batches_tracked.item() == 1


def test_running_statistics_match_torch_batchnorm():
    block = DTFBlock(16, 4, filter_groups=4).train()
    with torch.no_grad():
        block.alpha.normal_()
    reference = torch.nn.BatchNorm1d(16, affine=False).train()
    seen = []
    # mixing output (B x bins, 2C, HW), rows (real/imag, channel): the norm sees (B x bins x 2, C, HW)
    block.mixing.register_forward_hook(lambda m, i, o: seen.append(o.detach().view(-1, 16, o.shape[-1])))
    for _ in range(3):
        block(torch.randn(2, 16, 4, 3, 3, requires_grad=True)).sum().backward()
    assert len(seen) == 3  # the backward pass keeps the mixing's output, it does not mix again
    for z in seen:
        reference(z)
    torch.testing.assert_close(block.norm.running_mean, reference.running_mean)
    torch.testing.assert_close(block.norm.running_var, reference.running_var)


def test_wrong_frame_count_and_groups_fail_clearly():
    block = DTFBlock(32, 4)
    with pytest.raises(ValueError, match="T=4.*T=5"):
        block(torch.randn(1, 32, 5, 3, 3))
    with pytest.raises(ValueError, match="multiple of filter_groups"):
        DTFBlock(24, 4, filter_groups=16)
    with pytest.raises(ValueError, match="at least one frame"):
        DTFBlock(32, 0)


class _MatmulDtypes(TorchDispatchMode):
    """Records the dtypes of the matmuls (mm, bmm, addmm, baddbmm) that run under it."""

    def __init__(self):
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (aten.mm, aten.bmm, aten.addmm, aten.baddbmm):
            self.dtypes.append(args[-1].dtype)
        return func(*args, **(kwargs or {}))


def _random_state(block: DTFBlock) -> DTFBlock:
    with torch.no_grad():
        block.alpha.normal_()
        block.bias.normal_()
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2)
    return block


def _branch_error(got: Tensor, want: Tensor, x: Tensor) -> float:
    """Relative error of the block's own contribution (output minus the residual input)."""
    return ((got.float() - want).norm() / (want - x.float()).norm()).item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kernels", ["native", "tensor operations"])
@pytest.mark.parametrize("mode", ["folded inference", "per-bin training", "recomputing training"])
def test_under_autocast_the_block_computes_in_autocasts_dtype(mode, kernels, dtype, monkeypatch):
    """Its matmuls (transforms, estimator, mixing) run in autocast's dtype like the
    convolutions around it, and the result is the float32 block's within that precision,
    with the CPU kernels and with the tensor operations a GPU runs."""
    if kernels == "tensor operations":
        for name in ("frame_aggregation", "frame_aggregation_backward", "modulate"):
            monkeypatch.setattr(native, name, lambda *args, **kwargs: None)
        monkeypatch.setattr(native, "modulate_usable", lambda *args, **kwargs: False)
    torch.manual_seed(0)
    block = _random_state(DTFBlock(32, 4, filter_groups=8, recompute=mode.startswith("recomputing")))
    block.train(mode != "folded inference")
    x = torch.randn(8, 32, 6, 6).to(dtype)
    recorder = _MatmulDtypes()
    with recorder, torch.autocast("cpu", dtype=dtype):
        out = block(x)
    assert out.dtype == dtype
    assert recorder.dtypes and set(recorder.dtypes) == {dtype}
    # bfloat16 keeps 8 bits (0.4%): measured 0.4-0.6% of the branch's norm; float16 11 bits
    assert _branch_error(out, block(x.float()), x) < 1.5e-2
    if mode != "folded inference":  # and the gradients of the input and every weight
        grad = torch.randn(out.shape)
        targets = [x.requires_grad_()] + list(block.parameters())
        with torch.autocast("cpu", dtype=dtype):
            got = torch.autograd.grad(block(x).float(), targets, grad)
        want = torch.autograd.grad(block(x.float()), targets, grad)
        for g, w in zip(got, want, strict=True):
            assert (g.float() - w).norm() / w.norm() < 1.5e-2


def test_float32_spectrum_keeps_the_block_in_float32_under_autocast():
    """The released code's behaviour (its FFTs ran in float32): the same numbers as the
    float32 block on the same values, rounded once to bfloat16 at the output."""
    block = _random_state(DTFBlock(32, 4, float32_spectrum=True)).eval()
    x = torch.randn(1, 32, 4, 6, 6).bfloat16()
    recorder = _MatmulDtypes()
    with recorder, torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert set(recorder.dtypes) == {torch.float32}
    torch.testing.assert_close(out, block(x.float()).bfloat16(), rtol=0, atol=0)


def test_inference_mode_then_training_works():
    block = DTFBlock(16, 4, filter_groups=4)
    x = torch.randn(1, 16, 4, 3, 3)
    with torch.inference_mode():
        block.eval()(x)
    block.train()(x.clone().requires_grad_()).sum().backward()
    assert block.alpha.grad is not None


def _reference_block(block: DTFBlock, x: Tensor) -> Tensor:
    """The block in eval mode written with complex tensors and torch.fft, step by step as the
    released code does (rfft, modulation, complex C x C linear, norm over both parts, alpha,
    irfft), independent of the block's real-DFT matmuls and of its folded inference."""
    b, c, t, h, w = x.shape
    y, corr = x.transpose(1, 2).contiguous(), None  # frames-major, as the block takes them
    if block.frame_aggregation is not None:
        y, corr = block.frame_aggregation(y)
        corr = corr if block.correlation else None
    filt = block.estimate_filter(y, corr)  # (B, C/G, M, H, W)
    spectrum = torch.fft.rfft(y.transpose(1, 2), dim=2, norm="ortho")  # (B, C, M, H, W)
    modulated = spectrum * filt.repeat_interleave(block.filter_groups, dim=1)
    weight = torch.view_as_complex(block.mixing.complex_weight.contiguous())
    mixed = torch.einsum("oi,bimhw->bomhw", weight, modulated)
    mean = block.norm.running_mean.view(1, c, 1, 1, 1)
    std = (block.norm.running_var + block.norm.eps).sqrt().view(1, c, 1, 1, 1)
    normed = torch.complex((mixed.real - mean) / std, (mixed.imag - mean) / std)
    out = torch.fft.irfft(normed * block.alpha.view(1, c, 1, 1, 1), n=t, dim=2, norm="ortho")
    return x + out + block.bias.view(1, c, 1, 1, 1)


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("variant", [dict(), dict(aggregation=False, correlation=False), dict(correlation=False)])
def test_folded_inference_equals_the_released_formulation(frames, variant):
    """Inference folds the norm and alpha into the mixing and mixes after the inverse
    transform; with every parameter and statistic random it must give the released code's
    function."""
    torch.manual_seed(frames)
    c = 16
    block = DTFBlock(c, frames, filter_groups=4, **variant).double().eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_()
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, c, frames, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        expected = _reference_block(block, x)
    torch.testing.assert_close(block(x), expected, rtol=1e-9, atol=1e-9)
    with torch.inference_mode():
        torch.testing.assert_close(block(x), expected, rtol=1e-9, atol=1e-9)


def test_frames_major_input_is_the_same_function():
    """The backbones pass (B*T, C, H, W) with a clip's frames consecutive."""
    torch.manual_seed(0)
    block = DTFBlock(16, 4, filter_groups=4)
    with torch.no_grad():
        block.alpha.normal_()
    x = torch.randn(2, 16, 4, 5, 5)
    frames = x.transpose(1, 2).reshape(8, 16, 5, 5)
    for mode in (block.eval, block.train):
        mode()
        torch.testing.assert_close(block(frames), block(x).transpose(1, 2).reshape(8, 16, 5, 5))
    with pytest.raises(ValueError, match="frames-major"):
        block(torch.randn(6, 16, 5, 5))


def _randomised(block: DTFBlock, seed: int) -> DTFBlock:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_()
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2.0)
    return block


def _released(block: DTFBlock, x: Tensor) -> Tensor:
    """The released formulation, computed without the block's inference path."""
    with torch.no_grad():
        return _reference_block(block, x)


# (batch, T, H, W) with C = 16: at the first the C x 2C mixing weight is smaller than the
# features (copied with the scale folded in), at the second larger (the features are copied)
_FOLD_SHAPES = {"weight copied": (2, 4, 4, 5), "features copied": (1, 2, 2, 2)}


def _edit_in_place(tensor: Tensor) -> None:
    """Change a parameter or buffer in place through ``.data``, as EMA updates and weight
    surgery do: autograd's version counter of the parameter does not see it."""
    if tensor.is_floating_point():
        tensor.data.mul_(1.7).add_(0.3)  # keeps the running variance positive
    else:
        tensor.data.add_(5)  # num_batches_tracked


@pytest.mark.parametrize("shape", list(_FOLD_SHAPES.values()), ids=list(_FOLD_SHAPES))
@pytest.mark.parametrize("variant", [dict(), dict(dynamic=False, aggregation=False, correlation=False)])
def test_eval_output_follows_an_edit_of_any_weight_through_data(shape, variant):
    """Edit each parameter and buffer in place through ``.data``, one at a time, between
    two eval calls: the second call must be a freshly built block loaded with the edited
    weights, and the released formulation of them."""
    c = 16
    b, t, h, w = shape
    block = _randomised(DTFBlock(c, t, filter_groups=4, **variant).double().eval(), 3)
    x = torch.randn(b, c, t, h, w, dtype=torch.float64)
    tensors = dict(block.named_parameters()) | dict(block.named_buffers())
    assert {"alpha", "bias", "mixing.complex_weight", "norm.running_mean", "norm.running_var"} <= set(tensors)
    assert ("filter_estimator.weight" if block.dynamic else "fixed_filter") in tensors
    for name, tensor in tensors.items():
        with torch.no_grad():
            before = block(x)
        _edit_in_place(tensor)
        fresh = DTFBlock(c, t, filter_groups=4, **variant).double().eval()
        fresh.load_state_dict(block.state_dict())
        with torch.no_grad():
            got, want = block(x), fresh(x)
        with torch.inference_mode():
            got_inference = block(x)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(got_inference, want, rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(got, _released(block, x), rtol=1e-9, atol=1e-9, msg=name)
        if name != "norm.num_batches_tracked":  # the only one the eval output does not use
            assert not torch.allclose(got, before), name


@pytest.mark.parametrize("shape", list(_FOLD_SHAPES.values()), ids=list(_FOLD_SHAPES))
def test_eval_mode_gradients_match_the_released_formulation(shape):
    """Eval mode with autograd on (Grad-CAM, attacks, input saliency) takes the folded path:
    its gradients of the input and of every parameter are those of the released steps."""
    c = 16
    b, t, h, w = shape
    block = _randomised(DTFBlock(c, t, filter_groups=4).double().eval(), 4)
    x = torch.randn(b, c, t, h, w, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(b, c, t, h, w, dtype=torch.float64)
    targets = [x, *block.parameters()]
    got = torch.autograd.grad(block(x), targets, grad)
    want = torch.autograd.grad(_reference_block(block, x), targets, grad)
    for name, g, r in zip(["input", *(n for n, _ in block.named_parameters())], got, want, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9, msg=name)


def test_inference_follows_every_change_of_the_weights():
    """Each way a user changes the weights (in place, ``load_state_dict``, training that
    moves the running statistics, an optimiser step, ``.to()``) is seen by the next eval call."""
    c, t = 16, 4
    block = _randomised(DTFBlock(c, t, filter_groups=4).double().eval(), 0)
    x = torch.randn(1, c, t, 8, 8, dtype=torch.float64)

    def changes():
        with torch.no_grad():
            yield "alpha in place", block.alpha.mul_(-2)
            yield "mixing weight in place", block.mixing.complex_weight.add_(0.5)
            yield "estimator weight in place", block.filter_estimator.weight.mul_(3)
            yield "bias in place", block.bias.add_(1)
        other = _randomised(DTFBlock(c, t, filter_groups=4).double(), 1)
        yield "load_state_dict", block.load_state_dict(other.state_dict())
        block.train()  # batch statistics move the running ones
        block(torch.randn(2, c, t, 8, 8, dtype=torch.float64))
        yield "running statistics", block.eval()
        optimiser = torch.optim.SGD(block.parameters(), lr=0.5)
        block.train()(x).square().sum().backward()
        optimiser.step()
        yield "an optimiser step", block.eval()

    previous = None
    for what, _ in changes():
        with torch.no_grad():
            got = block(x)
        torch.testing.assert_close(got, _released(block, x), rtol=1e-9, atol=1e-9, msg=what)
        assert previous is None or not torch.allclose(got, previous), what
        previous = got

    block.float()  # .to(): new storage, and the dtype changes
    with torch.inference_mode():
        got = block(x.float())
    torch.testing.assert_close(got, _released(block, x.float()), rtol=1e-3, atol=1e-3)


def test_a_block_built_in_inference_mode_follows_edits():
    """Inference tensors keep no version counter; edits made in inference mode are seen."""
    with torch.inference_mode():
        block = _randomised(DTFBlock(16, 4, filter_groups=4).eval(), 2)
        x = torch.randn(1, 16, 4, 6, 6)
        first = block(x)
        block.alpha.mul_(-1)
        second = block(x)
        block.alpha.mul_(-1)
        torch.testing.assert_close(block(x), first)
    assert not torch.allclose(first, second)


def test_channel_mixing_gradients_match_the_complex_product():
    """The mixing's own backward against autograd through a complex matmul (an independent
    formulation: torch's complex arithmetic, no real block matrix) and torch.autograd.gradcheck."""
    from dtfcli.models.spectral import SpectralChannelMixing, _ComplexMixing

    torch.manual_seed(0)
    c, n, length = 6, 3, 5
    mixing = SpectralChannelMixing(c).double()
    z = torch.randn(n, 2 * c, length, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(n, 2 * c, length, dtype=torch.float64)
    mixing(z).backward(grad)
    got_z, got_w = z.grad.clone(), mixing.complex_weight.grad.clone()

    zc = torch.complex(*z.detach().unflatten(1, (2, c)).unbind(1)).requires_grad_()  # (N, C, L)
    wc = torch.view_as_complex(mixing.complex_weight.detach().clone()).requires_grad_()
    out = wc @ zc
    # The real loss sum(grad * [Re; Im]) has these complex gradients (PyTorch's convention:
    # the conjugate Wirtinger derivative, d/dRe + i d/dIm).
    (out.real * grad[:, :c] + out.imag * grad[:, c:]).sum().backward()
    torch.testing.assert_close(got_z, torch.cat([zc.grad.real, zc.grad.imag], 1))
    torch.testing.assert_close(got_w, torch.view_as_real(wc.grad))
    weight = mixing.complex_weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(_ComplexMixing.apply, (z.detach().requires_grad_(), weight))


def test_recomputing_block_trains_under_autocast_and_keeps_the_input_dtype():
    """bfloat16 features in, bfloat16 out and a bfloat16 input gradient; the block computes
    in bfloat16 and its gradients, the weights' included, are the float32 block's within
    bfloat16 precision."""
    torch.manual_seed(0)
    block = DTFBlock(16, 4, filter_groups=4).train()
    with torch.no_grad():
        block.alpha.normal_()
    x = torch.randn(8, 16, 5, 5).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    assert x.grad.dtype == torch.bfloat16
    grads = {name: p.grad.clone() for name, p in block.named_parameters()}
    assert all(g.dtype == torch.float32 for g in grads.values())
    block.zero_grad()
    reference = x.detach().float().requires_grad_()
    block(reference).bfloat16().float().square().sum().backward()
    # bfloat16 keeps 8 bits: compared as the relative error of the whole gradient (it is
    # about 0.2-0.8%; elementwise, small entries next to large ones differ by more)
    pairs = [(x.grad.float(), reference.grad)] + [(grads[n], p.grad) for n, p in block.named_parameters()]
    for got, want in pairs:
        assert (got - want).norm() / want.norm() < 1.5e-2


def test_the_real_mixing_matrix_is_the_complex_product():
    """[[Wr, -Wi], [Wi, Wr]] times [Re z; Im z] is W z, with and without autograd."""
    from dtfcli.models.spectral import SpectralChannelMixing

    mixing = SpectralChannelMixing(5).double()
    z = torch.randn(5, 3, dtype=torch.complex128)
    expected = torch.view_as_complex(mixing.complex_weight.detach().contiguous()) @ z
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            matrix = mixing.real_matrix()
        assert matrix.requires_grad == grad
        out = matrix.detach() @ torch.cat([z.real, z.imag])
        torch.testing.assert_close(torch.complex(out[:5], out[5:]), expected)


def test_under_autocast_the_block_saves_its_tensors_in_the_features_precision():
    """bfloat16 features: the block keeps its input and the normalised mixing output, both
    bfloat16, (1 + 2M/T) times the input's bytes; float32 copies would be three times more."""
    block = DTFBlock(32, 4, filter_groups=4).train()
    x = torch.randn(8, 32, 6, 6).bfloat16().requires_grad_()
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        block(x)
    input_bytes = x.numel() * x.element_size()
    assert sum(storages.values()) <= input_bytes * (1 + 2 * 3 / 4) * 1.01 + 1024  # + the per-channel 1/std


def test_torch_compile_gives_the_eager_blocks_output_and_gradients():
    """torch.compile traces the block (its tensor-operation paths, the hand-written backward,
    the transforms built in the graph): the eager block's output and gradients in float32
    training and in folded inference, and within bfloat16 precision under autocast.
    ``aot_eager`` runs dynamo and AOT autograd without generating code, which keeps this fast."""
    torch.manual_seed(0)
    block = _random_state(DTFBlock(32, 4, filter_groups=8))
    compiled = torch.compile(block, backend="aot_eager")
    x = torch.randn(8, 32, 6, 6)
    for amp, tolerance in ((False, 1e-5), (True, 2e-2)):
        features = x.bfloat16() if amp else x
        block.train()
        results = []
        for module in (block, compiled):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                out = module(features)
            results.append((out.float(), torch.autograd.grad(out.float().square().sum(), list(block.parameters()))))
        (want, want_grads), (got, got_grads) = results
        assert _branch_error(got, want, features) < tolerance
        for g, w in zip(got_grads, want_grads, strict=True):
            assert (g - w).norm() / w.norm() < tolerance
        block.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            assert _branch_error(compiled(features), block(features).float(), features) < tolerance


def test_filter_estimator_layout_is_the_documented_one():
    """docs/models.md documents the 1x1 conv's layout for anyone porting weights: input column
    ch * T + t (channel-major over (C + k^2) x T), output row j * 2M + p * M + m (filter j,
    real/imaginary p, bin m). (Channel c taking filter c // G is checked against
    `repeat_interleave` in `_reference_block`.)"""
    c, t, g, k = 8, 4, 4, 3
    bins = t // 2 + 1
    block = DTFBlock(c, t, filter_groups=g, kernel_size=k).double()
    weight = torch.zeros_like(block.filter_estimator.weight)  # (C/G * 2M, (C + k^2) T, 1, 1)
    assert weight.shape == (c // g * 2 * bins, (c + k * k) * t, 1, 1)
    j, p, m = 1, 1, 0  # a filter, the imaginary part, bin 0 (row 9; a (filter, bin, part) order reads bin 1)
    ch, frame = 5, 2  # a feature channel and frame
    weight[j * 2 * bins + p * bins + m, ch * t + frame] = 1.0
    corr_ch, corr_frame = 7, 3  # the correlation score of neighbour 7 at frame 3: channel C + 7
    weight[0, (c + corr_ch) * t + corr_frame] = 2.0
    with torch.no_grad():
        block.filter_estimator.weight.copy_(weight)
    y = torch.zeros(1, t, c, 2, 3, dtype=torch.float64)
    y[0, frame, ch] = torch.arange(6.0).view(2, 3)
    corr = torch.zeros(1, t, k * k, 2, 3, dtype=torch.float64)
    corr[0, corr_frame, corr_ch] = 1.0
    with torch.no_grad():
        filt = block.estimate_filter(y, corr)  # (B, C/G, M, H, W), complex
    want = torch.zeros(1, c // g, bins, 2, 3, dtype=torch.complex128)
    want[0, j, m] = 1j * torch.arange(6.0).view(2, 3)
    want[0, 0, 0] = 2.0  # row 0: filter 0, real part, bin 0
    torch.testing.assert_close(filt, want)
