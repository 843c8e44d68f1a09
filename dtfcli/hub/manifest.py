"""Model manifests: one small JSON file per named model in ``weights/`` (format in
weights/README.md and docs/weights.md).

A manifest says which architecture to build and with which options, the label set, the
input defaults (frames, crop, test views), where the weights live (a file beside the
manifest, an absolute path or ``file://`` URL, ``hf://org/repo[@revision]`` or an
``https://`` URL), their sha256, whether they are published at all, the licence and the
reported metrics.

Manifests are found in the directories of ``$DTF_WEIGHTS_PATH`` (``os.pathsep``
separated), then in the repository's ``weights/`` (a checkout or an editable install), then
in ``<prefix>/share/dtfcli/weights``, where a wheel installs the same files.
"""

from __future__ import annotations

import json
import os
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtfcli.hub.errors import ConfigError, WeightsNotFoundError
from dtfcli.models import get_model_spec

MANIFEST_VERSION = 1
REPO_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WeightsLocation:
    """Where a manifest's weights live. `location` is None when they are not published."""

    location: str | None
    sha256: str | None
    published: bool

    @property
    def kind(self) -> str:
        """"hf", "url", "file" or "none"."""
        if self.location is None:
            return "none"
        if self.location.startswith("hf://"):
            return "hf"
        if self.location.startswith(("https://", "http://")):
            return "url"
        return "file"


@dataclass(frozen=True)
class Manifest:
    name: str
    architecture: str  # registry name
    num_classes: int
    num_frames: int
    crop_size: int
    test_views: tuple[int, int]
    weights: WeightsLocation
    path: Path  # the manifest file itself
    arch_options: dict[str, Any] = field(default_factory=dict)
    label_set: str | None = None
    labels: tuple[str, ...] | None = None
    license: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics_source: str | None = None
    description: str = ""
    sampling: str | None = None  # "dense" or "segments"; None: from the label set
    frame_interval: int | None = None  # frames between a dense clip's frames
    symmetries: dict[str, list[int]] | None = None  # transform -> label map (dtfcli.data.symmetry)

    def model_config(self) -> dict[str, Any]:
        """The config `dtfcli.models.model_from_config` rebuilds the network from."""
        return {
            "name": self.architecture, "num_classes": self.num_classes, "num_frames": self.num_frames,
            "crop_size": self.crop_size, "test_views": list(self.test_views),
            "overrides": dict(self.arch_options),
            # How clips are sampled travels with the weights: Something-Something models
            # take one frame per segment of the video, Kinetics models dense clips.
            "sampling": self.sampling or ("segments" if (self.label_set or "").startswith("ssv") else "dense"),
            **({"frame_interval": self.frame_interval} if self.frame_interval else {}),
            **({"symmetries": dict(self.symmetries)} if self.symmetries else {}),
        }

    def local_weights_path(self) -> Path:
        """The weights file of a "file" location: relative paths are relative to the manifest
        and may not leave its directory."""
        loc = self.weights.location or ""
        if loc.startswith("file://"):
            return Path(loc[len("file://"):])
        path = Path(loc)
        if path.is_absolute():
            return path
        resolved = (self.path.parent / path).resolve()
        if self.path.parent.resolve() not in resolved.parents:
            raise ConfigError(f"{self.path}: weights.location {loc!r} points outside the manifest's folder")
        return resolved


def _installed_weights_dirs() -> list[Path]:
    """Where pip puts the wheel's data files (pyproject's data-files): the environment's
    prefix, or the user scheme's for ``pip install --user``."""
    dirs = []
    for scheme in (None, f"{os.name}_user"):
        try:
            data = sysconfig.get_path("data", scheme) if scheme else sysconfig.get_path("data")
        except KeyError:
            continue
        path = Path(data) / "share" / "dtfcli" / "weights"
        if path not in dirs:
            dirs.append(path)
    return dirs


def manifest_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("DTF_WEIGHTS_PATH", "").split(os.pathsep) if p]
    return [*extra, REPO_WEIGHTS_DIR, *_installed_weights_dirs()]


def list_manifests() -> list[Manifest]:
    """Every manifest on the search path (the first of a name wins), sorted by name."""
    found: dict[str, Manifest] = {}
    for d in manifest_dirs():
        for file in sorted(d.glob("*.json")) if d.is_dir() else ():
            found.setdefault(file.stem, read_manifest(file))
    return [found[k] for k in sorted(found)]


