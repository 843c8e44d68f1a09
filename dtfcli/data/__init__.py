"""Video data: decoding, sampling, transforms, dataset layouts, synthetic motion data.

Knows files and frames only (never imports dtfcli.models, dtfcli.engine or dtfcli.cli).
Clip convention: readers give uint8 (T, H, W, C); transforms give float (C, T, H, W),
ImageNet-normalised; batches are (B, C, T, H, W).  See docs/data.md.

Names are imported lazily so that ``import dtfcli.data`` stays cheap (torchvision's
transforms are only loaded when used).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "open_video": "video", "VideoReader": "video", "VideoDecodeError": "video", "AUTO_ORDER": "video",
    "sample_dense_clip": "sampling", "sample_segments": "sampling", "sample_test_views": "sampling",
    "TestView": "sampling", "crop_boxes": "sampling",
    "TrainTransform": "transforms", "TestTransform": "transforms", "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "build_dataset": "datasets", "VideoDataset": "datasets", "AnnotationError": "datasets",
    "label_mapping": "datasets", "normalize_label": "datasets", "DATASETS": "datasets",
    "DatasetFileNotFound": "datasets", "check_video": "verify", "check_videos": "verify",
    "make_loader": "loader", "SkipCounter": "loader",
    "synthesize_dataset": "synth", "render_video": "synth", "SYNTH_CLASSES": "synth", "SYNTH_SYMMETRIES": "synth",
    "check_symmetries": "symmetry", "symmetry_group": "symmetry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dtfcli.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dtfcli.data' has no attribute {name!r}")
