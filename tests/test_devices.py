"""The models on every device at hand (the CPU, and a CUDA GPU where there is one): a
training step's logits and gradients in float32 against float64 on the CPU, under
bfloat16 autocast within its precision, and channels-last. On a GPU the DTF block runs its
tensor-operation paths (the native kernels are for the CPU); the CPU variants run
everywhere, so the checks themselves are exercised in CI."""

from __future__ import annotations

import pytest
import torch

from dtfcli.models import DTFBlock, create_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _full_float32_on_gpus():
    """cuDNN's convolutions default to TF32 on recent GPUs (10 mantissa bits): the float32
    comparisons here are of float32 arithmetic."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _tiny_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    random_layers = {"stochastic_depth": 0.0} if "swin" in name else {}
    model = create_model(name, num_classes=7, dropout=0.0, **random_layers)
    with torch.no_grad():  # away from the identity start, so that every DTF weight matters
        for block in (m for m in model.modules() if isinstance(m, DTFBlock)):
            block.alpha.normal_()
            block.bias.normal_()
    return model.train()


def _step(model: torch.nn.Module, clip: torch.Tensor, amp: bool = False):
    """Logits of a training-mode forward and the gradients of every parameter, as float64 on the CPU."""
    with torch.autocast(clip.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(clip)
    loss = logits.float().logsumexp(1).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return logits.double().cpu(), [g.double().cpu() if g is not None else None for g in grads]


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def _compared(grads: list) -> list[int]:
    """Indices of the gradients to compare: those not zero in exact arithmetic. A bias that
    a batch norm follows (the DTF block's, in the ResNets) gets only rounding noise."""
    scale = max(g.norm() for g in grads if g is not None)
    return [i for i, g in enumerate(grads) if g is not None and g.norm() > 1e-6 * scale]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["dtfnet_tiny", "dtf_swin_tiny"])
def test_a_training_step_on_the_device_matches_float64(name, device):
    model = _tiny_model(name)
    clip = torch.randn(2, 3, 16, 64, 64)
    want_logits, want_grads = _step(model.double(), clip.double())
    model, clip = model.float().to(device), clip.to(device)
    names = [n for n, _ in model.named_parameters()]
    compared = _compared(want_grads)

    logits, grads = _step(model, clip)
    assert _relative(logits, want_logits) < 1e-4
    for i in compared:
        assert _relative(grads[i], want_grads[i]) < 1e-4, names[i]

    # bfloat16 autocast: the block's own precision is tested in test_dtf_block.py; through
    # a whole network in training mode the batch norms' mean subtraction amplifies rounding
    # (the 2D ResNet's gradient moves by 25% of its norm at batch 2, DTF-Net's by 36%), so
    # this checks what breaks on a device: finite values, logits, the gradient's direction.
    logits, grads = _step(model, clip, amp=True)
    assert _relative(logits, want_logits) < 5e-2
    assert all(torch.isfinite(grads[i]).all() for i in compared)
    got = torch.cat([grads[i].flatten() for i in compared])
    want = torch.cat([want_grads[i].flatten() for i in compared])
    assert torch.nn.functional.cosine_similarity(got, want, 0) > 0.9  # measured 0.94-0.99 on a CPU


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_on_the_device_gives_the_same_step(device):
    model = _tiny_model("dtfnet_tiny").to(device)
    clip = torch.randn(2, 3, 16, 64, 64, device=device)
    want_logits, want_grads = _step(model, clip)
    got_logits, got_grads = _step(model, clip.contiguous(memory_format=torch.channels_last_3d))
    assert _relative(got_logits, want_logits) < 1e-4
    for i in _compared(want_grads):
        assert _relative(got_grads[i], want_grads[i]) < 1e-3
