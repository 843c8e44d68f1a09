"""`load_model`: a ready model from a registry or manifest name, a folder in Hub layout, a
single weights file, or a Hub repository.

    >>> model, info = load_model("hf://org/dtf-ssv2@v1.0")        # doctest: +SKIP
    >>> info.labels[:2], info.sha256[:12]                          # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dtfcli.hub.checkpoint import (
    LEGACY_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    config_from_metadata,
    load_into,
    read_legacy_checkpoint,
    read_safetensors,
    verify_sha256,
)
from dtfcli.hub.errors import (
    ClassCountMismatchError,
    ConfigError,
    WeightsNotFoundError,
    WeightsUnavailableError,
)
from dtfcli.hub.fetch import HF_PREFIX, download_url, hub_download, parse_hf_uri
from dtfcli.hub.manifest import Manifest, find_manifest, list_manifests, read_manifest
from dtfcli.hub.saving import CONFIG_NAME, LABELS_NAME, WEIGHTS_NAME
from dtfcli.models import create_model, get_model_spec, list_models, model_from_config


@dataclass
class WeightsInfo:
    """Where a loaded model came from.

    Attributes:
        source: the string given to `load_model`.
        kind: "hub", "folder", "safetensors", "legacy", "manifest", "url" or "registry"
            (a fresh, randomly initialised model for training).
        location: the file or ``hf://repo@commit`` the weights were read from.
        sha256: hex sha256 of the weights file (None for a fresh model).
        labels: class names in output order, or None when unknown (or the head is fresh).
        config: the model config the network was built from.
        fresh_head: the classifier was newly initialised for a different class count.
    """

    source: str
    kind: str
    location: str | None
    sha256: str | None
    labels: list[str] | None
    config: dict[str, Any]
    fresh_head: bool = False
    manifest: str | None = None
    license: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_model(
    source: str | Path,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    for_training: bool = False,
    *,
    sha256: str | None = None,
    config: dict[str, Any] | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[nn.Module, WeightsInfo]:
    """Build a model and load its weights.

    Args:
        source: a manifest or registry name; a folder with config.json + model.safetensors
            (+ labels.txt); a .safetensors file (config from its metadata or a config.json
            beside it); a legacy .pt/.pth checkpoint (read with weights_only=True); a
            manifest .json file; ``hf://org/repo[@revision]``; or an https URL (with `sha256`).
        num_classes: expected outputs. If it differs from the weights': an error for
            inference, a fresh classifier when `for_training` is true. None: the weights'.
        device: where the model is put. The model is returned in eval mode, or in train
            mode when `for_training`.
        for_training: fine-tuning (allows a new head; a bare architecture name gives a
            freshly initialised model).
        sha256: expected hex sha256 of the weights file (manifests carry their own).
        config: model config for a weights file that carries none.
        token, endpoint, cache_dir: passed to huggingface_hub for ``hf://`` sources.

    Returns:
        (model, info), see `WeightsInfo`.

    Raises:
        WeightsError subclasses (dtfcli.hub.errors), each with a one-line message.
    """
    source = str(source)
    hub = dict(token=token, endpoint=endpoint, cache_dir=cache_dir)
    want = dict(num_classes=num_classes, device=device, for_training=for_training)
    if source.startswith(HF_PREFIX):
        return _load_hub(source, sha256, hub, want)
    if source.startswith(("https://", "http://")):
        if not sha256:
            raise ConfigError(f"{source}: a URL source needs the sha256 of the file (sha256=...)")
        path = download_url(source, sha256)
        return _load_file(path, source, "url", sha256, config, None, want)
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_folder(path, source, "folder", sha256, config, want)
    if path.is_file():
        if path.name == CONFIG_NAME:  # the config of a saved folder: load the folder
            return _load_folder(path.parent, source, "folder", sha256, config, want)
        if path.suffix == ".json":
            return _load_manifest(read_manifest(path), source, hub, want)
        kind = "legacy" if path.suffix in LEGACY_SUFFIXES else "safetensors"
        return _load_file(path, source, kind, sha256, config, None, want)
    looks_like_path = any(sep in source for sep in ("/", "\\"))
    if looks_like_path or path.suffix in (*SAFETENSORS_SUFFIXES, *LEGACY_SUFFIXES, ".json"):
        raise WeightsNotFoundError(f"{source}: no such file or folder")
    manifest = find_manifest(source)
    if manifest is not None:
        return _load_manifest(manifest, source, hub, want)
    if source in list_models():
        if not for_training:
            raise WeightsUnavailableError(
                f"{source}: an architecture with no published weights; pass a folder, file or hf:// "
                "repository, or build it for training (for_training=True)"
            )
        model = create_model(source, num_classes=num_classes).to(device).train()
        return model, WeightsInfo(source, "registry", None, None, None, dict(model.config))
    known = [m.name for m in list_manifests()] + list_models()
    close = difflib.get_close_matches(source, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `dtf models`"
    raise WeightsNotFoundError(
        f"{source}: not a file, folder, hf:// repository, manifest or model name{hint}"
    )


def _load_hub(source: str, sha256: str | None, hub: dict, want: dict) -> tuple[nn.Module, WeightsInfo]:
    repo_id, revision = parse_hf_uri(source)
    config_path = hub_download(repo_id, CONFIG_NAME, revision, **hub)
    weights_path = hub_download(repo_id, WEIGHTS_NAME, revision, **hub)
    labels_path = hub_download(repo_id, LABELS_NAME, revision, optional=True, **hub)
    commit = Path(weights_path).parent.name  # huggingface_hub's cache: snapshots/<commit>/<file>
    config = _read_config(Path(config_path), source)
    labels = _read_labels(Path(labels_path)) if labels_path else config.get("labels")
    return _load_file(
        Path(weights_path), source, "hub", sha256, config, labels, want, location=f"hf://{repo_id}@{commit}"
    )


def _load_folder(folder: Path, source: str, kind: str, sha256: str | None, config: dict | None, want: dict):
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        weight_suffixes = (*SAFETENSORS_SUFFIXES, *LEGACY_SUFFIXES)
        others = sorted(p.name for p in folder.iterdir() if p.suffix in weight_suffixes)
        hint = f" (found {', '.join(others)}: pass the file itself)" if others else ""
        raise WeightsNotFoundError(f"{folder}: no {WEIGHTS_NAME} in the folder{hint}")
    if config is None and (folder / CONFIG_NAME).is_file():
        config = _read_config(folder / CONFIG_NAME, str(folder / CONFIG_NAME))
    labels = _read_labels(folder / LABELS_NAME) if (folder / LABELS_NAME).is_file() else None
    return _load_file(weights, source, kind, sha256, config, labels, want)


def _load_manifest(manifest: Manifest, source: str, hub: dict, want: dict) -> tuple[nn.Module, WeightsInfo]:
    w = manifest.weights
    if not w.published or w.location is None:
        raise WeightsUnavailableError(
            f"{manifest.name}: weights not published yet ({manifest.path}); "
            "pass a folder, file or hf:// repository instead"
        )
    if w.kind == "hf":
        model, info = _load_hub(w.location, w.sha256, hub, want)
        described = {k: manifest.model_config()[k] for k in ("name", "num_frames")}
        found = {k: info.config[k] for k in described}
        if not info.fresh_head:
            described["num_classes"], found["num_classes"] = manifest.num_classes, info.config["num_classes"]
        if described != found:
            raise ConfigError(f"{manifest.path}: describes {described} but {w.location} holds {found}")
    else:
        path = download_url(w.location, w.sha256) if w.kind == "url" else manifest.local_weights_path()
        if not path.is_file():
            raise WeightsNotFoundError(f"{manifest.path}: weights file {path} does not exist")
        labels = list(manifest.labels) if manifest.labels is not None else None
        model, info = _load_file(path, source, w.kind, w.sha256, manifest.model_config(), labels, want)
    described_config = manifest.model_config()
    for key in data_config_keys(info.fresh_head):
        if key in described_config and key not in info.config:
            info.config[key] = model.config[key] = described_config[key]
    info.kind, info.manifest, info.license = "manifest", manifest.name, manifest.license
    info.metrics = info.metrics or manifest.metrics
    if info.labels is None and manifest.labels is not None and not info.fresh_head:
        info.labels = list(manifest.labels)
    return model, info


def _load_file(
    path: Path, source: str, kind: str, sha256: str | None, config: dict | None, labels: list[str] | None,
    want: dict, location: str | None = None,
) -> tuple[nn.Module, WeightsInfo]:
    digest = verify_sha256(path, sha256, what=str(path))
    if path.suffix in LEGACY_SUFFIXES:
        state_dict, stored = read_legacy_checkpoint(path)
    else:
        state_dict, metadata = read_safetensors(path)
        stored = config_from_metadata(metadata, path)
    sibling = path.parent / CONFIG_NAME
    if config is None:
        config = stored or (_read_config(sibling, str(sibling)) if sibling.is_file() else None)
    if config is None:
        raise ConfigError(
            f"{path}: no model config (none in the file and no {CONFIG_NAME} beside it); pass config=... "
            "or save the model with dtfcli.hub.save_pretrained"
        )
    if labels is None and isinstance(config.get("labels"), list):
        labels = [str(x) for x in config["labels"]]
    model, fresh_head = _build(config, state_dict, str(path), **want)
    if labels is not None and not fresh_head and len(labels) != model.config["num_classes"]:
        classes = model.config["num_classes"]
        raise ConfigError(f"{path}: {len(labels)} labels for a model with {classes} classes")
    info = WeightsInfo(
        source=source, kind=kind, location=location or str(path), sha256=digest,
        labels=None if fresh_head else labels, config=dict(model.config), fresh_head=fresh_head,
        metrics=config.get("metrics") or {},
    )
    return model, info


def _build(config: dict, state_dict: dict, where: str, num_classes: int | None, device, for_training: bool):
    stored_classes = config.get("num_classes")
    fresh_head = num_classes is not None and num_classes != stored_classes
    if fresh_head and not for_training:
        raise ClassCountMismatchError(
            f"{where}: trained for {stored_classes} classes but {num_classes} were asked for; "
            "fine-tune it (for_training=True) to get a fresh classifier"
        )
    config = {**config, "num_classes": num_classes if fresh_head else stored_classes}
    try:
        get_model_spec(str(config.get("name")))
        model = model_from_config(config)
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: bad model config ({exc.args[0] if exc.args else exc})") from None
    load_into(model, state_dict, where, skip_head=fresh_head)
    # The test protocol travels with the weights (config.json, manifests); the symmetries
    # name classes, so a fresh classifier drops them.
    for key in data_config_keys(fresh_head):
        if config.get(key) is not None:
            model.config[key] = config[key]
    return model.to(device).train(for_training), fresh_head


#: Keys of a model config that say how it is tested (not network arguments): how its clips
#: are sampled, and the label symmetries of its classes (`dtfcli.data.symmetry`).
DATA_CONFIG_KEYS = ("sampling", "frame_interval", "symmetries")


def data_config_keys(fresh_head: bool) -> tuple[str, ...]:
    """The DATA_CONFIG_KEYS that still hold for the model: not the class symmetries once its
    classifier is replaced."""
    return tuple(k for k in DATA_CONFIG_KEYS if not (fresh_head and k == "symmetries"))


def _read_config(path: Path, where: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "name" not in config:
        raise ConfigError(f"{where}: key 'name' (the model architecture) is missing")
    return config


def _read_labels(path: Path) -> list[str]:
    """labels.txt: one class name per line, in output order."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
