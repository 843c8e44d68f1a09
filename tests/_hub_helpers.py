"""Shared helpers of the hub tests: tiny models, a fixed clip, logits in eval mode."""

from __future__ import annotations

import pytest
import torch

from dtfcli.models import create_model

FRAMES = 8
LABELS = ["left", "right", "towards", "away", "still"]


def tiny_model(name: str = "dtfnet_tiny", num_classes: int = len(LABELS), seed: int = 0) -> torch.nn.Module:
    """A CPU-sized model with every parameter and BN statistic random (alpha included), so
    that DTF blocks are not identities and a weight mix-up changes the logits."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes, num_frames=FRAMES)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif tensor.dim() == 1 and key.endswith("weight"):  # norm scales
                tensor.uniform_(0.8, 1.2)
            else:  # conv/linear weights, biases, running means, DTF alpha/bias
                tensor.normal_(0.0, 0.05)
    out = logits(model)
    assert torch.isfinite(out).all() and out.std() > 0, "test model must give finite, varied logits"
    return model.eval()


def clip(seed: int = 1, size: int = 32) -> torch.Tensor:
    """(1, 3, FRAMES, size, size) float clip."""
    return torch.randn(1, 3, FRAMES, size, size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits(model: torch.nn.Module, x: torch.Tensor | None = None) -> torch.Tensor:
    return model.eval()(clip() if x is None else x)


@pytest.fixture(autouse=True)
def single_threaded_torch():
    """One intra-op thread while a hub test runs (autouse in every module that imports it).

    The models here are tiny: on a busy 2-core machine torch's second thread spins and
    waits far more than it computes (measured: 0.6 s vs 0.01 s per forward of dtfnet_tiny).
    The previous setting is restored afterwards.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
