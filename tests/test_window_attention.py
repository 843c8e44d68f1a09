"""Swin's window attention: the native inference path is torchvision's function (the
reference: `ShiftedWindowAttention` with the same weights), and everything it does not take
goes to torchvision's code."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.swin_transformer import ShiftedWindowAttention

from dtfcli import native
from dtfcli.models import create_model
from dtfcli.models.window_attention import WindowAttention, window_layout

needs_kernel = pytest.mark.skipif(
    not native.status().startswith("native"), reason=f"native kernel not available: {native.status()}"
)


def _pair(dim, heads, window, shift, seed=0):
    """torchvision's attention and ours with the same random weights (bias table included)."""
    torch.manual_seed(seed)
    reference = ShiftedWindowAttention(dim, list(window), list(shift), heads).eval()
    with torch.no_grad():
        reference.relative_position_bias_table.normal_(std=1.0)  # large enough to matter
    ours = WindowAttention(dim, list(window), list(shift), heads).eval()
    ours.load_state_dict(reference.state_dict())
    return reference, ours


@needs_kernel
@pytest.mark.parametrize(
    "batch,height,width,dim,heads,window,shift",
    [
        (2, 14, 14, 64, 2, (7, 7), (0, 0)),  # W-MSA, head width 32 as in every Swin
        (2, 14, 14, 64, 2, (7, 7), (3, 3)),  # SW-MSA: cyclic shift and mask
        (1, 14, 21, 96, 3, (7, 7), (3, 3)),  # rectangular image, 2 x 3 windows
        (3, 7, 7, 64, 4, (7, 7), (3, 3)),  # window covers the image: torchvision drops the shift
        (1, 8, 12, 64, 1, (4, 4), (2, 2)),  # 16 tokens per window, head width 64
        (1, 16, 16, 32, 2, (8, 8), (4, 4)),  # 64 tokens per window (the most it takes), width 16
        (1, 10, 10, 32, 1, (5, 5), (2, 2)),  # 25 tokens: the last query vector partly padding
        (2, 10, 12, 64, 2, (7, 7), (3, 3)),  # sides padded with zero tokens to 14 x 14
        (1, 9, 16, 64, 2, (7, 7), (0, 0)),  # padded, not shifted
        (1, 3, 3, 32, 1, (7, 7), (3, 3)),  # padded to one window: no shift (Swin at 112 crop, stage 4)
    ],
)
def test_native_path_is_torchvision_attention(batch, height, width, dim, heads, window, shift):
    reference, ours = _pair(dim, heads, window, shift)
    x = torch.randn(batch, height, width, dim)
    with torch.inference_mode():
        fast = ours._native_forward(x)
        assert fast is not None, "the native path did not take this input"
        expected = reference(x)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # no_grad (not only inference mode) takes it too
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shift", [(0, 0), (3, 3), (3, 0)])
def test_window_layout_is_roll_then_partition(shift):
    """The token table against the operations it replaces: torch.roll by -shift, then the
    window partition of torchvision's code."""
    height, width, window = 14, 21, (7, 7)
    index, mask = window_layout(height, width, window, shift)
    image = torch.arange(height * width).view(height, width)
    rolled = torch.roll(image, shifts=(-shift[0], -shift[1]), dims=(0, 1))
    windows = rolled.view(2, 7, 3, 7).permute(0, 2, 1, 3).reshape(6, 49)
    assert torch.equal(index, windows)
    assert sorted(index.flatten().tolist()) == list(range(height * width))  # a permutation
    if shift == (0, 0):
        assert mask is None
    else:
        assert mask.shape == (6, 49, 49) and set(mask.unique().tolist()) == {-100.0, 0.0}
        assert torch.equal(mask, mask.transpose(1, 2))


def test_inputs_the_kernel_does_not_take_use_torchvision():
    reference, ours = _pair(64, 2, (7, 7), (3, 3))
    cases = {
        "float64": torch.randn(1, 14, 14, 64, dtype=torch.float64),
        "not contiguous": torch.randn(1, 64, 14, 14).permute(0, 2, 3, 1),
    }
    for what, x in cases.items():
        reference.to(x.dtype), ours.to(x.dtype)
        with torch.no_grad():
            assert ours._native_forward(x) is None, what
            torch.testing.assert_close(ours(x), reference(x))
    wide_heads = _pair(96, 2, (7, 7), (0, 0))[1]  # head width 48
    big_window = _pair(64, 2, (9, 9), (0, 0))[1]  # 81 tokens
    with torch.no_grad():
        assert wide_heads._native_forward(torch.randn(1, 14, 14, 96)) is None
        assert big_window._native_forward(torch.randn(1, 18, 18, 64)) is None


def test_training_keeps_autograd_through_torchvision():
    reference, ours = _pair(64, 2, (7, 7), (3, 3))
    ours.train()
    reference.train()
    x = torch.randn(1, 14, 14, 64, requires_grad=True)
    assert ours._native_forward(x) is None
    ours(x).square().sum().backward()
    grad_ours, x.grad = x.grad, None
    reference(x).square().sum().backward()
    torch.testing.assert_close(grad_ours, x.grad)
    torch.testing.assert_close(ours.relative_position_bias_table.grad, reference.relative_position_bias_table.grad)


@needs_kernel
def test_non_finite_scores_fall_back_to_torchvision_softmax():
    reference, ours = _pair(64, 2, (7, 7), (3, 3))
    x = torch.randn(1, 14, 14, 64)
    x[0, 3, 4, :5] = float("inf")
    with torch.no_grad():
        assert ours._native_forward(x) is None
        torch.testing.assert_close(ours(x), reference(x), equal_nan=True)


@needs_kernel
def test_dtf_swin_logits_are_the_same_with_and_without_the_kernel(monkeypatch):
    model = create_model("dtf_swin_tiny").eval()
    clip = torch.randn(1, 3, model.num_frames, 112, 112)
    taken = []
    original = WindowAttention._native_forward

    def recorded(self, x):
        out = original(self, x)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(WindowAttention, "_native_forward", recorded)
    with torch.inference_mode():
        fast = model(clip)
    assert any(taken), "no attention layer of the model took the native path"
    monkeypatch.setattr(WindowAttention, "_native_forward", lambda self, x: None)
    with torch.inference_mode():
        slow = model(clip)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
