"""Multi-view inference, shared by `dtf predict` and `dtf eval`.

A video is classified from several *views*: ``clips`` clips spread uniformly over the
video, each cut into ``crops`` square crops after scaling its short side to the crop size
(10 clips x 3 crops for DTF-Net, 4 x 3 for DTF-Transformer, as in the paper's section 4.2).
The video's scores are the views' fused:

* ``fusion="prob"`` (default): the mean of the views' softmax probabilities
  (MMAction2's ``average_clips="prob"``);
* ``fusion="logit"``: the softmax of the mean of the views' logits (MMAction2's
  ``average_clips="score"``, PySlowFast's default).

Either way the result is a probability vector that sums to one.

A model whose config lists label symmetries (``"symmetries"``, `dtfcli.data.symmetry`: the
embedded synthetic-motion model) is also shown each view mirrored and/or played backwards, and
the answers are mapped back to the classes of the untransformed view
(:func:`view_logits`); ``symmetries=False`` turns that off.

Decoding runs in DataLoader worker processes (:func:`iterate_views`), so the next videos
are decoded while the model works on the current one. Views travel between processes as
uint8 crops (a quarter of the float32 size) and are normalised on the model's device by
:meth:`InferenceModel.logits`, in chunks of ``view_batch`` views so that 30 views of a large
model fit in memory.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dtfcli.data.sampling import crop_boxes, resized_size, sample_test_views
from dtfcli.data.symmetry import check_symmetries, symmetry_group
from dtfcli.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dtfcli.data.video import VideoDecodeError, open_video

FUSIONS = ("prob", "logit")
SAMPLINGS = ("dense", "segments")
#: Frames between the frames of a dense clip when a model's config does not say.
DEFAULT_FRAME_INTERVAL = 4
#: Views per forward pass when ``view_batch`` is not given, by device type.
DEFAULT_VIEW_BATCH = {"cuda": 15, "mps": 6, "cpu": 3}


@dataclass(frozen=True)
class ViewSpec:
    """How a video becomes views.

    ``clip_len`` frames per clip, ``frame_interval`` frames apart (``sampling="dense"``,
    Kinetics-style) or one frame from each of ``clip_len`` segments of the video
    (``"segments"``, Something-Something); ``clips`` x ``crops`` views of ``crop_size``
    pixels square; each of them also transformed by every combination of ``symmetries``
    ((transform, label map) pairs, `dtfcli.data.symmetry`), if any.
    """

    clip_len: int
    frame_interval: int
    sampling: str
    clips: int
    crops: int
    crop_size: int
    symmetries: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def num_symmetric(self) -> int:
        """Views per clip and crop: 1, or 2 ** len(symmetries)."""
        return 2 ** len(self.symmetries)

    @property
    def num_views(self) -> int:
        return self.clips * self.crops * self.num_symmetric

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["symmetries"] = {name: list(label_map) for name, label_map in self.symmetries}
        return out

    def describe(self) -> str:
        how = f"{self.clip_len}x{self.frame_interval}" if self.sampling == "dense" else f"{self.clip_len} segments"
        text = f"{self.clips} clips x {self.crops} crops"
        if self.symmetries:
            text += f" x {self.num_symmetric} ({', '.join(name for name, _ in self.symmetries)})"
        return f"{text} ({how} frames, {self.crop_size}px)"


def view_spec_for(config: dict[str, Any], *, clips: int | None = None, crops: int | None = None,
                  fast: bool = False, sampling: str | None = None,
                  frame_interval: int | None = None, symmetries: bool = True) -> ViewSpec:
    """The test protocol of a model from its config (``model.config`` / config.json), with
    overrides. ``fast``: one centre clip, one centre crop, no symmetric views (before
    ``clips``/``crops``); ``symmetries=False``: none of the config's symmetric views."""
    views = config.get("test_views") or (10, 3)
    listed = check_symmetries(config.get("symmetries"), int(config.get("num_classes") or 0)) \
        if config.get("symmetries") else {}
    spec = ViewSpec(
        clip_len=int(config["num_frames"]),
        frame_interval=int(config.get("frame_interval") or DEFAULT_FRAME_INTERVAL),
        sampling=str(config.get("sampling") or "dense"),
        clips=int(views[0]), crops=int(views[1]), crop_size=int(config.get("crop_size") or 224),
        symmetries=tuple(listed.items()) if symmetries else (),
    )
    if fast:
        spec = replace(spec, clips=1, crops=1, symmetries=())
    if clips is not None:
        spec = replace(spec, clips=clips)
    if crops is not None:
        spec = replace(spec, crops=crops)
    if sampling is not None:
        spec = replace(spec, sampling=sampling)
    if frame_interval is not None:
        spec = replace(spec, frame_interval=frame_interval)
    if spec.sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {spec.sampling!r}")
    if spec.clips < 1:
        raise ValueError("clips must be at least 1")
    if spec.crops not in (1, 3):
        raise ValueError("crops must be 1 or 3")
    if spec.frame_interval < 1:
        raise ValueError("frame interval must be at least 1")
    return spec