def find_manifest(name: str) -> Manifest | None:
    """The manifest called `name` on the search path, or None."""
    for d in manifest_dirs():
        file = d / f"{name}.json"
        if file.is_file():
            return read_manifest(file)
    return None


def read_manifest(path: str | Path) -> Manifest:
    """Parse and validate a manifest file; `ConfigError` names the file and the bad key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsNotFoundError(f"{path}: no such manifest") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a manifest is a JSON object")

    def need(key: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ConfigError(f"{path}: key {key!r} must be a {expected}, got {value!r}")
        return value

    version = need("manifest_version", int)
    if version > MANIFEST_VERSION:
        raise ConfigError(
            f"{path}: manifest_version {version} is newer than this dtf understands ({MANIFEST_VERSION})"
        )
    name = need("name", str)
    if name != path.stem:
        raise ConfigError(f"{path}: key 'name' ({name!r}) must equal the file name ({path.stem!r})")
    architecture = need("architecture", str)
    try:
        spec = get_model_spec(architecture)
    except KeyError as exc:
        raise ConfigError(f"{path}: key 'architecture': {exc.args[0]}") from None
    num_classes = need("num_classes", int)
    if num_classes < 1:
        raise ConfigError(f"{path}: key 'num_classes' must be positive")
    views = data.get("test_views", list(spec.test_views))
    if not (isinstance(views, list) and len(views) == 2 and all(isinstance(v, int) for v in views)):
        raise ConfigError(f"{path}: key 'test_views' must be [clips, crops]")

    weights = need("weights", dict)
    published = weights.get("published")
    location, sha256 = weights.get("location"), weights.get("sha256")
    if not isinstance(published, bool):
        raise ConfigError(f"{path}: key 'weights.published' must be true or false")
    if location is not None and not isinstance(location, str):
        raise ConfigError(f"{path}: key 'weights.location' must be a string or null")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256)):
        raise ConfigError(f"{path}: key 'weights.sha256' must be 64 lowercase hex digits")
    loc = WeightsLocation(location, sha256, published)
    if published and location is None:
        raise ConfigError(f"{path}: key 'weights.location' is required when weights.published is true")
    if published and loc.kind in ("file", "url") and sha256 is None:
        raise ConfigError(f"{path}: key 'weights.sha256' is required for a {loc.kind} location")

    labels = data.get("labels")
    if isinstance(labels, str):  # a label file beside the manifest, one name per line
        label_file = path.parent / labels
        if not label_file.is_file():
            raise ConfigError(f"{path}: key 'labels': no such file {label_file}")
        lines = label_file.read_text(encoding="utf-8").splitlines()
        labels = [line.strip() for line in lines if line.strip()]
    if labels is not None:
        if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise ConfigError(f"{path}: key 'labels' must be a list of names, a file name or null")
        if len(labels) != num_classes:
            raise ConfigError(f"{path}: key 'labels' has {len(labels)} names for num_classes={num_classes}")

    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(
        isinstance(m, dict) and all(isinstance(v, (int, float)) for v in m.values()) for m in metrics.values()
    ):
        raise ConfigError(f"{path}: key 'metrics' must map dataset -> {{metric: number}}")
    return Manifest(
        name=name, architecture=architecture, num_classes=num_classes,
        num_frames=need("num_frames", int, required=False) or spec.num_frames,
        crop_size=need("crop_size", int, required=False) or spec.crop_size,
        test_views=(views[0], views[1]), weights=loc, path=path,
        arch_options=need("arch_options", dict, required=False) or {},
        label_set=need("label_set", str, required=False),
        labels=tuple(labels) if labels is not None else None,
        license=need("license", str, required=False), metrics=metrics,
        metrics_source=need("metrics_source", str, required=False),
        description=need("description", str, required=False) or "",
        sampling=_sampling(path, data.get("sampling")),
        frame_interval=need("frame_interval", int, required=False),
        symmetries=_symmetries(path, data.get("symmetries"), num_classes),
    )


def _symmetries(path: Path, value: Any, num_classes: int) -> dict[str, list[int]] | None:
    """The shape of the key; what the maps mean is checked where the model is loaded for testing."""
    if value is None:
        return None
    if not (isinstance(value, dict) and all(isinstance(m, list) and len(m) == num_classes for m in value.values())):
        raise ConfigError(f"{path}: key 'symmetries' must map a transform to a list of {num_classes} class indices")
    return value


def _sampling(path: Path, value: Any) -> str | None:
    if value is not None and value not in ("dense", "segments"):
        raise ConfigError(f"{path}: key 'sampling' must be \"dense\" or \"segments\", got {value!r}")
    return value
