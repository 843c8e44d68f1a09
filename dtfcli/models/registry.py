"""The model registry: every architecture by name, with the defaults that travel with it.

    >>> from dtfcli.models import create_model
    >>> model = create_model("dtfnet_r50", num_classes=174, num_frames=32)
    >>> model.config["test_views"]
    (10, 3)

Each entry is a small builder registered with `@register_model`, and a `ModelSpec` with
the defaults of its input (frames, crop size, test views as clips x crops) and, where the
paper reports one, its figures. `create_model` builds the network and attaches
`model.config`: a plain dict with everything needed to build it again
(``create_model(**model.config["arch"])``-style reconstruction via `model_from_config`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from dtfcli.models.resnet import DTFNet
from dtfcli.models.swin import DTFSwin


@dataclass(frozen=True)
class PaperFigure:
    """A figure reported in the paper, and the input it is reported for."""

    gflops: float
    frames: int
    crop: int
    top1: dict[str, float] = field(default_factory=dict)  # dataset -> top-1 (%)
    source: str = ""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "dtfnet" (ResNet) or "dtfswin" (Swin)
    description: str
    builder: Callable[..., nn.Module]
    arch: dict[str, Any]  # builder keyword arguments (besides classes and frames)
    num_frames: int
    crop_size: int
    test_views: tuple[int, int]  # (clips, crops)
    num_classes: int = 400
    paper: tuple[PaperFigure, ...] = ()
    cpu_sized: bool = False  # small enough to train on a CPU


_REGISTRY: dict[str, ModelSpec] = {}

RESNET_DEPTHS = {
    "r18": ("basic", (2, 2, 2, 2)),
    "r34": ("basic", (3, 4, 6, 3)),
    "r50": ("bottleneck", (3, 4, 6, 3)),
    "r101": ("bottleneck", (3, 4, 23, 3)),
}
SWIN_SIZES = {
    "t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), stochastic_depth=0.2),
    "s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), stochastic_depth=0.3),
    "b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), stochastic_depth=0.5),
}
# Narrow CPU-sized networks for tests, the embedded default model and miniature ablations.
TINY_RESNET = dict(block="basic", layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16, filter_groups=4)
TINY_SWIN = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), stochastic_depth=0.1, filter_groups=4)

TEMPORAL_NAMES = {
    # registry prefix -> (temporal kind, short description)
    "dtfnet": ("dtf", "DTF-Net"),
    "c2d": ("none", "C2D, no temporal modelling"),
    "tsm": ("tsm", "TSM, temporal shift"),
    "tconv": ("conv1d", "DTF_1d, temporal conv"),
    "dynconv": ("dyn1d", "DTF_1d+, dynamic temporal conv"),
    "dtffixed": ("dtf_fixed", "DTF_F, fixed frequency filter"),
    "dtfnofa": ("dtf_nofa", "DTF-baseline, no FA"),
    "dtfagg": ("dtf_agg", "DTF, FA without correlation"),
    "dtfcor": ("dtf_cor", "DTF, correlation without FA"),
}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, optionally filtered by a shell-style pattern ("dtfnet_*")."""
    import fnmatch

    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `dtf models`"
        raise KeyError(f"unknown model {name!r}{hint}") from None


def create_model(name: str, num_classes: int | None = None, num_frames: int | None = None, **overrides) -> nn.Module:
    """Build a registered model with freshly initialised weights.

    Args:
        name: a registry name (`list_models()`).
        num_classes: classifier outputs (default: the entry's, 400 for Kinetics).
        num_frames: input clip length (default: the entry's; fixed once built, since the
            DTF filter estimator maps a (C + k^2) x T feature).
        **overrides: any builder argument, e.g. ``temporal_stages=(4,)`` (Table 1c),
            ``filter_groups=8``, ``dropout=0.2``, ``crop_size`` / ``test_views`` (defaults only).
    """
    spec = get_model_spec(name)
    crop_size = overrides.pop("crop_size", spec.crop_size)
    test_views = tuple(overrides.pop("test_views", spec.test_views))
    arch = {**spec.arch, **overrides}
    num_classes = spec.num_classes if num_classes is None else num_classes
    num_frames = spec.num_frames if num_frames is None else num_frames
    try:
        model = spec.builder(num_classes=num_classes, num_frames=num_frames, **arch)
    except TypeError as exc:
        raise ValueError(f"model {name!r}: {exc}") from None
    model.config = {
        "name": name,
        "family": spec.family,
        "num_classes": num_classes,
        "num_frames": num_frames,
        "crop_size": crop_size,
        "test_views": test_views,
        "overrides": _jsonable(overrides),
    }
    return model


