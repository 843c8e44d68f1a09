"""Counting the cost of a model, as the paper does: GFLOPs per view, where one
multiply-add is one FLOP (the fvcore convention of the paper's tables).

What is counted:
- every matmul, linear and convolution, from `torch.utils.flop_counter.FlopCounterMode`
  (which counts 2 per multiply-add; halved here);
- the products that are not aten matmuls and that such a counter cannot see, reported by
  the modules themselves through a ``macs(input)`` method: the frame-wise aggregation
  (C k^2 multiply-adds per location and frame for the correlation, as many for the
  aggregation), the spectrum modulation S * S_c (4 real multiply-adds per complex
  product), the per-location dynamic temporal conv of the DTF_1d+ ablation;
- complex products are counted as real arithmetic: the DTF channel mixing is a real
  (2C x 2C) matmul, 4 real multiply-adds per complex multiply-add.

Not counted, as fvcore does not count them: additions, normalisation, activations,
softmax, pooling. The Fourier transforms along time are reported on their own
(``fft_gflops``: the multiply-adds of the real-DFT matmuls that compute them) and are not
part of ``gflops``, as the paper leaves its FFTs out.

Counting runs on the meta device: no memory, no arithmetic, full-size models in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int  # multiply-adds per view, exact
    gflops: float  # multiply-adds / 1e9, per view (one clip, one crop)
    fft_gflops: float
    counted_by_modules: float  # the part of gflops reported through `macs()`

    def as_dict(self) -> dict[str, float]:
        return {
            "params": self.params,
            "gflops": round(self.gflops, 3),
            "fft_gflops": round(self.fft_gflops, 4),
        }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def measure_cost(model: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """Multiply-adds of one forward pass of `model` on an input of `input_shape`.

    The model is moved to the meta device for the count (pass one built on meta, or a
    copy you no longer need: `model.to("meta")` drops its weights).
    """
    model = model.to("meta").eval()
    extra = {"macs": 0, "transforms": 0}

    def hook(module, args, _output):
        extra["macs"] += int(module.macs(args[0]))
        if hasattr(module, "transform_macs"):
            extra["transforms"] += int(module.transform_macs(args[0]))

    handles = [m.register_forward_hook(hook) for m in model.modules() if callable(getattr(m, "macs", None))]
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.empty(input_shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    # The temporal DFTs run as matmuls, which the counter saw: move them to their own figure.
    total = counter.get_total_flops() // 2 + extra["macs"] - extra["transforms"]
    return Cost(
        params=count_parameters(model),
        macs=int(total),
        gflops=total / 1e9,
        fft_gflops=extra["transforms"] / 1e9,
        counted_by_modules=extra["macs"] / 1e9,
    )


def model_cost(name: str, num_frames: int | None = None, crop_size: int | None = None, **overrides) -> Cost:
    """Parameters and GFLOPs per view of a registered model at its default (or given) input."""
    from dtfcli.models.registry import create_model, get_model_spec

    spec = get_model_spec(name)
    frames = num_frames or spec.num_frames
    crop = crop_size or spec.crop_size
    with torch.device("meta"):
        model = create_model(name, num_frames=frames, **overrides)
    return measure_cost(model, (1, 3, frames, crop, crop))