def view_logits(model: InferenceModel, views: torch.Tensor, spec: ViewSpec,
                view_batch: int | None = None) -> torch.Tensor:
    """Logits (N x G, K) of views (N, C, T, S, S) under the spec's G symmetric transforms
    (G = 1 without symmetries), each mapped back to the classes of the untransformed view, so
    that :func:`fuse` averages them like any other views."""
    if not spec.symmetries:
        return model.logits(views, view_batch)
    # One transform at a time: logits() batches by view_batch anyway, and the copies stay small.
    return torch.cat([model.logits(views.flip(axes) if axes else views, view_batch)[:, label_map]
                      for axes, label_map in symmetry_group(dict(spec.symmetries))])


def fuse(view_logits: torch.Tensor, fusion: str = "prob") -> torch.Tensor:
    """Video scores from view logits (N, K): a probability vector (K,) that sums to one."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
    logits = view_logits.float()
    if fusion == "prob":
        return logits.softmax(dim=-1).mean(dim=0)
    return logits.mean(dim=0).softmax(dim=-1)


# -- devices and models -------------------------------------------------------------------------
def resolve_device(text: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; an
    unavailable device is an error that says what is available."""
    if isinstance(text, torch.device):
        return text
    text = str(text).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"--device {text!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {text}: no CUDA GPU is available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {text}: MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


class NoDefaultModelError(ValueError):
    """No ``--model`` was given and no default model is installed."""


#: The manifest of the embedded default model (weights/), used when no model is given.
DEFAULT_MODEL = "dtfnet_tiny_synth12"


def default_model_source() -> str:
    """The model used when none is given: the embedded default model's manifest name."""
    from dtfcli.hub.manifest import find_manifest

    manifest = find_manifest(DEFAULT_MODEL)
    if manifest is None or not manifest.weights.published:
        raise NoDefaultModelError(
            "no default model is installed; pass one with --model: a folder saved by dtf train or "
            "save_pretrained, a .safetensors file, hf://org/repo[@revision], or a model name from `dtf models`"
        )
    return DEFAULT_MODEL


@dataclass
class InferenceModel:
    """A model ready for inference: eval mode, on its device, with its labels and test views.

    ``model``: the network; ``info``: where it came from (:class:`dtfcli.hub.WeightsInfo`);
    ``labels``: class names in output order; ``spec_defaults``: its own test protocol;
    ``amp_dtype``: the autocast dtype, or None for float32.
    """

    model: nn.Module  # or a callable of the same contract (an exported graph's runner)
    info: Any
    labels: list[str]
    device: torch.device
    spec_defaults: ViewSpec
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    random_weights: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def default_view_batch(self) -> int:
        return DEFAULT_VIEW_BATCH.get(self.device.type, 3)

    def _normalise(self, views: torch.Tensor) -> torch.Tensor:
        views = views.to(self.device, non_blocking=True)
        if views.dtype == torch.uint8:
            # As TestTransform: scale to [0, 1], then the ImageNet mean and std.
            mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1, 1)
            views = (views.float() / 255.0 - mean) / std
        if self.channels_last:
            views = views.contiguous(memory_format=torch.channels_last_3d)
        return views

    def logits(self, views: torch.Tensor, view_batch: int | None = None) -> torch.Tensor:
        """Logits (N, K), float32 on the CPU, of views (N, C, T, S, S): uint8 crops (normalised
        here) or float tensors already normalised. Runs ``view_batch`` views at a time."""
        if views.ndim != 5 or views.shape[1] != 3:
            raise ValueError(f"views must be (N, 3, T, S, S), got {tuple(views.shape)}")
        step = max(1, int(view_batch or self.default_view_batch()))
        out = []
        with torch.inference_mode():
            for start in range(0, views.shape[0], step):
                chunk = self._normalise(views[start:start + step])
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    out.append(self.model(chunk).float().cpu())
        return torch.cat(out)


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16


