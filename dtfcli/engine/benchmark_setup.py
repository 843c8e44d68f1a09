"""What the benchmark compares and how one step of a contender runs.

Contenders (registry models, torchvision video models, lone temporal blocks) paired into
comparisons with their targets, built fresh, and one inference or training step of
each under a device, batch, precision and layout (`RunOptions`). The timing, the reports
and the suites are in `dtfcli.engine.benchmark`; peak memory in `dtfcli.engine.benchmark_memory`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Contender:
    """One module at one input: a registry model, a torchvision video model or a lone block.

    ``name``: a registry name (``dtfnet_r50``), ``torchvision:<builder>`` (``torchvision:swin3d_b``)
    or ``block:<dtf|conv1d|tsm>``. ``shape``: one sample's input, (3, T, H, W) for models,
    (C, T, H, W) for blocks.
    """

    name: str
    shape: tuple[int, ...]

    @property
    def is_block(self) -> bool:
        return self.name.startswith("block:")

    @property
    def input_label(self) -> str:
        """``16x256`` (frames x crop) for a model, ``C64 T4 64x64`` for a block."""
        if self.is_block:
            return f"C{self.shape[0]} T{self.shape[1]} {self.shape[2]}x{self.shape[3]}"
        return f"{self.shape[1]}x{self.shape[-1]}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.input_label}"


@dataclass(frozen=True)
class Target:
    """A performance target: the candidate/baseline ratio of ``metric`` must be ``op`` ``value``."""

    metric: str  # "throughput" (candidate / baseline clips/s) or "memory" (candidate / baseline MiB)
    op: str  # ">=" or "<="
    value: float
    devices: tuple[str, ...] = ("cpu", "cuda")

    def check(self, measured: float | None) -> bool | None:
        if measured is None:
            return None
        return measured >= self.value if self.op == ">=" else measured <= self.value


@dataclass(frozen=True)
class Comparison:
    group: str
    candidate: Contender
    baseline: Contender
    targets: dict[str, tuple[Target, ...]] = field(default_factory=dict)  # suite -> targets
    proxy: bool = False  # targets stated for the full-size models, checked here on a small one
    suites: tuple[str, ...] = ("inference", "train")


INFER_R50 = Target("throughput", ">=", 0.92)
TRAIN_R50 = (Target("throughput", ">=", 0.90), Target("memory", "<=", 1.25))
INFER_SWIN3D = Target("throughput", ">=", 1.5, devices=("cpu",))


def model_comparisons(quick: bool = False, device_type: str = "cpu") -> list[Comparison]:
    """The model pairs compared: full size, or tiny models at small inputs (``quick``)."""
    r50_targets = {"inference": (INFER_R50,), "train": TRAIN_R50}
    if quick:
        tiny = (3, 8, 64, 64)
        return [
            Comparison("tiny ResNet", Contender("dtfnet_tiny", tiny), Contender("c2d_tiny", tiny), r50_targets, True),
            Comparison("tiny ResNet", Contender("dtfnet_tiny", tiny), Contender("tsm_tiny", tiny)),
            # Inference only: a quick run stays well under a minute on two CPU cores.
            Comparison(
                "tiny Swin", Contender("dtf_swin_tiny", tiny), Contender("c2d_swin_tiny", tiny), suites=("inference",)
            ),
        ]
    r50, swin64, swin32 = (3, 16, 256, 256), (3, 64, 224, 224), (3, 32, 224, 224)
    tiny = (3, 16, 112, 112)
    # Swin-B at 64 frames and R(2+1)D-18 at 16 x 256 train at well over 10 s a step on a
    # CPU (Swin-B with tens of GiB): their training is compared on a GPU only.
    heavy_suites = ("inference", "train") if device_type == "cuda" else ("inference",)
    return [
        Comparison("R50 16x256", Contender("dtfnet_r50", r50), Contender("c2d_r50", r50), r50_targets),
        Comparison("R50 16x256", Contender("dtfnet_r50", r50), Contender("tsm_r50", r50)),
        Comparison(
            "R50 16x256", Contender("dtfnet_r50", r50), Contender("torchvision:r2plus1d_18", r50), suites=heavy_suites
        ),
        Comparison(
            "Swin-B, 16 frames inside",
            Contender("dtf_swin_b", swin64),
            Contender("c2d_swin_b", swin64),
            suites=heavy_suites,
        ),
        # Video Swin's patch is 2 x 4 x 4, DTF-Transformer's 4 x 4 x 4: 32 and 64 input frames
        # are both 16 inside the network.
        Comparison(
            "Swin-B, 16 frames inside",
            Contender("dtf_swin_b", swin64),
            Contender("torchvision:swin3d_b", swin32),
            {"inference": (INFER_SWIN3D,)},
            suites=heavy_suites,
        ),
        Comparison("tiny ResNet", Contender("dtfnet_tiny", tiny), Contender("c2d_tiny", tiny)),
        Comparison("tiny ResNet", Contender("dtfnet_tiny", tiny), Contender("tsm_tiny", tiny)),
        Comparison("tiny Swin", Contender("dtf_swin_tiny", tiny), Contender("c2d_swin_tiny", tiny)),
    ]


def block_comparisons(quick: bool = False, amp: bool = False) -> list[Comparison]:
    """The DTF block vs a temporal conv and TSM at the layer shapes of DTF-Net R50 (16 frames, 256);
    under autocast (``amp``) also vs itself with ``float32_spectrum=True``, the released code's
    float32 path."""
    shapes = (
        [(16, 4, 16, 16), (64, 4, 8, 8)]
        if quick
        else [(64, 4, 64, 64), (128, 4, 32, 32), (256, 4, 16, 16), (512, 4, 8, 8)]
    )
    out = []
    for shape in shapes:
        group = f"block C={shape[0]} T={shape[1]} {shape[2]}x{shape[3]}"
        for baseline in ("conv1d", "tsm") + (("dtf-float32-spectrum",) if amp else ()):
            out.append(Comparison(group, Contender("block:dtf", shape), Contender(f"block:{baseline}", shape)))
    return out


def build_module(contender: Contender, num_classes: int = 400) -> nn.Module:
    """A freshly initialised module for a contender (random weights: speed does not depend on them)."""
    name, shape = contender.name, contender.shape
    if contender.is_block:
        from dtfcli.models import DTFBlock, TemporalConv, TemporalShift

        kind, (channels, frames) = name.split(":", 1)[1], shape[:2]
        builders = {
            "dtf": lambda: DTFBlock(channels, frames),
            "dtf-float32-spectrum": lambda: DTFBlock(channels, frames, float32_spectrum=True),
            "conv1d": lambda: TemporalConv(channels),
            "tsm": lambda: TemporalShift(),
        }
        if kind not in builders:
            raise ValueError(f"unknown block {kind!r}; choose one of {', '.join(builders)}")
        return builders[kind]()
    if name.startswith("torchvision:"):
        import torchvision.models.video as tv_video

        builder = getattr(tv_video, name.split(":", 1)[1], None)
        if builder is None:
            raise ValueError(f"torchvision.models.video has no model {name.split(':', 1)[1]!r}")
        return builder(weights=None, num_classes=num_classes)
    from dtfcli.models import create_model

    return create_model(name, num_classes=num_classes, num_frames=shape[1], crop_size=shape[-1])


@functools.cache
def contender_gflops(contender: Contender) -> float | None:
    """GFLOPs per view (multiply-adds, counted on the meta device), None where it cannot be counted."""
    from dtfcli.models import measure_cost

    try:
        with torch.device("meta"):
            module = build_module(contender)
        return round(measure_cost(module, (1, *contender.shape)).gflops, 2)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):  # not traceable on meta: no figure
        return None


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available on this machine (use cpu or auto)")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda[:N]")
    return torch.device(device)


@dataclass
class RunOptions:
    device: torch.device
    batch: int
    iters: int = 5
    warmup: int = 1
    amp_dtype: torch.dtype | None = None  # e.g. torch.bfloat16 on a GPU
    channels_last: bool = False
    compile: bool = False
    parallel_memory_probes: bool = False  # CPU: measure the contenders' memory at the same time

    def describe(self) -> dict:
        return {
            "device": str(self.device),
            "batch": self.batch,
            "iters": self.iters,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "float32",
            "channels_last": self.channels_last,
            "compile": self.compile,
        }


def prepare(contender: Contender, opts: RunOptions, train: bool) -> tuple[nn.Module, torch.Tensor]:
    module = build_module(contender).to(opts.device).train(train)
    x = torch.randn(opts.batch, *contender.shape, device=opts.device)
    if opts.channels_last:
        # Only the 5-D weights (3D convs): `module.to(memory_format=...)` refuses the 2-D/4-D
        # ones that DTF blocks and heads hold.
        for p in module.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    if train and contender.is_block:
        x.requires_grad_(True)  # a lone block: let the gradient reach its input, as inside a network
    if opts.compile:
        module = torch.compile(module)
    return module, x


def autocast(opts: RunOptions):
    if opts.amp_dtype is None:
        return nullcontext()
    return torch.autocast(opts.device.type, dtype=opts.amp_dtype)


def inference_step(module: nn.Module, x: torch.Tensor, opts: RunOptions) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), autocast(opts):
            module(x)

    return step


def training_step(module: nn.Module, x: torch.Tensor, opts: RunOptions) -> Callable[[], None]:
    """One SGD step (momentum 0.9, as the paper's recipe) on random labels; blocks use a mean-square loss."""
    optimiser = torch.optim.SGD(
        [p for p in module.parameters() if p.requires_grad] or [torch.zeros(1)], lr=1e-3, momentum=0.9
    )
    labels = torch.randint(0, 400, (x.shape[0],), device=x.device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        x.grad = None  # a lone block's input gradient: do not accumulate it over steps
        with autocast(opts):
            out = module(x)
        loss = nn.functional.cross_entropy(out.float(), labels) if out.dim() == 2 else out.float().square().mean()
        loss.backward()
        optimiser.step()

    return step
