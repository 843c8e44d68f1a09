"""Reading weight files safely, hashing them, and fitting a state dict to a model.

Only two readers exist and neither runs code from the file: safetensors (a header of
JSON plus raw tensor bytes) and, for legacy ``.pt`` / ``.pth`` checkpoints,
``torch.load(weights_only=True)``, whose restricted unpickler accepts tensors and plain
containers and refuses any other object before constructing it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from dtfcli.hub.errors import (
    ChecksumError,
    ConfigError,
    KeyMismatchError,
    ShapeMismatchError,
    UnsafeCheckpointError,
    WeightsError,
)

SAFETENSORS_SUFFIXES = (".safetensors",)
LEGACY_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
# safetensors metadata is str -> str; the model config (and labels) travel as JSON under this key,
# so a lone .safetensors file is enough to rebuild the model.
CONFIG_METADATA_KEY = "dtfcli_config"
# Keys of the classifier, which is replaced by a fresh one when fine-tuning to other classes.
HEAD_PREFIXES = ("fc.", "head.")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str | None, what: str | None = None) -> str:
    """Hash `path`; raise `ChecksumError` if `expected` (a full hex sha256, or a prefix of
    one as torchvision publishes) is given and differs. Returns the full hex digest."""
    actual = sha256_file(path)
    if expected and not actual.startswith(expected.lower()):
        raise ChecksumError(
            f"{what or path}: sha256 {actual[:16]}... does not match the published {expected[:16]}...; "
            "the file is corrupt or was tampered with (delete it and fetch it again)"
        )
    return actual


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a .safetensors file (tensors on CPU)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None


def config_from_metadata(metadata: dict[str, str], path: str | Path) -> dict[str, Any] | None:
    """The model config stored in safetensors metadata by `save_pretrained`, if any."""
    raw = metadata.get(CONFIG_METADATA_KEY)
    if raw is None:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: metadata key {CONFIG_METADATA_KEY!r} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: metadata key {CONFIG_METADATA_KEY!r} is not a JSON object")
    return config


def read_legacy_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """State dict (and config, if stored) of a torch.save checkpoint, loaded with
    ``weights_only=True``. Accepts a bare state dict or a dict holding one under
    "state_dict" / "model" / "model_state"; a "config" dict beside it is returned too.
    DistributedDataParallel's "module." prefix is removed."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused to load, it holds pickled objects other than tensors "
            f"({_first_line(exc, 160)}); convert trusted checkpoints to safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable torch checkpoint ({_first_line(exc)})") from None
    config = None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state"):
            if isinstance(obj.get(key), dict):
                config = obj.get("config") if isinstance(obj.get("config"), dict) else None
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: no state dict of tensors found in the checkpoint")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, config


def state_dict_diff(
    model: nn.Module, state_dict: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """(missing, unexpected, wrong_shape) of `state_dict` against `model.state_dict()`."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, wrong_shape


def load_into(
    model: nn.Module, state_dict: dict[str, torch.Tensor], where: str, skip_head: bool = False
) -> None:
    """Copy `state_dict` into `model` after checking it fits exactly.

    Args:
        skip_head: leave the classifier (``fc.*`` / ``head.*``) as initialised and ignore
            the file's one (fine-tuning to a different label set).

    Raises:
        KeyMismatchError: keys missing or unexpected (the message lists shape problems too).
        ShapeMismatchError: all keys present, some with the wrong shape.
    """
    if skip_head:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(HEAD_PREFIXES)}
    missing, unexpected, wrong_shape = state_dict_diff(model, state_dict)
    if skip_head:
        missing = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    if missing or unexpected:
        raise KeyMismatchError(where, missing, unexpected, wrong_shape)
    if wrong_shape:
        raise ShapeMismatchError(where, wrong_shape=wrong_shape)
    model.load_state_dict(state_dict, strict=not skip_head)


def _first_line(exc: BaseException, limit: int = 120) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
