"""Weights and the Hub: load models by name, folder, file or ``hf://`` repository; save
Hub-ready folders and push them; inflate 2D ImageNet weights into video models.

Imports `dtfcli.models` only (no engine, data or CLI code).
"""

from dtfcli.hub.errors import (
    ChecksumError,
    ClassCountMismatchError,
    ConfigError,
    KeyMismatchError,
    OfflineError,
    ShapeMismatchError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    WeightsError,
    WeightsNotFoundError,
    WeightsUnavailableError,
)
from dtfcli.hub.inflate import inflate_imagenet, inflate_state_dict
from dtfcli.hub.loading import WeightsInfo, load_model
from dtfcli.hub.manifest import Manifest, find_manifest, list_manifests, read_manifest
from dtfcli.hub.saving import push_to_hub, save_pretrained

__all__ = [
    "ChecksumError", "ClassCountMismatchError", "ConfigError", "KeyMismatchError", "Manifest", "OfflineError",
    "ShapeMismatchError", "StateDictMismatchError", "UnsafeCheckpointError", "WeightsError", "WeightsInfo",
    "WeightsNotFoundError", "WeightsUnavailableError", "find_manifest", "inflate_imagenet",
    "inflate_state_dict", "list_manifests", "load_model", "push_to_hub", "read_manifest", "save_pretrained",
]
