"""dtf export: ONNX and torch.export graphs that give PyTorch's logits on a real clip, at any
batch size, and that `dtf predict` runs with the same results; clear one-line failures."""

from __future__ import annotations

import json
import operator
import os
from pathlib import Path

import pytest
import torch
from _cli import dtf

from dtfcli.engine.export import export_model
from dtfcli.engine.inference import load_inference_model, read_views
from dtfcli.hub import save_pretrained
from dtfcli.models import create_model
from dtfcli.models.aggregation import _FrameAggregationFn, frame_aggregation_graph
from tests._videos import write_video

LABELS = ["left", "right", "up", "down", "still"]
SYMMETRIES = {"reverse": [1, 0, 3, 2, 4], "hflip": [1, 0, 2, 3, 4]}

try:
    import onnx
    import onnxruntime
except ImportError:  # the tests of the ONNX path need the extra
    onnx = onnxruntime = None
NO_ONNX = "onnx/onnxruntime not installed (pip install 'dtfcli[export]')"
needs_onnx = pytest.mark.skipif(onnxruntime is None, reason=NO_ONNX)


def _trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """A fresh DTF block is the identity (alpha = 0): give every block a non-zero scale and
    the norms non-trivial statistics, so that an export that dropped the block would show."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(getattr(module, "alpha", None), torch.nn.Parameter):
                module.alpha.copy_(0.2 * torch.randn(module.alpha.shape, generator=generator))
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(1 + torch.rand(module.running_var.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def tiny(work) -> Path:
    torch.manual_seed(0)
    model = _trained_looking(create_model("dtfnet_tiny", num_classes=5, num_frames=4, crop_size=32))
    model.config["symmetries"] = SYMMETRIES  # an export is tested with the same symmetric views
    return save_pretrained(model, work / "tiny", labels=LABELS)


@pytest.fixture(scope="module")
def clip(work) -> Path:
    path = work / "clip.mp4"
    write_video(path, 40, size=(48, 64))
    return path


@pytest.fixture(scope="module")
def onnx_export(tiny, clip, work):
    if onnxruntime is None:
        pytest.skip(NO_ONNX)
    return export_model(str(tiny), "onnx", work / "tiny-onnx", video=clip)


@pytest.fixture(scope="module")
def pt2_export(tiny, clip, work):
    return export_model(str(tiny), "pt2", work / "tiny-pt2", video=clip)


def _views(model_dir: Path, clip: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised views of the clip and PyTorch's logits for them (the reference)."""
    engine = load_inference_model(str(model_dir), device="cpu")
    raw, _ = read_views(str(clip), engine.spec_defaults)
    views = engine._normalise(raw[:count]).contiguous()
    return views, engine.logits(views)


def _assert_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape
    scale = float(ref.abs().max())
    assert scale > 0.1  # the logits are not all zero: the comparison means something
    assert float((out - ref).abs().max()) <= 1e-4 * scale


@needs_onnx
def test_onnx_graph_matches_pytorch_at_batch_1_and_3(onnx_export, tiny, clip):
    assert onnx_export.parity.passed and onnx_export.parity.batches == [30, 1]
    path = Path(onnx_export.path)
    graph = onnx.load(str(path))
    first_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert first_dim.dim_param and not first_dim.dim_value  # the batch axis is free
    assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx"}  # standard operators only
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    views, ref = _views(tiny, clip, 3)
    for count in (1, 3):
        out = session.run(None, {"views": views[:count].numpy()})[0]
        _assert_close(torch.from_numpy(out), ref[:count])


def test_pt2_program_matches_pytorch_at_batch_1_and_3(pt2_export, tiny, clip):
    assert pt2_export.parity.passed
    program = torch.export.load(pt2_export.path)
    # only ATen operators: no native C or Triton kernel and no Python callable was recorded
    calls = [n.target for n in program.graph.nodes if n.op == "call_function" and n.target is not operator.getitem]
    assert calls and all(isinstance(t, torch._ops.OpOverload) and t.namespace == "aten" for t in calls)
    views, ref = _views(tiny, clip, 3)
    module = program.module()
    for count in (1, 3):
        with torch.no_grad():
            _assert_close(module(views[:count]), ref[:count])


def test_export_writes_the_preprocessing_spec(pt2_export, tiny):
    spec = json.loads(Path(pt2_export.spec).read_text())
    config = json.loads((tiny / "config.json").read_text())
    pre = spec["preprocessing"]
    assert (pre["frames"], pre["crop_size"], pre["short_side"]) == (4, 32, 32)
    assert [pre["clips"], pre["crops"]] == config["test_views"]
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert spec["labels"] == LABELS and spec["file"] == "model.pt2"
    assert pre["symmetries"] == SYMMETRIES and "logits[:, label_map]" in pre["symmetries_meaning"]
    assert spec["verification"]["passed"] is True


def _top5(run_cli, clip: Path, model: str) -> list[dict]:
    proc = run_cli("predict", str(clip), "--model", model, "--json", "-j", "0")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["videos"][0]["topk"]


@pytest.fixture(scope="module")
def pytorch_top5(tiny, clip) -> list[dict]:
    proc = dtf("predict", str(clip), "--model", str(tiny), "--json", "-j", "0", check=True)
    return json.loads(proc.stdout)["videos"][0]["topk"]


