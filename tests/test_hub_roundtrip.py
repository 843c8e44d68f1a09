"""Save -> load round trips: folder, lone safetensors file, legacy .pt, and hf:// through
huggingface_hub against a local Hub endpoint. Logits must be bit-identical."""

from __future__ import annotations

import shutil

import pytest
import torch
from _hub_helpers import FRAMES, LABELS, clip, logits, single_threaded_torch, tiny_model  # noqa: F401
from _hub_server import FakeHub
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from dtfcli.hub import ClassCountMismatchError, load_model, push_to_hub, save_pretrained


@pytest.mark.parametrize("name", ["dtfnet_tiny", "dtf_swin_tiny"])
def test_folder_round_trip_gives_identical_logits_and_labels(tmp_path, name):
    model = tiny_model(name)
    folder = save_pretrained(model, tmp_path / "export", labels=LABELS, metrics={"synthetic-motion": {"top1": 81.5}})

    loaded, info = load_model(str(folder))

    assert torch.equal(logits(loaded), logits(model))
    assert not loaded.training
    assert info.kind == "folder" and info.labels == LABELS
    assert info.config["name"] == name and info.config["num_frames"] == FRAMES
    assert info.metrics == {"synthetic-motion": {"top1": 81.5}}
    assert (folder / "labels.txt").read_text().split() == LABELS
    by_config, _ = load_model(str(folder / "config.json"))  # pointing at the config means the folder
    assert torch.equal(logits(by_config), logits(model))


def test_saved_folder_is_hub_ready_with_a_model_card_header(tmp_path):
    folder = save_pretrained(tiny_model(), tmp_path, labels=LABELS, metrics={"synthetic-motion": {"top1": 81.5}})

    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "labels.txt", "model.safetensors"]
    card = ModelCard.load(folder / "README.md")  # the Hub's own parser of the YAML header
    assert card.data.library_name == "dtfcli"
    assert card.data.pipeline_tag == "video-classification"
    assert card.data.license == "apache-2.0"
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.metric_type, result.metric_value) == ("synthetic-motion", "top1", 81.5)


def test_lone_safetensors_file_carries_its_config_and_labels(tmp_path):
    model = tiny_model("dtf_swin_tiny")
    save_pretrained(model, tmp_path / "export", labels=LABELS)
    alone = tmp_path / "elsewhere" / "my-model.safetensors"
    alone.parent.mkdir()
    shutil.copy(tmp_path / "export" / "model.safetensors", alone)

    loaded, info = load_model(str(alone))

    assert torch.equal(logits(loaded), logits(model))
    assert info.kind == "safetensors" and info.labels == LABELS


def test_legacy_checkpoint_loads_with_its_config_and_ddp_prefix(tmp_path):
    model = tiny_model()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # saved from DistributedDataParallel
    torch.save({"model": state, "config": model.config, "epoch": 3}, tmp_path / "last.pt")

    loaded, info = load_model(str(tmp_path / "last.pt"))

    assert torch.equal(logits(loaded), logits(model))
    assert info.kind == "legacy" and info.labels is None


def test_other_class_count_is_an_error_for_inference_and_a_fresh_head_for_fine_tuning(tmp_path):
    model = tiny_model()
    save_pretrained(model, tmp_path, labels=LABELS)

    with pytest.raises(ClassCountMismatchError, match="trained for 5 classes but 3"):
        load_model(str(tmp_path), num_classes=3)
    tuned, info = load_model(str(tmp_path), num_classes=3, for_training=True)

    assert tuned.training and info.fresh_head and info.labels is None
    assert tuned.fc.out_features == 3
    with torch.no_grad():  # the backbone is the saved one
        assert torch.equal(tuned.eval().forward_features(clip()), model.forward_features(clip()))


def test_push_then_load_hf_uri_is_bit_identical_and_revisions_pin(tmp_path):
    first, second = tiny_model(seed=0), tiny_model(seed=1)
    cache = tmp_path / "hf-cache"
    with FakeHub() as hub:
        first_ref = push_to_hub(first, "dtf-org/tiny-motion", labels=LABELS, endpoint=hub.endpoint, token="hf_test")
        save_pretrained(second, tmp_path / "second", labels=LABELS[::-1])
        second_ref = push_to_hub(tmp_path / "second", "dtf-org/tiny-motion", endpoint=hub.endpoint, token="hf_test")

        branch_ref = push_to_hub(first, "dtf-org/tiny-motion", labels=LABELS, revision="v1.0",
                                 endpoint=hub.endpoint, token="hf_test")

        latest, latest_info = load_model("hf://dtf-org/tiny-motion", endpoint=hub.endpoint, cache_dir=cache)
        pinned, pinned_info = load_model(first_ref, endpoint=hub.endpoint, cache_dir=cache)
        branch, branch_info = load_model("hf://dtf-org/tiny-motion@v1.0", endpoint=hub.endpoint, cache_dir=cache)

    assert torch.equal(logits(latest), logits(second))
    assert torch.equal(logits(pinned), logits(first)) and torch.equal(logits(branch), logits(first))
    assert branch_info.location == branch_ref != first_ref
    assert latest_info.location == second_ref and pinned_info.location == first_ref
    assert latest_info.labels == LABELS[::-1] and pinned_info.labels == LABELS
    # The hub copy is byte-identical to the local export.
    local = load_file(tmp_path / "second" / "model.safetensors")
    assert latest_info.sha256 == load_model(str(tmp_path / "second"))[1].sha256
    assert all(torch.equal(local[k], v) for k, v in latest.state_dict().items())
