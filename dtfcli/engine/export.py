"""`export`: a model as a Hub folder, an ONNX graph or a `torch.export` program, verified.

    >>> from dtfcli.engine.export import export_model                      # doctest: +SKIP
    >>> report = export_model("runs/synth/final", "onnx", "exports/synth")  # doctest: +SKIP
    >>> report.parity.max_rel <= report.parity.tolerance                   # doctest: +SKIP
    True

Every export is checked before it is reported done: a real clip (one given, or one made on
the fly) is cut into the model's test views exactly as `dtf predict` cuts them, and the
exported model's logits are compared with PyTorch's on all views at once and on one view
alone (the batch axis of a graph is free, so both sizes are checked). Above the tolerance,
relative to the largest PyTorch logit, `ParityError` is raised and the files are left for
inspection.

The ONNX graph and the program take normalised float32 views; ``preprocessing.json`` beside
them says how a video becomes those views (`dtfcli.engine.exported`). The DTF block runs as
tensor operations under export (no native C or Triton kernel is recorded in a graph).

ONNX uses PyTorch's TorchScript-based exporter by default: on these networks it exports in a
tenth of the time of the torch.export-based one (docs/export.md), with the same results;
``onnx_exporter="dynamo"`` selects the other (it needs onnxscript).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dtfcli.engine.exported import (
    EXPORT_FILES,
    INPUT_NAME,
    OUTPUT_NAME,
    SPEC_NAME,
    ExportedProgramRunner,
    MissingExtraError,
    OnnxRunner,
    build_spec,
    file_sha256,
    require_onnxruntime,
)
from dtfcli.engine.inference import InferenceModel, load_inference_model, read_views

FORMATS = ("hub", "onnx", "pt2")
ONNX_EXPORTERS = ("torchscript", "dynamo")
DEFAULT_TOLERANCE = 1e-4
DEFAULT_OPSET = 17


class ExportError(ValueError):
    """The model could not be exported in this format (one line: what and why)."""


class ParityError(Exception):
    """The exported model's logits differ from PyTorch's by more than the tolerance."""

    def __init__(self, report: ExportReport):
        self.report = report
        p = report.parity
        super().__init__(
            f"{report.path}: logits differ from PyTorch's by up to {p.max_abs:.3g} ({p.max_rel:.3g} of the "
            f"logit scale {p.logit_scale:.3g}), above the tolerance {p.tolerance:g}; the files are left for inspection"
        )


@dataclass
class Parity:
    """Exported against PyTorch logits on ``views`` views of ``video``, run as batches of
    ``batches`` views. ``max_rel`` is ``max_abs`` over ``logit_scale`` (the largest |logit|)."""

    video: str
    views: int
    batches: list[int]
    max_abs: float
    max_rel: float
    logit_scale: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_rel <= self.tolerance


@dataclass
class ExportReport:
    """What `export_model` made: the file (or Hub folder), its spec, the exporter, how long
    the export and the check took, the check's result and, after ``push``, the Hub location."""

    format: str
    source: str
    path: str
    folder: str
    spec: str | None
    exporter: str
    export_seconds: float
    verify_seconds: float
    parity: Parity
    size_bytes: int
    pushed: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["parity"]["passed"] = self.parity.passed
        return out