@pytest.mark.parametrize("fmt, which", [pytest.param("onnx", "folder", marks=needs_onnx), ("pt2", "path")])
def test_predict_with_the_export_gives_pytorch_top5(fmt, which, request, run_cli, clip, pytorch_top5):
    """`dtf predict --model` an export folder (ONNX) or the graph file itself (pt2)."""
    report = request.getfixturevalue(f"{fmt}_export")
    got = _top5(run_cli, clip, getattr(report, which))
    assert len(got) == 5
    proc = run_cli("predict", str(clip), "--model", getattr(report, which), "--json", "-j", "0")
    assert json.loads(proc.stdout)["views"]["symmetries"] == SYMMETRIES  # 1 x 3 x 4 views, as PyTorch's
    assert [g["label"] for g in got] == [e["label"] for e in pytorch_top5]
    assert all(abs(g["prob"] - e["prob"]) <= 1e-4 for g, e in zip(got, pytorch_top5, strict=True))


def test_a_replaced_graph_is_refused(pt2_export, work, tiny):
    folder = work / "tampered"
    folder.mkdir()
    (folder / "model.pt2").write_bytes(Path(pt2_export.path).read_bytes() + b"\0")
    (folder / "preprocessing.json").write_text(Path(pt2_export.spec).read_text())
    from dtfcli.hub import ChecksumError

    with pytest.raises(ChecksumError, match="sha256"):
        load_inference_model(str(folder))


def test_graph_aggregation_equals_the_reference_path():
    """What an exported graph records for frame-wise aggregation against the reference loop
    (small frames too, where some neighbours fall wholly outside)."""

    class Ctx:
        def save_for_backward(self, *tensors):
            pass

    for shape, k, aggregate in [((2, 4, 8, 5, 6), 3, True), ((1, 1, 3, 2, 2), 3, True), ((2, 3, 4, 2, 7), 5, False)]:
        x = torch.randn(shape)
        y_ref, corr_ref = _FrameAggregationFn._forward_tensor_ops(Ctx(), x, k, aggregate)
        y, corr = frame_aggregation_graph(x, k, aggregate)
        torch.testing.assert_close(corr, corr_ref)
        torch.testing.assert_close(y, y_ref)


# -- through the CLI ------------------------------------------------------------------------------
def test_hub_export_through_the_cli_prints_the_check(run_cli, tiny, work):
    """Without --video the check runs on a synthetic clip made on the fly."""
    proc = run_cli("export", str(tiny), "--format", "hub", "--out", str(work / "hub"))
    assert proc.returncode == 0, proc.stderr
    assert "checked on a synthetic clip: 30 views" in proc.stdout
    assert "max abs diff" in proc.stdout and proc.stdout.rstrip().endswith("ok")
    assert (work / "hub" / "model.safetensors").is_file()
    assert (work / "hub" / "labels.txt").read_text().split() == LABELS


@needs_onnx
def test_swin_onnx_export_and_tolerance_exit_code(run_cli, clip, work):
    """DTF-Transformer through ONNX; with --tolerance 0 the (tiny) difference fails the check:
    exit code 4, one line, the files left for inspection and still within 1e-4."""
    torch.manual_seed(0)
    model = _trained_looking(create_model("dtf_swin_tiny", num_classes=5, num_frames=4, crop_size=32))
    folder = save_pretrained(model, work / "swin", labels=LABELS)
    out = work / "swin-onnx"
    proc = run_cli("export", str(folder), "--format", "onnx", "--out", str(out), "--video", str(clip),
                   "--tolerance", "0")
    assert proc.returncode == 4, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "above the tolerance 0" in errors[0] and "Traceback" not in proc.stderr
    assert "max rel diff" in proc.stdout
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    views, ref = _views(folder, clip, 3)
    for count in (1, 3):
        _assert_close(torch.from_numpy(session.run(None, {"views": views[:count].numpy()})[0]), ref[:count])


def _one_error_line(proc, *needles: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_format_is_one_line(run_cli, tiny):
    _one_error_line(run_cli("export", str(tiny), "--format", "tflite"), "--format 'tflite'", "hub, onnx, pt2")


def test_missing_onnx_extra_is_one_line(run_cli, tiny, work):
    blocker = work / "no-onnxruntime"
    blocker.mkdir(exist_ok=True)
    (blocker / "onnxruntime.py").write_text("raise ImportError('onnxruntime is not installed here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("export", str(tiny), "--format", "onnx", "--out", str(work / "never"), env=env)
    _one_error_line(proc, "pip install 'dtfcli[export]'")
    assert not (work / "never" / "model.onnx").exists()


def test_push_offline_is_one_line(run_cli, tiny, clip, work):
    proc = run_cli("export", str(tiny), "--format", "hub", "--out", str(work / "hub-push"), "--video", str(clip),
                   "--push", "org/dtf-tiny", env={"HF_HUB_OFFLINE": "1"})
    _one_error_line(proc, "offline")


def test_a_model_the_exporter_cannot_capture_is_one_error(work, clip):
    """A network whose control flow depends on the data cannot become a graph: the library
    says so in one line (the CLI prints it as is)."""
    from dtfcli.engine.export import ExportError
    from dtfcli.engine.inference import ViewSpec
    from dtfcli.hub import WeightsInfo

    class DataDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 5)

        def forward(self, x):
            pooled = x.mean((2, 3, 4))
            return self.head(pooled) if pooled.sum() > 0 else -self.head(pooled)

    from dtfcli.engine.inference import InferenceModel

    config = {"name": "custom", "num_classes": 5, "num_frames": 4, "crop_size": 32, "test_views": [1, 1]}
    engine = InferenceModel(DataDependent().eval(), WeightsInfo("custom", "folder", None, None, LABELS, config),
                            LABELS, torch.device("cpu"), ViewSpec(4, 4, "dense", 1, 1, 32))
    with pytest.raises(ExportError, match=r"^custom: torch.export failed \(") as info:
        export_model(engine, "pt2", work / "custom", video=clip)
    assert "\n" not in str(info.value)
