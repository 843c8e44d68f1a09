"""Broken or hostile checkpoints: each case gets its own error type and a one-line message
that names the file or key; a malicious pickle never runs."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from _hub_helpers import LABELS, single_threaded_torch, tiny_model  # noqa: F401 (autouse)
from _hub_server import FakeHub
from safetensors.torch import save_file

from dtfcli.hub import (
    ChecksumError,
    ClassCountMismatchError,
    ConfigError,
    KeyMismatchError,
    ShapeMismatchError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
    WeightsUnavailableError,
    load_model,
    save_pretrained,
)
from dtfcli.hub.checkpoint import CONFIG_METADATA_KEY

MARKER_ENV = "DTF_TEST_PICKLE_MARKER"


class WritesMarker:
    """Unpickling this object calls os.system, which creates the marker file."""

    def __reduce__(self):
        return (os.system, (f'touch "{os.environ[MARKER_ENV]}"',))


def _save_state(path: Path, state: dict, config: dict) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path),
              metadata={"format": "pt", CONFIG_METADATA_KEY: json.dumps(config)})
    return path


def test_renamed_key_is_a_key_mismatch_naming_file_and_keys(tmp_path):
    model = tiny_model()
    state = model.state_dict()
    state["layer1.0.temporal1.alpha_renamed"] = state.pop("layer1.0.temporal1.alpha")
    path = _save_state(tmp_path / "renamed.safetensors", state, model.config)

    with pytest.raises(KeyMismatchError) as err:
        load_model(str(path))

    assert err.value.missing == ["layer1.0.temporal1.alpha"]
    assert err.value.unexpected == ["layer1.0.temporal1.alpha_renamed"]
    assert str(path) in str(err.value) and "layer1.0.temporal1.alpha" in str(err.value)


def test_wrong_shape_is_a_shape_mismatch_with_both_shapes(tmp_path):
    model = tiny_model()
    state = model.state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(32, 16, 1, 5, 5)  # 5x5 kernel where the model has 3x3
    path = _save_state(tmp_path / "reshaped.safetensors", state, model.config)

    with pytest.raises(ShapeMismatchError) as err:
        load_model(str(path))

    assert not isinstance(err.value, KeyMismatchError)
    assert err.value.wrong_shape == [("layer2.0.conv1.weight", (32, 16, 1, 5, 5), (32, 16, 1, 3, 3))]
    assert "layer2.0.conv1.weight" in str(err.value)


def test_wrong_class_count_for_inference(tmp_path):
    save_pretrained(tiny_model(), tmp_path, labels=LABELS)
    with pytest.raises(ClassCountMismatchError, match=str(tmp_path)):
        load_model(str(tmp_path), num_classes=400)


def test_tampered_file_fails_its_sha256(tmp_path):
    folder = save_pretrained(tiny_model(), tmp_path / "export", labels=LABELS)
    published = load_model(str(folder))[1].sha256
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip the bits of one weight byte: still a valid file, other numbers
    weights.write_bytes(bytes(data))

    with pytest.raises(ChecksumError, match="does not match"):
        load_model(str(folder), sha256=published)


def test_tampered_file_in_the_hub_cache_is_caught(tmp_path):
    cache = tmp_path / "hf-cache"
    with FakeHub() as hub:
        hub.publish_folder("org/m", save_pretrained(tiny_model(), tmp_path / "export", labels=LABELS))
        _, info = load_model("hf://org/m", endpoint=hub.endpoint, cache_dir=cache)
        blob = next((cache / "models--org--m" / "blobs").glob("?" * 64))  # the LFS file, named by its sha256
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF
        blob.write_bytes(bytes(data))

        with pytest.raises(ChecksumError, match="hf://org/m"):
            load_model("hf://org/m", endpoint=hub.endpoint, cache_dir=cache)
    assert info.sha256 == blob.name


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes pickle.dump's protocol 4
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, monkeypatch, writer):
    marker = tmp_path / "pwned"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    payload = {"model": tiny_model().state_dict(), "config": {"name": "dtfnet_tiny"}, "hook": WritesMarker()}
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save(payload, f) if writer == "torch.save" else pickle.dump(payload, f)
    # The file is a working exploit: an unrestricted unpickler runs its code.
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()

    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_model(str(path))

    assert not marker.exists()


def test_error_types_are_distinct_and_messages_one_line(tmp_path):
    types = [KeyMismatchError, ShapeMismatchError, ClassCountMismatchError, ChecksumError, UnsafeCheckpointError]
    assert not any(issubclass(a, b) for a, b in itertools.permutations(types, 2))

    save_pretrained(tiny_model(), tmp_path, labels=LABELS)
    messages = []
    for source, kwargs in [(str(tmp_path), {"num_classes": 2}), (str(tmp_path), {"sha256": "0" * 64}),
                           ("dtfnet_tinny", {}), ("dtfnet_r50", {}), (str(tmp_path / "nope.pt"), {})]:
        with pytest.raises(Exception) as err:
            load_model(source, **kwargs)
        messages.append(str(err.value))
    assert all("\n" not in m for m in messages)


def test_unknown_names_and_unpublished_architectures(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="did you mean dtfnet_tiny"):
        load_model("dtfnet_tinny")
    with pytest.raises(WeightsNotFoundError, match="no such file"):
        load_model(str(tmp_path / "missing.safetensors"))
    with pytest.raises(WeightsUnavailableError, match="dtfnet_r50: an architecture with no published weights"):
        load_model("dtfnet_r50")
    fresh, info = load_model("c2d_tiny", num_classes=7, for_training=True)  # random init to train from
    assert info.kind == "registry" and info.sha256 is None and fresh.fc.out_features == 7


def test_weights_without_any_config_name_what_is_missing(tmp_path):
    model = tiny_model()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ConfigError, match="no model config"):
        load_model(str(tmp_path / "bare.safetensors"))
    loaded, _ = load_model(str(tmp_path / "bare.safetensors"), config=model.config)
    assert loaded.config["num_classes"] == len(LABELS)


def test_folder_with_only_a_pickle_checkpoint_is_not_guessed(tmp_path):
    shutil.copy(save_pretrained(tiny_model(), tmp_path / "a") / "config.json", tmp_path / "config.json")
    torch.save(tiny_model().state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsNotFoundError, match="pytorch_model.bin: pass the file itself"):
        load_model(str(tmp_path))


def test_missing_hub_repository_revision_and_file_are_named(tmp_path):
    cache = tmp_path / "hf-cache"
    with FakeHub() as hub:
        hub.publish_folder("org/m", save_pretrained(tiny_model(), tmp_path / "export"))
        hub.commit("org/config-only", {"config.json": (tmp_path / "export" / "config.json").read_bytes()})
        with pytest.raises(WeightsNotFoundError, match="hf://org/absent: repository not found"):
            load_model("hf://org/absent", endpoint=hub.endpoint, cache_dir=cache)
        with pytest.raises(WeightsNotFoundError, match="hf://org/m@v9: revision 'v9' does not exist"):
            load_model("hf://org/m@v9", endpoint=hub.endpoint, cache_dir=cache)
        with pytest.raises(WeightsNotFoundError, match="hf://org/config-only: the repository has no model.safetensors"):
            load_model("hf://org/config-only", endpoint=hub.endpoint, cache_dir=cache)
        _, info = load_model("hf://org/m", endpoint=hub.endpoint, cache_dir=cache)  # saved without labels
    assert info.labels is None