def model_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its `model.config` (as stored in a config.json)."""
    missing = [k for k in ("name", "num_classes", "num_frames") if k not in config]
    if missing:
        raise KeyError(f"model config lacks {', '.join(missing)}")
    extra = dict(config.get("overrides", {}))
    for key in ("crop_size", "test_views"):
        if key in config:
            extra[key] = config[key]
    return create_model(config["name"], num_classes=config["num_classes"], num_frames=config["num_frames"], **extra)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# ----------------------------------------------------------------------------- entries

K400 = "kinetics400"
SSV2 = "ssv2"
_R50_PAPER = (
    PaperFigure(25, 16, 256, {K400: 77.7, SSV2: 65.5}, "Table 2/3"),
    PaperFigure(51, 32, 256, {K400: 78.9, SSV2: 66.2}, "Table 2/3"),
    PaperFigure(111, 64, 256, {K400: 80.9, SSV2: 67.1}, "Table 2/3"),
)
# The paper's R101 figures are reproduced at a 224 x 224 input, not 256: the C2D
# ResNet-101 alone already costs 42.6 GFLOPs at 16 x 256^2 (docs/models.md).
_R101_PAPER = (
    PaperFigure(38, 16, 224, {K400: 78.9, SSV2: 67.1}, "Table 2/3"),
    PaperFigure(76, 32, 224, {K400: 80.1, SSV2: 68.2}, "Table 2/3"),
    PaperFigure(152, 64, 224, {K400: 81.8, SSV2: 68.9}, "Table 2/3"),
)
_PAPER = {
    "dtfnet_r50": _R50_PAPER,
    "dtfnet_r101": _R101_PAPER,
    "c2d_r50": (PaperFigure(23, 16, 256, {K400: 72.0}, "Table 1"),),
    "tsm_r50": (PaperFigure(23, 16, 256, {K400: 74.8}, "Table 1d"),),
    "dtf_swin_b": (PaperFigure(266, 64, 224, {K400: 83.5, SSV2: 70.1}, "Table 2/3"),),
}


def _register_resnets() -> None:
    for prefix, (kind, what) in TEMPORAL_NAMES.items():
        depths = ("r18", "r34", "r50", "r101", "tiny") if prefix in ("dtfnet", "c2d", "tsm") else ("r50", "tiny")
        for depth in depths:
            if depth == "tiny":
                arch = dict(TINY_RESNET)
                frames, crop, desc = 16, 112, f"{what}, tiny ResNet (CPU)"
            else:
                block, layers = RESNET_DEPTHS[depth]
                arch = dict(block=block, layers=layers)
                frames, crop, desc = 16, 256, f"{what}, ResNet-{depth[1:]}"
            name = f"{prefix}_{depth}"
            register_model(ModelSpec(
                name=name, family="dtfnet", description=desc, builder=DTFNet,
                arch={**arch, "temporal": kind}, num_frames=frames, crop_size=crop, test_views=(10, 3),
                paper=_PAPER.get(name, ()), cpu_sized=depth == "tiny",
            ))


def _register_swins() -> None:
    for prefix, kind, what in (("dtf_swin", "dtf", "DTF-Transformer"), ("c2d_swin", "none", "2D Swin")):
        for size in ("t", "s", "b", "tiny"):
            arch = dict(TINY_SWIN) if size == "tiny" else dict(SWIN_SIZES[size])
            name = f"{prefix}_{size}"
            register_model(ModelSpec(
                name=name, family="dtfswin",
                description=f"{what}, Swin-{size.upper()}" if size != "tiny" else f"{what}, tiny Swin (CPU)",
                builder=DTFSwin, arch={**arch, "temporal": kind},
                num_frames=16 if size == "tiny" else 64, crop_size=112 if size == "tiny" else 224,
                test_views=(4, 3), paper=_PAPER.get(name, ()), cpu_sized=size == "tiny",
            ))


_register_resnets()
_register_swins()
