"""ImageNet initialisation: 2D torchvision weights inflated into a video model.

- a 2D kernel (O, I, kh, kw) becomes (O, I, 1, kh, kw) for the 1 x k x k convs;
- a kernel with a temporal extent T > 1 (the stem / patch embedding, T = early_stride)
  gets the 2D kernel at temporal index T // 2 and zeros elsewhere, as the authors'
  released code does, so the inflated model sees frames T//2, T + T//2, ... exactly as the
  2D network would;
- every other tensor (norms, attention, MLPs, biases) is copied as is;
- temporal modules (``*.temporal*``) keep their identity start and the classifier
  (``fc`` / ``head``) stays freshly initialised (ImageNet's 1000 classes are not the video
  label set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dtfcli.hub.checkpoint import (
    HEAD_PREFIXES,
    LEGACY_SUFFIXES,
    read_legacy_checkpoint,
    read_safetensors,
    verify_sha256,
)
from dtfcli.hub.errors import ConfigError, KeyMismatchError, ShapeMismatchError, WeightsNotFoundError
from dtfcli.hub.fetch import download_url

# registry depth/size suffix -> torchvision weights enum (the ImageNet-1k weights of the paper's era)
TORCHVISION_WEIGHTS = {
    "r18": "ResNet18_Weights.IMAGENET1K_V1",
    "r34": "ResNet34_Weights.IMAGENET1K_V1",
    "r50": "ResNet50_Weights.IMAGENET1K_V1",
    "r101": "ResNet101_Weights.IMAGENET1K_V1",
    "t": "Swin_T_Weights.IMAGENET1K_V1",
    "s": "Swin_S_Weights.IMAGENET1K_V1",
    "b": "Swin_B_Weights.IMAGENET1K_V1",
}


def is_temporal_key(key: str) -> bool:
    return any(part.startswith("temporal") for part in key.split("."))


def torchvision_weights_name(model: nn.Module) -> str:
    """The torchvision weights enum ("ResNet50_Weights.IMAGENET1K_V1", ...) matching `model`."""
    name = str(getattr(model, "config", {}).get("name", ""))
    suffix = name.rsplit("_", 1)[-1]
    if suffix not in TORCHVISION_WEIGHTS:
        raise ConfigError(
            f"{name or type(model).__name__}: torchvision has no ImageNet weights of this size; "
            "pass a 2D state dict file whose shapes fit (inflate_imagenet(model, source=PATH))"
        )
    return TORCHVISION_WEIGHTS[suffix]


def fetch_torchvision_weights(weights_name: str) -> Path:
    """Local path of a torchvision weights file, downloaded into torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``, where torchvision itself keeps them) if needed, and
    checked against the sha256 prefix torchvision publishes in the file name."""
    import torch.hub
    import torchvision.models

    try:
        url = torchvision.models.get_weight(weights_name).url
    except (ValueError, KeyError, AttributeError) as exc:
        raise WeightsNotFoundError(f"{weights_name}: not a torchvision weights name ({exc})") from None
    match = torch.hub.HASH_REGEX.search(url.rsplit("/", 1)[-1])
    if match is None:
        raise ConfigError(f"{url}: the file name carries no sha256 prefix to check it against")
    return download_url(url, match.group(1), Path(torch.hub.get_dir()) / "checkpoints", what=weights_name)


def read_2d_state_dict(source: str | Path, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """A 2D state dict from a .safetensors or (weights_only) .pth/.pt file."""
    path = Path(source)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: no such file")
    verify_sha256(path, sha256, what=str(path))
    if path.suffix in LEGACY_SUFFIXES:
        return read_legacy_checkpoint(path)[0], str(path)
    return read_safetensors(path)[0], str(path)


def inflate_state_dict(
    model: nn.Module, state_dict_2d: dict[str, torch.Tensor], where: str = "2D weights"
) -> dict[str, torch.Tensor]:
    """`model`'s state dict with every tensor of `state_dict_2d` inflated into it (see the
    module docstring). Temporal modules and the classifier keep the model's values.

    Raises:
        KeyMismatchError: a non-temporal model key is missing from the 2D weights, or the
            2D weights have keys the model lacks.
        ShapeMismatchError: a tensor cannot be inflated to the model's shape.
    """
    target = model.state_dict()
    out = dict(target)
    kept_by_design = {k for k in target if is_temporal_key(k) or k.startswith(HEAD_PREFIXES)}
    missing = [k for k in target if k not in state_dict_2d and k not in kept_by_design]
    unexpected = [k for k in state_dict_2d if k not in target and not k.startswith(HEAD_PREFIXES)]
    wrong_shape = []
    for key, value in state_dict_2d.items():
        if key not in target or key.startswith(HEAD_PREFIXES):
            continue
        want = target[key]
        if value.shape == want.shape:
            out[key] = value.to(want.dtype).clone()
        elif want.dim() == 5 and value.dim() == 4 and want.shape[:2] + want.shape[3:] == value.shape:
            kernel = torch.zeros_like(want)
            kernel[:, :, want.shape[2] // 2] = value.to(want.dtype)  # centre slice, zeros around it
            out[key] = kernel
        else:
            wrong_shape.append((key, tuple(value.shape), tuple(want.shape)))
    if missing or unexpected:
        raise KeyMismatchError(where, missing, unexpected, wrong_shape)
    if wrong_shape:
        raise ShapeMismatchError(where, wrong_shape=wrong_shape)
    return out


def inflate_imagenet(
    model: nn.Module, source: str | Path = "torchvision", sha256: str | None = None
) -> dict[str, Any]:
    """Initialise a video model from 2D ImageNet weights, in place.

    Args:
        model: a DTF-Net or DTF-Transformer from `dtfcli.models.create_model`.
        source: "torchvision" (the weights matching the model's size, see
            `TORCHVISION_WEIGHTS`), "torchvision:<Enum>.<NAME>" (e.g.
            "torchvision:ResNet50_Weights.IMAGENET1K_V2"), or a local .pth/.safetensors file
            with a 2D torchvision-style state dict.
        sha256: expected sha256 of a local file.

    Returns:
        {"source", "loaded": n tensors from the 2D weights, "kept": keys left at their
        initial values (temporal modules, classifier)}.
    """
    source = str(source)
    if source == "torchvision" or source.startswith("torchvision:"):
        name = source.partition(":")[2] or torchvision_weights_name(model)
        state_dict_2d, where = read_legacy_checkpoint(fetch_torchvision_weights(name))[0], name
    else:
        state_dict_2d, where = read_2d_state_dict(source, sha256)
    inflated = inflate_state_dict(model, state_dict_2d, where)
    model.load_state_dict(inflated)
    kept = [k for k in inflated if k not in state_dict_2d or k.startswith(HEAD_PREFIXES)]
    return {"source": where, "loaded": len(inflated) - len(kept), "kept": kept}
