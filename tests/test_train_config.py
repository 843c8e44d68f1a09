"""`dtf train` without training: config keys and presets, the LR schedule, batch sharding,
atomic checkpoints."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from dtfcli.engine import checkpoint_io as ckpt
from dtfcli.engine.train_config import (
    ConfigKeyError,
    build_config,
    dump_config,
    parse_overrides,
    read_config_file,
    resolve_config,
)
from dtfcli.engine.train_data import EpochBatches
from dtfcli.engine.train_setup import CosineSchedule

CONFIGS = Path(__file__).resolve().parent.parent / "examples" / "configs"


def test_overrides_are_typed_and_checked():
    got = parse_overrides(["lr=0.01", "epochs=3", "flip=false", "scale_range=128,170", "--amp=bf16", "model=c2d_tiny"])
    assert got == {"lr": 0.01, "epochs": 3, "flip": False, "scale_range": [128, 170], "amp": "bf16",
                   "model": "c2d_tiny"}
    assert parse_overrides(["crop_size=auto"]) == {"crop_size": "auto"}


@pytest.mark.parametrize("item, words", [
    ("lrr=0.1", ["unknown config key 'lrr'", "did you mean 'lr'"]),
    ("epoch=3", ["did you mean 'epochs'"]),
    ("epochs=three", ["config key 'epochs'", "an integer"]),
    ("lr=-1", ["config key 'lr'", "at least 0"]),
    ("amp=fp8", ["config key 'amp'", "bf16"]),
    ("scale_range=300,200", ["config key 'scale_range'"]),
    ("lr", ["expected key=value"]),
])
def test_bad_keys_and_values_name_the_key(item, words):
    with pytest.raises(ConfigKeyError) as info:
        parse_overrides([item])
    for word in words:
        assert word in str(info.value)


def test_preset_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "dtfnet_tiny"\nbatch_sise = 4\n')
    with pytest.raises(ConfigKeyError, match=r"bad\.toml.*did you mean 'batch_size'"):
        read_config_file(bad)
    bad.write_text("model = \n")
    with pytest.raises(ConfigKeyError, match=r"bad\.toml: invalid TOML"):
        read_config_file(bad)


@pytest.mark.parametrize("preset", ["synth-plain.toml", "synth.toml", "kinetics400.toml", "ssv2.toml"])
def test_presets_load_and_a_saved_config_reads_back_the_same(preset, tmp_path):
    values = build_config(CONFIGS / preset, ["epochs=3"])
    assert values["epochs"] == 3
    resolved = resolve_config(values)
    saved = tmp_path / "train_config.toml"
    saved.write_text(dump_config(resolved.values, "a header"))
    assert read_config_file(saved) == resolved.values


def test_the_paper_recipe_is_the_default():
    base = build_config(None, ["root=x", "model=dtfnet_r50", "dataset=kinetics400"])
    k400 = resolve_config(base).values
    assert (k400["momentum"], k400["weight_decay"], k400["dropout"], k400["epochs"]) == (0.9, 1e-4, 0.5, 128)
    assert (k400["crop_size"], k400["scale_range"], k400["flip"]) == (224, [256, 340], True)
    # Linear scaling: 0.04 at 256 clips; 8 per process x 4 accumulation x 8 processes = 256.
    r50 = resolve_config(build_config(None, ["root=x", "batch_size=8", "accumulate=4"]), world_size=8)
    assert r50.global_batch == 256 and r50["lr"] == pytest.approx(0.04)
    swin = resolve_config(build_config(None, ["root=x", "model=dtf_swin_b", "batch_size=4"]), world_size=2)
    assert swin["lr"] == pytest.approx(0.01 * 8 / 256)
    ssv2 = resolve_config(build_config(None, ["root=x", "dataset=ssv2", "model=dtfnet_tiny"])).values
    assert ssv2["flip"] is False and ssv2["epochs"] == 64 and ssv2["sampling"] == "segments"
    assert (ssv2["crop_size"], ssv2["scale_range"]) == (112, [128, 170])  # 256-340 at 224, scaled to 112
    explicit = resolve_config(build_config(None, ["root=x", "lr=0.5", "batch_size=1"]))
    assert explicit["lr"] == 0.5  # an explicit peak LR is not rescaled
    with pytest.raises(ConfigKeyError, match="config key 'root'"):
        resolve_config(build_config(None, []))
    with pytest.raises(ConfigKeyError, match="config key 'model'.*dtfnet_tiny"):
        resolve_config(build_config(None, ["root=x", "model=dtfnet_tinny"]))


def test_schedule_matches_torch_warmup_then_cosine():
    """Against torch's own LinearLR + CosineAnnealingLR chained with SequentialLR."""
    peak, floor, warmup, total = 0.4, 0.001, 7, 40
    schedule = CosineSchedule(peak, floor, warmup, total)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    reference = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=floor),
    ], milestones=[warmup])
    for step in range(total):
        assert schedule.lr(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12), step
        opt.step()
        reference.step()
    assert schedule.lr(total) == pytest.approx(floor)


