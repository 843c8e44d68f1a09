"""Symmetric test views: a clip mirrored or played backwards is a clip of a known class, so a
model with label symmetries in its config is also shown those views and their answers are
mapped back (dtfcli.data.symmetry, dtfcli.engine.inference.view_logits)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _videos import write_video
from torch import nn

from dtfcli.data import SYNTH_CLASSES, SYNTH_SYMMETRIES, TestTransform, open_video, sample_test_views
from dtfcli.data.symmetry import check_symmetries
from dtfcli.engine.inference import InferenceModel, view_logits, view_spec_for
from dtfcli.hub import ConfigError, load_model, save_pretrained
from dtfcli.models import create_model

REPO = Path(__file__).resolve().parents[1]
LEFT_TO_RIGHT, RIGHT_TO_LEFT, UP, DOWN = 0, 1, 2, 3
CLOCKWISE, COUNTERCLOCKWISE = 6, 7


class MotionOracle(nn.Module):
    """Reads a bright dot's motion off the frames, with no learning: its centroid's shift from
    the first to the last frame gives the four translation classes (image y grows downwards),
    the signed area it sweeps around the frame's centre the two turns (positive: clockwise on
    the screen)."""

    def forward(self, views: torch.Tensor) -> torch.Tensor:  # (N, C, T, H, W), normalised
        light = views.mean(1)
        light = light - light.amin(dim=(2, 3), keepdim=True)
        height, width = light.shape[-2:]
        ys = torch.arange(height, dtype=light.dtype).view(1, 1, -1, 1) - (height - 1) / 2
        xs = torch.arange(width, dtype=light.dtype).view(1, 1, 1, -1) - (width - 1) / 2
        mass = light.sum(dim=(2, 3))
        cx, cy = (light * xs).sum(dim=(2, 3)) / mass, (light * ys).sum(dim=(2, 3)) / mass  # (N, T)
        dx, dy = cx[:, -1] - cx[:, 0], cy[:, -1] - cy[:, 0]
        swept = (cx[:, :-1] * cy[:, 1:] - cy[:, :-1] * cx[:, 1:]).sum(1)
        logits = torch.zeros(views.shape[0], len(SYNTH_CLASSES))
        logits[:, LEFT_TO_RIGHT], logits[:, RIGHT_TO_LEFT] = dx, -dx
        logits[:, DOWN], logits[:, UP] = dy, -dy
        logits[:, CLOCKWISE], logits[:, COUNTERCLOCKWISE] = swept, -swept
        return logits


def _dot_clip(path_of_t) -> torch.Tensor:
    """Views uint8 (1, 3, 16, 33, 33): a 3x3 white dot at path_of_t(t) (x, y from the centre)."""
    clip = torch.zeros(1, 3, 16, 33, 33, dtype=torch.uint8)
    for t in range(16):
        x, y = path_of_t(t / 15)
        col, row = round(16 + x), round(16 + y)
        clip[0, :, t, row - 1:row + 2, col - 1:col + 2] = 255
    return clip


def _oracle_engine(symmetries: dict) -> InferenceModel:
    config = {"num_frames": 16, "num_classes": 12, "crop_size": 33, "test_views": [1, 1], "symmetries": symmetries}
    return InferenceModel(model=MotionOracle(), info=SimpleNamespace(config=config), labels=list(SYNTH_CLASSES),
                          device=torch.device("cpu"), spec_defaults=view_spec_for(config))


@pytest.mark.parametrize("name, truth, pair, path", [
    ("left to right", LEFT_TO_RIGHT, (0, 1), lambda s: (-10 + 20 * s, 5 - 2 * s)),
    ("up", UP, (2, 3), lambda s: (4 + s, 10 - 20 * s)),
    ("clockwise", CLOCKWISE, (6, 7),
     lambda s: (11 * torch.cos(torch.tensor(4.0 * s)).item(), 11 * torch.sin(torch.tensor(4.0 * s)).item())),
])
def test_every_transformed_view_maps_back_to_the_true_class(name, truth, pair, path):
    """The synthetic classes' maps agree with geometry: mirrored left-right, a motion to the
    right goes left and a clockwise turn goes counterclockwise; and so on for each of the eight
    views.  Unmapped, some of the views do answer the other class of the pair (the transforms
    happened); mapped back, every view answers the true one."""
    engine = _oracle_engine(SYNTH_SYMMETRIES)
    spec = engine.spec_defaults
    views = _dot_clip(path)
    assert engine.logits(views)[0, list(pair)].argmax().item() == pair.index(truth)  # the oracle reads it
    mapped = view_logits(engine, views, spec)
    assert mapped.shape == (8, 12) and spec.num_views == 8
    assert all(pair[int(row[list(pair)].argmax())] == truth for row in mapped), name

    raw = [engine.logits(views.flip(axes) if axes else views)[0] for axes in ((), (2,), (3,), (4,), (2, 3, 4))]
    assert {pair[int(row[list(pair)].argmax())] for row in raw} == set(pair)


def test_without_symmetries_a_view_is_one_view():
    engine = _oracle_engine(SYNTH_SYMMETRIES)
    plain = view_spec_for(engine.info.config, symmetries=False)
    views = _dot_clip(lambda s: (-10 + 20 * s, 0))
    assert plain.num_views == 1 and view_logits(engine, views, plain).shape == (1, 12)
    assert view_spec_for(engine.info.config, fast=True).symmetries == ()


@pytest.mark.parametrize("value, words", [
    ({"rot90": list(range(12))}, "unknown transform 'rot90'"),
    ({"hflip": [1, 0, 2]}, "each of the 12 class indices once"),
    ({"hflip": [1, 1] + list(range(2, 12))}, "each of the 12 class indices once"),
    ({"hflip": [1, 2, 0] + list(range(3, 12))}, "applied twice"),
    ({"reverse": "swap"}, "list of class indices"),
    ([0, 1], "must map a transform"),
])
def test_bad_symmetries_are_named(value, words):
    with pytest.raises(ValueError, match=words):
        check_symmetries(value, 12)


LABELS = ["left", "right", "up", "down", "still"]
TINY_SYMMETRIES = {"hflip": [1, 0, 2, 3, 4], "vflip": [0, 1, 3, 2, 4], "reverse": [1, 0, 3, 2, 4]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    model = create_model("dtfnet_tiny", num_classes=5, num_frames=4, crop_size=32, test_views=(1, 3))
    with torch.no_grad():
        model.fc.weight.mul_(40)  # spread the random head's scores
        for module in model.modules():  # a fresh DTF block is the identity; make it act
            if isinstance(getattr(module, "alpha", None), nn.Parameter):
                module.alpha.normal_(0, 0.3)
    model.config["symmetries"] = TINY_SYMMETRIES
    return save_pretrained(model, tmp_path_factory.mktemp("model") / "tiny", labels=LABELS)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "a.mp4"
    write_video(path, 30, size=(48, 64), fps=15)
    return path


def _reference_probs(model_dir: Path, path: Path) -> torch.Tensor:
    """1 clip x 3 crops through the data layer's TestTransform, each crop also flipped with
    torch.flip on the float clip and its probabilities re-ordered by hand: an independent route."""
    model, info = load_model(model_dir)
    by_hand = {  # the label maps written out: (dims of (1, C, T, H, W), class order)
        (): [0, 1, 2, 3, 4], (2,): [1, 0, 3, 2, 4], (3,): [0, 1, 3, 2, 4], (4,): [1, 0, 2, 3, 4],
        (2, 3): [1, 0, 2, 3, 4], (2, 4): [0, 1, 3, 2, 4], (3, 4): [1, 0, 3, 2, 4], (2, 3, 4): [0, 1, 2, 3, 4],
    }
    with open_video(path) as reader:
        size = info.config["crop_size"]
        views = sample_test_views(reader.num_frames, clip_len=4, frame_interval=4, num_clips=1, num_crops=3,
                                  crop_size=size, mode="segments" if info.config.get("sampling") == "segments"
                                  else "dense")
        first = reader.read_clip(views[0].positions)
        views = sample_test_views(reader.num_frames, clip_len=4, frame_interval=4, num_clips=1, num_crops=3,
                                  crop_size=size, frame_size=tuple(first.shape[1:3]),
                                  mode="segments" if info.config.get("sampling") == "segments" else "dense")
        probs = []
        for view in views:
            crop = TestTransform(size).views(reader.read_clip(view.positions), [view])
            for dims, order in by_hand.items():
                with torch.no_grad():
                    p = model(torch.flip(crop, dims) if dims else crop)[0].double().softmax(-1)
                probs.append(p[order])
    return torch.stack(probs).mean(0)


def test_predict_fuses_the_symmetric_views_and_can_leave_them_out(run_cli, tiny, clip):
    """`dtf predict` on a model with symmetries scores 1 x 3 x 8 views, as an independent
    computation does; --no-symmetries gives the plain 1 x 3, and says so."""
    proc = run_cli("predict", str(clip), "--model", str(tiny), "--json", "-j", "0")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["views"]["symmetries"] == {k: TINY_SYMMETRIES[k] for k in ("reverse", "vflip", "hflip")}
    got = {row["label"]: row["prob"] for row in doc["videos"][0]["topk"]}
    expected = _reference_probs(tiny, clip)
    for i, label in enumerate(LABELS):
        assert got[label] == pytest.approx(float(expected[i]), abs=2e-5), label

    plain = json.loads(run_cli("predict", str(clip), "--model", str(tiny), "--json", "-j", "0",
                               "--no-symmetries").stdout)
    assert plain["views"]["symmetries"] == {}
    assert plain["videos"][0]["topk"] != doc["videos"][0]["topk"]
    shown = run_cli("predict", str(clip), "--model", str(tiny), "-j", "0")
    assert "1 clips x 3 crops x 8 (reverse, vflip, hflip)" in shown.stdout


def test_symmetries_travel_with_the_weights_and_leave_with_the_classifier(tiny, tmp_path):
    model, info = load_model(tiny)
    assert info.config["symmetries"] == TINY_SYMMETRIES
    again = save_pretrained(model, tmp_path / "again", labels=LABELS)
    assert json.loads((again / "config.json").read_text())["symmetries"] == TINY_SYMMETRIES
    assert "each also" in (again / "README.md").read_text()
    tuned, tuned_info = load_model(tiny, num_classes=3, for_training=True)  # other classes: maps mean nothing
    assert "symmetries" not in tuned.config and "symmetries" not in tuned_info.config


def test_a_bad_map_in_a_config_is_one_line_naming_the_folder(run_cli, tiny, clip, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    config = json.loads((broken / "config.json").read_text())
    config["symmetries"] = {"hflip": [1, 2, 0, 3, 4]}
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="symmetries.hflip"):
        from dtfcli.engine.inference import load_inference_model
        load_inference_model(str(broken), device="cpu")
    proc = run_cli("predict", str(clip), "--model", str(broken), "-j", "0")
    assert proc.returncode == 1
    assert "broken" in proc.stderr and "symmetries.hflip" in proc.stderr and "Traceback" not in proc.stderr


def test_the_embedded_models_list_the_synthetic_symmetries():
    for name in ("dtfnet_tiny_synth12", "c2d_tiny_synth12_control"):
        raw = json.loads((REPO / "weights" / f"{name}.json").read_text())
        assert raw["symmetries"] == SYNTH_SYMMETRIES
