"""Frame-wise aggregation (paper eq. 6-8) against a brute-force loop, and its memory."""

from __future__ import annotations

import pytest
import torch

from dtfcli.models import DTFBlock, frame_aggregation


def brute_force_aggregation(x: torch.Tensor, k: int):
    """Direct transcription of eq. 6-8: loops over batch, frames, locations, neighbours.

    Every feature vector is taken once (``unbind``) and the outputs are stacked at the end, not
    indexed and assigned in place per location: autograd through the loops then stays linear
    in the number of locations (a select or slice assignment per location copies the whole
    tensor in backward)."""
    b_, c_, t_, h_, w_ = x.shape
    r = k // 2
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    vectors = x.permute(0, 2, 3, 4, 1).reshape(-1, c_).unbind(0)  # x[b, :, t, h, w], (b, t, h, w) row-major
    zero = torch.zeros(c_, dtype=x.dtype)

    def feature(b, t, h, w):
        return vectors[((b * t_ + t) * h_ + h) * w_ + w]

    def key(b, t, h, w):  # zero padding outside the frame
        if 0 <= h < h_ and 0 <= w < w_:
            return feature(b, t, h, w)
        return zero

    y, corr = {}, {}
    for b in range(b_):
        for h in range(h_):
            for w in range(w_):
                # frame 0 against itself (released code's convention for F_cor[0])
                corr[b, 0, h, w] = torch.stack(
                    [torch.dot(feature(b, 0, h, w), key(b, 0, h + dy, w + dx)) / c_ for dy, dx in offsets]
                )
                for t in range(t_ - 1):
                    query = feature(b, t, h, w)
                    keys = [key(b, t + 1, h + dy, w + dx) for dy, dx in offsets]
                    scores = torch.stack([torch.dot(query, kk) / c_ for kk in keys])
                    corr[b, t + 1, h, w] = scores
                    weights = torch.softmax(scores, dim=0)
                    y[b, t, h, w] = query + sum(wj * kk for wj, kk in zip(weights, keys, strict=True))
                y[b, t_ - 1, h, w] = feature(b, t_ - 1, h, w)  # the last frame has no next one: unchanged

    def assemble(values):  # {(b, t, h, w): (n,)} -> (B, n, T, H, W)
        grid = [values[b, t, h, w] for b in range(b_) for t in range(t_) for h in range(h_) for w in range(w_)]
        return torch.stack(grid).reshape(b_, t_, h_, w_, -1).permute(0, 4, 1, 2, 3)

    return assemble(y), assemble(corr)


@pytest.mark.parametrize("frames", [1, 2, 3, 5])
@pytest.mark.parametrize("k", [3, 5])
def test_aggregation_equals_brute_force(frames, k):
    x = torch.randn(2, 3, frames, 4, 5, dtype=torch.float64)
    y, corr = frame_aggregation(x, k)
    y_ref, corr_ref = brute_force_aggregation(x, k)
    torch.testing.assert_close(corr, corr_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    # the last frame has no next frame and passes through unchanged
    assert torch.equal(y[:, :, -1], x[:, :, -1])


def test_correlation_only_leaves_the_feature_unchanged():
    x = torch.randn(1, 4, 3, 5, 5, dtype=torch.float64)
    y, corr = frame_aggregation(x, 3, aggregate=False)
    _, corr_ref = brute_force_aggregation(x, 3)
    assert torch.equal(y, x)
    torch.testing.assert_close(corr, corr_ref)


@pytest.mark.parametrize("aggregate", [True, False])
@pytest.mark.parametrize("frames", [1, 2, 4])
def test_backward_matches_autograd_through_the_brute_force_loop(frames, aggregate):
    x = torch.randn(1, 3, frames, 3, 4, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(1, 3, frames, 3, 4, dtype=torch.float64)
    gc = torch.randn(1, 9, frames, 3, 4, dtype=torch.float64)

    y, corr = frame_aggregation(x, 3, aggregate)
    grad = torch.autograd.grad((y * gy).sum() + (corr * gc).sum(), x)[0]

    y_ref, corr_ref = brute_force_aggregation(x, 3)
    if not aggregate:
        y_ref = x
    grad_ref = torch.autograd.grad((y_ref * gy).sum() + (corr_ref * gc).sum(), x)[0]
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-10)


def test_gradcheck():
    x = torch.randn(2, 3, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: frame_aggregation(v, 3), (x,))


def _saved_bytes(fn, x):
    """Bytes of the distinct storages autograd saves for the backward pass of fn(x)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(storages.values())


def unfolded_aggregation(x, k=3):
    """The textbook way: unfold the k x k neighbours of the next frame (k^2 copies)."""
    b, c, t, h, w = x.shape
    nxt = x[:, :, 1:].transpose(1, 2).reshape(b * (t - 1), c, h, w)
    neigh = torch.nn.functional.unfold(nxt, k, padding=k // 2).view(b, t - 1, c, k * k, h, w)
    q = x[:, :, :-1].transpose(1, 2).unsqueeze(3)
    weights = ((q * neigh).sum(2, keepdim=True) / c).softmax(3)
    return (weights * neigh).sum(3)


def test_no_k2_unfolded_copy_is_kept_for_backward():
    c = 64
    x = torch.randn(2, c, 4, 16, 16, requires_grad=True)
    input_bytes = x.numel() * x.element_size()

    # The measurement sees a k^2-times copy when there is one.
    assert _saved_bytes(unfolded_aggregation, x) >= 9 * input_bytes * 3 / 4

    # FA alone: the input plus the k^2 softmax weights (k^2 / C of the input).
    fa = _saved_bytes(lambda v: frame_aggregation(v, 3), x)
    assert fa <= input_bytes * (1 + 9 / c) * 1.01

    # A whole DTF block in training keeps its input and the mixing's output, 2M / T times
    # the input (M = 3 bins at T = 4); the rest is recomputed in the backward pass.
    block = DTFBlock(c, 4).train()
    assert _saved_bytes(block, x) <= input_bytes * (1 + 2 * 3 / 4) * 1.01