def export_model(
    source: str | InferenceModel,
    format: str,
    out_dir: str | Path | None = None,
    *,
    video: str | Path | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    push: str | None = None,
    onnx_exporter: str = "torchscript",
    opset: int = DEFAULT_OPSET,
    token: str | None = None,
    endpoint: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export a model and check the export against PyTorch on a real clip.

    Args:
        source: anything `dtf predict --model` takes, or a loaded :class:`InferenceModel`.
        format: "hub" (the Hub-ready folder of `dtfcli.hub.save_pretrained`), "onnx"
            (``model.onnx``, free batch axis, onnxruntime) or "pt2" (``model.pt2``,
            `torch.export.save`).
        out_dir: the folder to write (default: ``<model name>-<format>`` in the current folder).
        video: the clip to check on (default: a synthetic clip made on the fly).
        tolerance: the largest allowed logit difference, relative to the largest |logit|.
        push: ``org/repo``: upload the Hub folder after the check (format "hub" only).
        onnx_exporter: "torchscript" (default) or "dynamo" (torch.export-based, needs onnxscript).
        opset: the ONNX opset (TorchScript exporter).
        token, endpoint: for ``push`` (default: the login / HF_TOKEN, HF_ENDPOINT).
        on_step: called with a short line before each step (for a progress display).

    Raises:
        ValueError: a bad format, option or video; ExportError: the exporter failed;
        MissingExtraError: onnx/onnxruntime missing; ParityError: the check failed;
        dtfcli.hub.WeightsError: the model cannot be loaded, or the push failed.
    """
    step = on_step or (lambda _line: None)
    if format not in FORMATS:
        raise ValueError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if push is not None and format != "hub":
        raise ValueError("--push uploads a Hub folder: use it with --format hub")
    if onnx_exporter not in ONNX_EXPORTERS:
        raise ValueError(f"--onnx-exporter {onnx_exporter!r}: choose torchscript or dynamo")
    if not tolerance >= 0:
        raise ValueError("--tolerance must be zero or more")
    if video is not None and not Path(video).is_file():
        raise FileNotFoundError(f"{video}: no such video file")
    if format == "onnx":
        _require_onnx(onnx_exporter)

    step("loading the model")
    engine = source if isinstance(source, InferenceModel) else load_inference_model(source, device="cpu")
    source_name = engine.info.source
    config = dict(engine.info.config)
    folder = Path(out_dir) if out_dir is not None else Path(f"{config.get('name', 'model')}-{format}")
    folder.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="dtf-export-") as tmp:
        clip = Path(video) if video is not None else synthetic_clip(Path(tmp))
        # The check runs the graph on the crops as cut; symmetric views are flips of them.
        step(f"cutting {replace(engine.spec_defaults, symmetries=()).describe()} from {clip.name}")
        raw_views, _facts = read_views(str(clip), engine.spec_defaults)
    views = engine._normalise(raw_views).contiguous()  # exactly what predict feeds the network
    reference = engine.logits(views)

    step(f"exporting to {format}")
    started = time.perf_counter()
    if format == "hub":
        target, exporter, runner = _export_hub(engine, folder)
    elif format == "onnx":
        target, exporter, runner = _export_onnx(engine, views, folder / EXPORT_FILES["onnx"], onnx_exporter, opset)
    else:
        target, exporter, runner = _export_pt2(engine, views, folder / EXPORT_FILES["pt2"])
    export_seconds = time.perf_counter() - started

    step("checking the export against PyTorch")
    started = time.perf_counter()
    parity = _compare(runner, views, reference, str(clip if video is not None else "a synthetic clip"), tolerance)
    verify_seconds = time.perf_counter() - started

    spec_path = None
    if format != "hub":
        spec = build_spec(
            engine.spec_defaults, engine.labels, config, fmt=format, file_name=target.name,
            sha256=file_sha256(target), exporter=exporter,
            source={"model": source_name, "kind": engine.info.kind, "location": engine.info.location,
                    "sha256": engine.info.sha256},
        )
        spec["verification"] = {**asdict(parity), "passed": parity.passed}
        spec_path = folder / SPEC_NAME
        import json

        spec_path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in target.iterdir() if p.is_file()) if target.is_dir() else target.stat().st_size
    report = ExportReport(
        format=format, source=source_name, path=str(target), folder=str(folder),
        spec=str(spec_path) if spec_path else None, exporter=exporter, export_seconds=round(export_seconds, 3),
        verify_seconds=round(verify_seconds, 3), parity=parity, size_bytes=size,
    )
    if engine.random_weights:
        report.notes.append(f"{source_name} is an architecture without trained weights: the export predicts nothing")
    if not parity.passed:
        raise ParityError(report)
    if push is not None:
        from dtfcli.hub import push_to_hub

        step(f"pushing to hf://{push}")
        report.pushed = push_to_hub(folder, push, token=token, endpoint=endpoint)
    return report


# -- the formats --------------------------------------------------------------------------------
def _export_hub(engine: InferenceModel, folder: Path):
    from dtfcli.hub import save_pretrained

    labels = None if engine.random_weights else engine.labels
    save_pretrained(engine.model, folder, labels=labels, metrics=engine.info.metrics or None)
    reloaded = load_inference_model(str(folder), device="cpu")
    return folder, "dtfcli.hub.save_pretrained (safetensors)", reloaded.model


def _example(views: torch.Tensor) -> torch.Tensor:
    """Two views to trace with: a batch of one would let an exporter fix the batch size."""
    return views[:2] if views.shape[0] >= 2 else torch.cat([views, views])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _export_onnx(engine: InferenceModel, views: torch.Tensor, path: Path, exporter: str, opset: int):
    model = engine.model
    example = _example(views)
    options: dict[str, Any] = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    if exporter == "torchscript":
        options.update(dynamo=False, opset_version=opset,
                       dynamic_axes={INPUT_NAME: {0: "views"}, OUTPUT_NAME: {0: "views"}})
        described = f"torch.onnx.export (TorchScript-based, opset {opset})"
    else:
        options.update(dynamo=True, optimize=False, dynamic_shapes=({0: torch.export.Dim("views", min=1)},))
        described = "torch.onnx.export (torch.export-based)"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about shapes it records as constants
            torch.onnx.export(model, (example,), str(path), **options)
    except Exception as exc:
        raise ExportError(f"{engine.info.source}: the ONNX exporter failed ({_first_line(exc)})") from exc
    try:
        return path, described, OnnxRunner(path)
    except Exception as exc:  # onnxruntime refuses the graph (an operator it lacks, an opset it does not know)
        raise ExportError(f"{path}: onnxruntime cannot load the exported graph ({_first_line(exc)})") from exc


def _export_pt2(engine: InferenceModel, views: torch.Tensor, path: Path):
    model = engine.model
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, (_example(views),),
                                          dynamic_shapes=({0: torch.export.Dim("views", min=1)},))
        torch.export.save(program, str(path))
    except Exception as exc:
        raise ExportError(f"{engine.info.source}: torch.export failed ({_first_line(exc)})") from exc
    return path, "torch.export.export (batch axis free)", ExportedProgramRunner(path)


def _require_onnx(exporter: str) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingExtraError("the ONNX format needs onnx and onnxruntime: pip install 'dtfcli[export]'") from None
    require_onnxruntime()
    if exporter == "dynamo":
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise MissingExtraError(
                "--onnx-exporter dynamo needs onnxscript: pip install 'dtfcli[export]'"
            ) from None


# -- the check ----------------------------------------------------------------------------------
def _compare(runner, views: torch.Tensor, reference: torch.Tensor, video: str, tolerance: float) -> Parity:
    """The largest logit difference over all views in one batch and the first view alone."""
    batches = [views.shape[0], 1] if views.shape[0] > 1 else [1]
    worst = 0.0
    with torch.inference_mode():
        for size in batches:
            out = runner(views[:size]).float().cpu()
            if out.shape != reference[:size].shape:
                raise ExportError(f"the export returns logits of shape {tuple(out.shape)} for "
                                  f"{size} views, PyTorch {tuple(reference[:size].shape)}")
            if not torch.isfinite(out).all():
                worst = float("inf")
                break
            worst = max(worst, float((out - reference[:size]).abs().max()))
    scale = float(reference.abs().max())
    return Parity(video=video, views=int(views.shape[0]), batches=batches, max_abs=worst,
                  max_rel=worst / max(scale, 1e-12), logit_scale=scale, tolerance=float(tolerance))


def synthetic_clip(folder: Path) -> Path:
    """A short synthetic clip (dtfcli.data.synth: a moving object over a textured background,
    H.264), the default video of the check: always at hand, and real decoded frames."""
    from dtfcli.data.synth import encode_video, render_video

    clip = render_video(0, np.random.default_rng(0), min_side=96, max_side=128, codecs=("h264",))
    path = folder / "check.mp4"
    encode_video(path, clip.frames, clip.fps, "h264")
    return path