def load_inference_model(source: str | None, *, device: str | torch.device = "auto", amp: bool = False,
                         **hub_options) -> InferenceModel:
    """Load a model for inference from anything ``dtfcli.hub.load_model`` takes; ``None`` is
    the embedded default model. A bare architecture name builds it with random weights and
    warns (useful to try the pipeline, meaningless as predictions)."""
    from dtfcli.engine.exported import find_export
    from dtfcli.hub import load_model
    from dtfcli.models import list_models

    source = default_model_source() if source is None else str(source)
    exported = find_export(source)
    if exported is not None:
        return _load_exported_model(*exported, source, device=device, amp=amp)
    device = resolve_device(device)
    random_weights = source in list_models()
    if random_weights:
        warnings.warn(f"{source}: an architecture without trained weights; its predictions are random",
                      stacklevel=2)
        model, info = load_model(source, device=device, for_training=True, **hub_options)
        model.eval()
    else:
        model, info = load_model(source, device=device, **hub_options)
    num_classes = int(info.config["num_classes"])
    labels = list(info.labels) if info.labels else [f"class {i}" for i in range(num_classes)]
    # The ResNet family runs its convolutions in NHWC when given a channels-last clip
    # (faster on GPUs, and on the benchmark CPU too: docs/models.md).
    channels_last = info.config.get("family") == "dtfnet"
    return InferenceModel(model=model, info=info, labels=labels, device=device,
                          spec_defaults=_spec_defaults(info), amp_dtype=_amp_dtype(device, amp),
                          channels_last=channels_last, random_weights=random_weights)


def _spec_defaults(info) -> ViewSpec:
    """The model's own test views; a config error names where the config came from."""
    from dtfcli.hub import ConfigError

    try:
        return view_spec_for(info.config)
    except ValueError as exc:
        raise ConfigError(f"{info.location}: {exc}") from None


def _load_exported_model(graph, spec_path, fmt: str, source: str, *, device, amp: bool) -> InferenceModel:
    """An ONNX or torch.export graph (dtfcli.engine.exported) as an InferenceModel: it takes
    normalised float32 views and runs on the CPU, without autocast."""
    from dtfcli.engine.exported import load_exported

    if str(device).strip().lower() != "auto" and resolve_device(device).type != "cpu":
        raise ValueError(f"--device {device}: exported models run on the CPU here (use --device cpu or auto)")
    if amp:
        warnings.warn(f"{graph.name}: an exported float32 graph; --amp does not apply", stacklevel=3)
    runner, info, labels, config = load_exported(graph, spec_path, fmt, source)
    return InferenceModel(model=runner, info=info, labels=labels, device=torch.device("cpu"),
                          spec_defaults=_spec_defaults(info))


# -- views of videos ----------------------------------------------------------------------------
def clip_positions(num_frames: int, spec: ViewSpec) -> list[list[int]]:
    """The ``spec.clips`` clips' frame positions on a video of ``num_frames`` frames."""
    views = sample_test_views(num_frames, clip_len=spec.clip_len, frame_interval=spec.frame_interval,
                              num_clips=spec.clips, num_crops=1, crop_size=spec.crop_size, mode=spec.sampling)
    return [list(v.positions) for v in views]


def crop_views(clip: torch.Tensor, spec: ViewSpec) -> torch.Tensor:
    """A decoded clip uint8 (T, H, W, C) -> its ``spec.crops`` crops, uint8 (crops, C, T, S, S):
    short side scaled to the crop size (antialiased, as TestTransform), then the crops along
    the long side (left/centre/right, or top/centre/bottom)."""
    from torchvision.transforms import v2

    frames = clip.permute(0, 3, 1, 2)  # (T, C, H, W), as torchvision treats a video
    height, width = frames.shape[-2:]
    size = resized_size(height, width, spec.crop_size)
    resized = v2.functional.resize(frames, list(size), antialias=True)
    out = []
    for (top, left, h, w), _ in crop_boxes(*size, spec.crop_size, spec.crops):
        out.append(resized[:, :, top:top + h, left:left + w].permute(1, 0, 2, 3))
    return torch.stack(out)


