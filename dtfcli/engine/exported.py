"""Exported models (ONNX, torch.export): the preprocessing spec written beside them, and the
small callables that run them for `dtf predict` / `dtf eval`.

An export folder holds the graph (``model.onnx`` or ``model.pt2``) and ``preprocessing.json``:
how a video becomes the graph's input, the class names and the model config. The graph takes
normalised float32 views (N, 3, T, S, S), RGB, ``(pixel / 255 - mean) / std``, and returns
logits (N, K); N is free. See docs/export.md for the fields.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from dtfcli.data.transforms import IMAGENET_MEAN, IMAGENET_STD

SPEC_NAME = "preprocessing.json"
#: The graph file of each format, in an export folder.
EXPORT_FILES = {"onnx": "model.onnx", "pt2": "model.pt2"}
EXPORT_SUFFIXES = {".onnx": "onnx", ".pt2": "pt2"}
SPEC_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "views", "logits"


class MissingExtraError(ValueError):
    """An optional package that this format needs is not installed (the message says which
    and how to install it)."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_spec(view_spec, labels: list[str], config: dict[str, Any], *, fmt: str, file_name: str,
               sha256: str, exporter: str, source: dict[str, Any]) -> dict[str, Any]:
    """The content of preprocessing.json for a graph exported from a model with these test
    views (`dtfcli.engine.inference.ViewSpec`), labels and config."""
    size = view_spec.crop_size
    return {
        "dtfcli_export": SPEC_VERSION,
        "format": fmt,
        "file": file_name,
        "sha256": sha256,
        "exporter": exporter,
        "torch": torch.__version__,
        "input": {"name": INPUT_NAME, "shape": ["N", 3, view_spec.clip_len, size, size], "dtype": "float32",
                  "layout": "views, RGB channels, frames, height, width"},
        "output": {"name": OUTPUT_NAME, "shape": ["N", len(labels)], "dtype": "float32", "meaning": "logits"},
        "preprocessing": {
            "frames": view_spec.clip_len,
            "sampling": view_spec.sampling,
            "frame_interval": view_spec.frame_interval,
            "clips": view_spec.clips,
            "crops": view_spec.crops,
            "short_side": size,
            "resize": "short side to short_side, aspect kept (long side truncated to an integer), "
                      "bilinear with antialiasing (torchvision resize)",
            "crop_size": size,
            "crop": "centre crop (crops=1), or left/centre/right along a landscape frame's long side "
                    "(top/centre/bottom for portrait) (crops=3)",
            "scale": "pixel / 255",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "fusion": "prob",
            "fusion_meaning": "the video's scores are the mean of the views' softmax probabilities",
            **_symmetries_entry(view_spec),
        },
        "labels": list(labels),
        "config": config,
        "source": source,
    }


def _symmetries_entry(view_spec) -> dict[str, Any]:
    if not view_spec.symmetries:
        return {}
    return {
        "symmetries": {name: list(label_map) for name, label_map in view_spec.symmetries},
        "symmetries_meaning": "each view is also scored under every combination of these transforms (reverse: "
                              "frames in reverse order; vflip: rows reversed; hflip: columns reversed); the "
                              "logits of a transformed view are mapped back with logits[:, label_map] (the "
                              "maps of the combined transforms composed) and fused with the other views",
    }


def read_spec(path: Path) -> dict[str, Any]:
    from dtfcli.hub.errors import ConfigError

    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: not a preprocessing spec (a JSON object is expected)")
    for key in ("preprocessing", "labels", "config"):
        if key not in spec:
            raise ConfigError(f"{path}: key {key!r} is missing")
    pre = spec["preprocessing"]
    for key in ("frames", "sampling", "frame_interval", "clips", "crops", "crop_size", "mean", "std"):
        if key not in pre:
            raise ConfigError(f"{path}: key 'preprocessing.{key}' is missing")
    if [round(float(v), 6) for v in pre["mean"]] != list(IMAGENET_MEAN) or \
            [round(float(v), 6) for v in pre["std"]] != list(IMAGENET_STD):
        raise ConfigError(f"{path}: preprocessing.mean/std differ from the ImageNet values dtf normalises with")
    return spec