def test_processes_share_each_global_batch_like_one_process():
    one = EpochBatches(23, 4, seed=5)
    two = [EpochBatches(23, 2, world_size=2, rank=r, seed=5) for r in range(2)]
    for s in [one, *two]:
        s.set_epoch(3)
    single = list(one)
    shards = list(zip(*(list(s) for s in two), strict=False))
    assert len(single) == len(shards) == 5  # 23 // 4: the incomplete batch is dropped
    for batch, (a, b) in zip(single, shards, strict=False):
        assert batch == a + b
    flat = [i for batch in single for _, i in batch]
    assert len(set(flat)) == len(flat) == 20
    # Same (seed, epoch), same order; another epoch, another order; skipping drops the done batches.
    again = EpochBatches(23, 4, seed=5)
    again.set_epoch(3, skip=2)
    assert list(again) == single[2:] and len(again) == 3
    one.set_epoch(4)
    assert list(one) != single


def _write_model(folder: Path, value: float) -> None:
    torch.save({"w": torch.full((3,), value)}, folder / "weights.pt")


def test_a_save_that_dies_halfway_leaves_last_intact(tmp_path):
    first = ckpt.save_checkpoint(tmp_path, 1, lambda d: _write_model(d, 1.0), {"global_step": 1})
    assert (tmp_path / "checkpoints" / "last").resolve() == first

    def crash(folder: Path) -> None:
        (folder / "weights.pt").write_bytes(b"half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 2, crash, {"global_step": 2})
    run_dir, folder = ckpt.find_checkpoint(tmp_path)
    assert folder == first
    state, rng = ckpt.load_state(folder)
    assert state["global_step"] == 1 and torch.equal(rng["torch"], rng["torch"])
    assert torch.load(folder / "weights.pt", weights_only=True)["w"].eq(1.0).all()
    second = ckpt.save_checkpoint(tmp_path, 3, lambda d: _write_model(d, 3.0), {"global_step": 3})
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last", second.name]  # the old checkpoint and the half-written folder are gone


def test_rng_state_round_trips(tmp_path):
    import random

    import numpy as np

    ckpt.save_checkpoint(tmp_path, 1, lambda d: None, {})
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    _, rng = ckpt.load_state(ckpt.find_checkpoint(tmp_path)[1])
    ckpt.set_rng_state(rng)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[2] == want[2]


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_state_file_with_objects_is_refused(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 1, lambda d: None, {})
    with open(folder / ckpt.STATE_NAME, "wb") as fh:
        pickle.dump({"format": 1, "x": _Payload()}, fh)
    with pytest.raises(ckpt.CheckpointError, match="state.pt: unreadable"):
        ckpt.load_state(folder)


def test_every_key_is_documented():
    from dtfcli.engine.train_config import KEYS

    docs = (Path(__file__).resolve().parent.parent / "docs" / "training.md").read_text()
    assert [k for k in KEYS if f"| `{k}` |" not in docs] == []


def test_early_stride_sets_the_resnet_stem_and_travels_with_the_weights():
    """early_stride=1: every frame goes through the network alone (the frame-wise C2D control
    of the default model's card); the value is kept in the model's config."""
    from dtfcli.engine.train_setup import build_model

    auto = resolve_config(build_config(None, ["root=x", "model=c2d_tiny"]))
    assert auto.values["early_stride"] == 4
    resolved = resolve_config(build_config(None, ["root=x", "model=c2d_tiny", "early_stride=1", "num_frames=8"]))
    model, _ = build_model(resolved, num_classes=3, fresh=True)
    assert model.frames_inside == 8 and model.config["overrides"]["early_stride"] == 1
    swin = resolve_config(build_config(None, ["root=x", "model=dtf_swin_tiny", "early_stride=2", "num_frames=8"]))
    model, _ = build_model(swin, num_classes=3, fresh=True)
    assert model.frames_inside == 4  # the patch embedding's temporal stride