def read_views(path: str, spec: ViewSpec, *, backend: str = "auto",
               span: tuple[float, float] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Decode a video's views: uint8 (clips * crops, C, T, S, S), clip-major, and facts about
    the video (frames, fps, duration, backend). ``span``: only the frames shown between
    these two times (seconds), for windows along a long video. Raises VideoDecodeError."""
    with open_video(path, backend) as reader:
        first, count = 0, reader.num_frames
        if span is not None:
            first = reader.indices_at([span[0]])[0]
            last = reader.indices_at([max(span[0], span[1] - 1e-6)])[0]
            count = last - first + 1
        clips = [[first + p for p in clip] for clip in clip_positions(count, spec)]
        decoded = reader.read_clips(clips)
        facts = {"frames": reader.num_frames, "fps": round(reader.fps, 3), "duration": round(reader.duration, 3),
                 "backend": getattr(reader, "used_backend", reader.backend)}
    views = torch.cat([crop_views(clip, spec) for clip in decoded])
    return views, facts


class VideoViews(Dataset):
    """Videos as their test views, for a DataLoader.

    Item i: ``{"index", "path", "views": uint8 (N, C, T, S, S), "video": facts}``, or
    ``{"index", "path", "error": reason}`` for a video that cannot be read (never raises for
    one). ``spans``: an optional (start, end) in seconds per item (windows of a long video).
    """

    def __init__(self, paths: Sequence[str], spec: ViewSpec, *, backend: str = "auto",
                 spans: Sequence[tuple[float, float] | None] | None = None):
        self.paths = [str(p) for p in paths]
        self.spec, self.backend = spec, backend
        self.spans = list(spans) if spans is not None else [None] * len(self.paths)
        if len(self.spans) != len(self.paths):
            raise ValueError("spans must have one entry per path")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        item: dict[str, Any] = {"index": index, "path": path}
        try:
            views, facts = read_views(path, self.spec, backend=self.backend, span=self.spans[index])
        except VideoDecodeError as exc:
            item["error"] = exc.reason
        except (OSError, RuntimeError, ValueError, IndexError) as exc:  # a reader bug must not end a long run
            item["error"] = f"{type(exc).__name__}: {exc}"
        else:
            item["views"], item["video"] = views, facts
        return item


def _single(items: list[dict]) -> dict:
    return items[0]


def iterate_views(dataset: Dataset, *, workers: int = 2, indices: Sequence[int] | None = None,
                  prefetch: int = 2) -> Iterator[dict]:
    """The items of ``dataset`` (or of ``indices`` of it), in order, decoded in ``workers``
    processes (0: in this process) while the caller runs the model on earlier ones."""
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, list(indices))
    if len(subset) == 0:
        return iter(())
    workers = max(0, min(int(workers), len(subset)))
    extra = {"prefetch_factor": prefetch} if workers > 0 else {}
    loader = DataLoader(subset, batch_size=1, shuffle=False, num_workers=workers, collate_fn=_single,
                        pin_memory=torch.cuda.is_available(), **extra)
    return iter(loader)


def topk(probs: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` most probable classes: [{"index", "label", "prob"}], most probable first."""
    k = min(k, probs.numel())
    values, idx = probs.topk(k)
    return [{"index": int(i), "label": labels[int(i)], "prob": float(v)} for v, i in zip(values, idx, strict=True)]


def windows(duration: float, window: float, stride: float | None = None) -> list[tuple[float, float]]:
    """(start, end) seconds of windows of ``window`` seconds every ``stride`` (default: the
    window, no overlap) covering ``duration``; the last window is cut at the end."""
    if window <= 0:
        raise ValueError("window must be positive")
    stride = window if stride is None else stride
    if stride <= 0:
        raise ValueError("stride must be positive")
    count = max(1, math.ceil(max(duration - window, 0.0) / stride - 1e-9) + 1)
    out = []
    for k in range(count):
        start = k * stride
        out.append((round(start, 6), round(min(start + window, duration), 6)))
    return out