def find_export(source: str) -> tuple[Path, Path, str] | None:
    """(graph file, spec file, format) when ``source`` names an exported model: a .onnx or
    .pt2 file with preprocessing.json beside it, or a folder holding one (and no PyTorch
    weights, which take precedence). None otherwise."""
    from dtfcli.hub.errors import ConfigError

    path = Path(source).expanduser()
    if path.is_file() and path.suffix in EXPORT_SUFFIXES:
        spec = path.parent / SPEC_NAME
        if not spec.is_file():
            raise ConfigError(f"{path}: no {SPEC_NAME} beside it (dtf export writes one with the graph)")
        return path, spec, EXPORT_SUFFIXES[path.suffix]
    if path.is_dir() and (path / SPEC_NAME).is_file() and not (path / "model.safetensors").is_file():
        spec = read_spec(path / SPEC_NAME)
        name = spec.get("file")
        if name is None or not (path / name).is_file():
            found = [f for f in EXPORT_FILES.values() if (path / f).is_file()]
            if not found:
                raise ConfigError(f"{path}: {SPEC_NAME} but no {' or '.join(EXPORT_FILES.values())}")
            name = found[0]
        graph = path / name
        if graph.suffix not in EXPORT_SUFFIXES:
            raise ConfigError(f"{path / SPEC_NAME}: 'file' must name a .onnx or .pt2 file, not {name!r}")
        return graph, path / SPEC_NAME, EXPORT_SUFFIXES[graph.suffix]
    return None


class OnnxRunner:
    """An ONNX graph in an onnxruntime session on the CPU, called like a module:
    float views (N, 3, T, S, S) -> logits (N, K)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.log_severity_level = 3  # errors only: its constant-folding notes are not the user's concern
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, views: torch.Tensor) -> torch.Tensor:
        array = views.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


class ExportedProgramRunner:
    """A `torch.export` program (.pt2), called like a module."""

    def __init__(self, path: str | Path):
        with _weights_only_loads():
            self.program = torch.export.load(str(path))
        self.module = self.program.module()

    def __call__(self, views: torch.Tensor) -> torch.Tensor:
        return self.module(views.to(torch.float32))


@contextlib.contextmanager
def _weights_only_loads():
    """torch.export.load retries a refused tensor file with full unpickling; a .pt2 from
    elsewhere must not run code, so only tensors are read (torch's documented switch)."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError(
            "the ONNX format needs onnxruntime (and onnx to export): pip install 'dtfcli[export]'"
        ) from None
    return onnxruntime


def load_exported(graph: Path, spec_path: Path, fmt: str, source: str):
    """(runner, WeightsInfo, labels, config) of an exported model; the graph's sha256 must be
    the one its spec records."""
    from dtfcli.hub import WeightsInfo
    from dtfcli.hub.errors import ChecksumError

    spec = read_spec(spec_path)
    digest = file_sha256(graph)
    if spec.get("sha256") and spec["sha256"] != digest:
        raise ChecksumError(f"{graph}: sha256 {digest[:12]}... is not the {spec['sha256'][:12]}... that "
                            f"{spec_path.name} records (the graph was replaced or damaged)")
    pre = spec["preprocessing"]
    config = dict(spec["config"])
    config.update(num_frames=int(pre["frames"]), sampling=str(pre["sampling"]),
                  frame_interval=int(pre["frame_interval"]), test_views=[int(pre["clips"]), int(pre["crops"])],
                  crop_size=int(pre["crop_size"]))
    labels = [str(x) for x in spec["labels"]]
    config["num_classes"] = len(labels)
    runner = OnnxRunner(graph) if fmt == "onnx" else ExportedProgramRunner(graph)
    info = WeightsInfo(source=source, kind=fmt, location=str(graph), sha256=digest, labels=labels, config=config,
                       metrics=config.get("metrics") or {})
    return runner, info, labels, config
