"""`dtf train` end to end on a CPU: a tiny DTF-Net on a few synthetic videos, a few steps.

Exact resume is checked against an uninterrupted run (weights torch.equal, the same LR and
loss at every step), with real SIGTERM and SIGINT sent to the real command; DDP through
real torchrun (gloo) against one process with gradient accumulation."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dtfcli.data import SYNTH_SYMMETRIES
from dtfcli.engine import checkpoint_io as ckpt
from dtfcli.engine.train import NonFiniteLossError, RunDirExistsError, _Run, train

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(model="dtfnet_tiny", pretrained="none", dataset="ssv2", val_split="validation", num_frames=4,
            crop_size=32, batch_size=2, epochs=2, warmup_epochs=1.0, lr=0.05, num_workers=0, device="cpu",
            tensorboard=False, log_every=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """12 training and 3 validation videos of 3 classes (the labels list all 12)."""
    from dtfcli.data import synthesize_dataset

    out = tmp_path_factory.mktemp("synth")
    synthesize_dataset(out, 4, 0, classes=[0, 1, 2], min_side=32, max_side=48, val_videos_per_class=1)
    return out


def _config(data: Path, run_dir: Path, **extra) -> dict:
    return {**BASE, "root": str(data), "run_dir": str(run_dir), **extra}


def _args(config: dict) -> list[str]:
    return [f"{k}={v}" for k, v in config.items()]


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class _CpuLikeTheCli:
    """The numerics of `python -m dtfcli` with OMP_NUM_THREADS=1: one thread, denormals flushed."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)
        torch.set_flush_denormal(False)


def _start_cli(*args: str) -> subprocess.Popen:
    """The real command in its own process group, as a terminal runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "dtfcli", "train", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _stop_at(proc: subprocess.Popen, metrics: Path, step: int, sig: int) -> tuple[int, str]:
    """Send ``sig`` to the command's process group (its data workers too, as Ctrl-C in a
    terminal does) once the run has logged ``step``; return (exit code, output)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        rows = _rows(metrics)
        if rows and int(rows[-1]["step"]) >= step:
            os.killpg(proc.pid, sig)
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out + err


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_resume_after_sigint_equals_an_uninterrupted_run(data, tmp_path):
    # 6 steps an epoch, 2 epochs; dropout on, so the random state must be restored too.
    config = _config(data, tmp_path / "run")
    with _CpuLikeTheCli():
        reference = train({**config, "run_dir": str(tmp_path / "reference")})
    assert reference.status == "finished" and reference.global_step == 12

    run = tmp_path / "run"
    code, output = _stop_at(_start_cli(*_args({**config, "num_workers": 1})), run / "metrics.csv", 2, signal.SIGINT)
    assert code == 130, output
    assert "dtf train --resume" in output
    stopped = int(ckpt.load_state(ckpt.find_checkpoint(run)[1])[0]["global_step"])
    assert 2 <= stopped < 12, "the run ended before the signal arrived"

    # Stopped with one data worker, resumed (in this process, with the command's numerics) with
    # two, against a reference with none: each clip's randomness does not depend on who decodes it.
    with _CpuLikeTheCli():
        resumed = train({"num_workers": 2}, resume=run)
    assert resumed.status == "finished" and resumed.global_step == 12

    want, got = _weights(reference.final_dir), _weights(run / "final")
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    want_rows, got_rows = _rows(reference.run_dir / "metrics.csv"), _rows(run / "metrics.csv")
    assert [r["step"] for r in got_rows] == [str(s) for s in range(1, 13)]  # no step twice, none missing
    assert [r["lr"] for r in got_rows] == [r["lr"] for r in want_rows]  # the LR curve does not jump
    assert [r["loss"] for r in got_rows] == [r["loss"] for r in want_rows]
    assert [r["loss"] for r in _rows(run / "val.csv")] == [r["loss"] for r in _rows(reference.run_dir / "val.csv")]


def test_sigterm_saves_a_loadable_checkpoint_and_exits_143(data, tmp_path):
    """The real command in this process; the signal comes from another thread once step 2 is logged."""
    from dtfcli.cli import app
    from dtfcli.hub import load_model

    run = tmp_path / "run"

    def kill_at_step_2():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = _rows(run / "metrics.csv")
            if rows and int(rows[-1]["step"]) >= 2:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    # Should the signal come after the run (it cannot, unless the machine stalls for 16 steps),
    # it must not end the test session: a no-op handler outside the run.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    killer = threading.Thread(target=kill_at_step_2, daemon=True)
    killer.start()
    try:
        result = CliRunner().invoke(app, ["train", *_args(_config(data, run, epochs=3, val_split=""))])
        killer.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    assert "stopped by SIGTERM" in result.output
    run_dir, last = ckpt.find_checkpoint(run)
    state, rng = ckpt.load_state(last)
    assert 2 <= state["global_step"] < 18 and rng is not None
    assert state["global_step"] == len(_rows(run / "metrics.csv"))
    model, info = load_model(last)
    assert info.config["num_frames"] == 4 and not (run / "final").exists()


def test_ddp_on_two_cpu_processes_follows_one_process(data, tmp_path):
    """2 processes x batch 2 against 1 process x batch 2 x 2 accumulation steps: the same clips
    per forward pass, so the same batch-norm statistics (no SyncBatchNorm needed), and the
    same averaged gradient.  Dropout off: the processes draw their own masks."""
    common = dict(epochs=1, dropout=0.0, lr=0.01)
    with _CpuLikeTheCli():
        one = train(_config(data, tmp_path / "one", accumulate=2, **common))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    two = tmp_path / "two"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "dtfcli", "train", *_args(_config(data, two, **common))],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    single, ddp = _rows(one.run_dir / "metrics.csv"), _rows(two / "metrics.csv")
    assert len(single) == len(ddp) == 3
    for a, b in zip(single, ddp, strict=False):
        assert a["lr"] == b["lr"]
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-4, abs=1e-5)
    val = _rows(two / "val.csv")
    assert [int(r["videos"]) for r in val] == [3]  # 3 videos over 2 processes: each counted once
    want, got = _weights(one.final_dir), _weights(two / "final")
    for key in want:
        if "running" not in key and "num_batches" not in key:  # per-process BN statistics differ
            assert torch.allclose(want[key], got[key], rtol=1e-4, atol=1e-5), key


def test_a_nan_loss_stops_with_its_step_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    from dtfcli.cli import app

    real_loss = _Run._loss

    def nan_at_step_5(self, logits, labels):
        loss = real_loss(self, logits, labels)
        return loss * float("nan") if self.global_step == 4 else loss

    monkeypatch.setattr(_Run, "_loss", nan_at_step_5)
    run = tmp_path / "run"
    # 3 steps an epoch; a checkpoint after step 3, the NaN at step 5
    # A modest LR: the only non-finite loss must be the injected one, whatever the thread count.
    result = CliRunner().invoke(app, ["train", *_args(_config(data, run, batch_size=4, lr=0.01))])
    assert result.exit_code == 4, result.output
    text = "".join(str(result.output).split())  # the console may fold a long path anywhere
    assert "atstep5(epoch2,step2of3)" in text and "step-00000003" in text
    last = ckpt.find_checkpoint(run)[1]
    assert last.name == "step-00000003" and not (run / "final").exists()
    assert all(torch.isfinite(t).all() for t in _weights(last).values())
    assert [r["step"] for r in _rows(run / "metrics.csv")] == ["1", "2", "3", "4"]
    with pytest.raises(NonFiniteLossError) as info:
        train({"max_steps": 6}, resume=run)  # resumed, it fails at the same step
    assert info.value.step == 5 and info.value.checkpoint == last


def test_a_run_directory_is_never_reused_silently(data, tmp_path):
    config = _config(data, tmp_path / "run", epochs=1, max_steps=1, val_split="")
    first = train(config)
    weights = first.last_checkpoint / "model.safetensors"
    before = weights.read_bytes()
    with pytest.raises(RunDirExistsError, match="--resume .*--exist-ok"):
        train(config)
    assert weights.read_bytes() == before
    again = train(config, exist_ok=True)
    assert again.status == "finished" and len(_rows(again.run_dir / "metrics.csv")) == 1


def test_mixed_precision_channels_last_accumulation_and_a_broken_video(data, tmp_path):
    """bfloat16 autocast and channels-last (the GPU code paths) on the CPU, with accumulation,
    and an unreadable training video: skipped, counted, the run goes on.  The result loads
    as a model from the run directory and from RUN_DIR/final."""
    from dtfcli.cli import app
    from dtfcli.hub import load_model

    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    victim = sorted((broken / "20bn-something-something-v2").iterdir())[0]
    victim.write_bytes(b"not a video at all")
    # batch 2: the broken video leaves one clip in its batch (too few for batch norm on its own)
    config = _config(broken, tmp_path / "run", amp="bf16", channels_last=True, accumulate=2, epochs=1)
    result = train(config)
    assert result.status == "finished" and result.skipped == 1
    rows = _rows(result.run_dir / "metrics.csv")
    assert len(rows) == 3 and all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows)
    for source in (result.run_dir, result.final_dir):
        model, info = load_model(source)
        assert info.labels[:3] == ["Moving something from left to right", "Moving something from right to left",
                                   "Moving something up"]
        assert model(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 12)
        assert info.config["sampling"] == "segments"  # as trained (Something-Something layout): predict tests so
        assert info.config["symmetries"] == SYNTH_SYMMETRIES  # the synthetic classes: tested mirrored, reversed
    video = sorted((data / "20bn-something-something-v2").iterdir())[0]
    for folder in (result.run_dir, result.final_dir):  # what `dtf predict --model` takes
        shown = CliRunner().invoke(app, ["predict", str(video), "--model", str(folder), "--fast", "--json",
                                         "--workers", "0", "--device", "cpu"])
        assert shown.exit_code == 0, shown.output
        assert "Moving something" in shown.output
    card = (result.final_dir / "README.md").read_text()
    for words in ("SGD (momentum 0.9", "12 training videos", "1 unreadable videos skipped", "top-1"):
        assert words in card
    saved = (result.run_dir / "train_config.toml").read_text()
    assert "auto" not in saved and 'amp = "bf16"' in saved


def test_help_and_a_misspelt_key(monkeypatch, capsys):
    from dtfcli.cli import app, main

    help_text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for words in ("Examples", "--resume", "--exist-ok", "torchrun", "130"):
        assert words in help_text
    # `main` as the installed `dtf` runs it: errors become one line, exit code 1.
    monkeypatch.setattr(sys, "argv", ["dtf", "train", "--config", str(ROOT / "examples/configs/synth.toml"),
                                      "epochz=3"])
    with pytest.raises(SystemExit) as info:
        main()
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 1
    assert "unknown config key 'epochz' (command line) (did you mean 'epochs'?)" in err
    assert "Traceback" not in err


def test_imagenet_initialisation_from_a_2d_file_on_disk(data, tmp_path):
    """pretrained=imagenet:FILE inflates a 2D state dict (here: one shaped like dtfnet_tiny's
    2D network, with an ImageNet-sized head that the video classifier does not take)."""
    from dtfcli.hub.inflate import is_temporal_key
    from dtfcli.models import create_model

    tiny = create_model("dtfnet_tiny", num_frames=4)
    flat = {k: (v[:, :, v.shape[2] // 2] if v.dim() == 5 else v) for k, v in tiny.state_dict().items()
            if not is_temporal_key(k) and not k.startswith("fc.")}
    flat = {k: torch.full_like(v, 0.01) if k.endswith("conv1.weight") and v.dim() == 4 else v for k, v in flat.items()}
    torch.save({**flat, "fc.weight": torch.zeros(1000, 128), "fc.bias": torch.zeros(1000)}, tmp_path / "2d.pth")
    result = train(_config(data, tmp_path / "run", pretrained=f"imagenet:{tmp_path / '2d.pth'}", epochs=1,
                           max_steps=1, val_split="", lr=0.0))
    card = (result.final_dir / "README.md").read_text()
    assert "ImageNet initialisation from" in card and "2d.pth" in card
    stem = _weights(result.final_dir)["conv1.weight"]  # lr 0: the inflated stem as it was loaded
    assert torch.all(stem[:, :, stem.shape[2] // 2] == 0.01)


def test_fine_tuning_a_saved_model_starts_from_its_weights_and_tests_at_the_new_crop(data, tmp_path):
    """pretrained=PATH fine-tunes the model of a run folder; trained further at another crop,
    the saved model is tested (predict, eval) at that crop, not the one it arrived with."""
    from dtfcli.hub import load_model

    first = train(_config(data, tmp_path / "first", epochs=1, max_steps=2, val_split=""))
    assert json.loads((first.final_dir / "config.json").read_text())["crop_size"] == 32
    tuned = train(_config(data, tmp_path / "tuned", pretrained=str(first.final_dir), crop_size=48,
                          scale_range="48,54", epochs=1, max_steps=1, val_split="", lr=0.0))
    assert "fine-tuning" in (tuned.final_dir / "README.md").read_text()
    before, after = _weights(first.final_dir), _weights(tuned.final_dir)
    assert all(torch.equal(before[k], after[k]) for k in before if k.endswith((".weight", ".bias")))  # lr 0
    model, _ = load_model(str(tuned.final_dir))
    assert model.config["crop_size"] == 48


def test_a_model_fine_tuned_to_other_classes_forgets_the_synthetic_symmetries(data, tmp_path):
    """Twelve classes of a user's own (a folder each) after the twelve synthetic ones: the same
    classifier shape, but the synthetic classes' label maps no longer hold."""
    from dtfcli.hub import load_model

    first = train(_config(data, tmp_path / "first", epochs=1, max_steps=1, val_split=""))
    assert load_model(str(first.final_dir))[1].config["symmetries"] == SYNTH_SYMMETRIES
    videos = sorted((data / "20bn-something-something-v2").iterdir())
    for n, video in enumerate(videos[:12]):
        (tmp_path / "mine" / f"kind {n:02d}").mkdir(parents=True)
        shutil.copy(video, tmp_path / "mine" / f"kind {n:02d}" / video.name)
    tuned = train(_config(tmp_path / "mine", tmp_path / "tuned", dataset="folder", pretrained=str(first.final_dir),
                          epochs=1, max_steps=1, val_split="", train_split="", lr=0.0))
    _, info = load_model(str(tuned.final_dir))
    assert info.labels[0] == "kind 00" and "symmetries" not in info.config


def test_a_run_from_a_model_of_other_widths_resumes_with_them(data, tmp_path):
    """pretrained=FOLDER whose model has other widths than `model`'s defaults: the run trains
    that architecture, and --resume rebuilds it from the checkpoint (not from `model`), ending
    where the same run uninterrupted ends."""
    from dtfcli.data.synth import SYNTH_CLASSES
    from dtfcli.hub import save_pretrained
    from dtfcli.models import create_model

    torch.manual_seed(0)
    wide = create_model("dtfnet_tiny", num_classes=12, num_frames=4, crop_size=32, widths=(8, 16, 24, 40),
                        stem_width=8)
    save_pretrained(wide, tmp_path / "wide", labels=list(SYNTH_CLASSES))
    config = _config(data, tmp_path / "whole", pretrained=str(tmp_path / "wide"), epochs=1, val_split="")
    with _CpuLikeTheCli():
        whole = train(config)
        part = train({**config, "run_dir": str(tmp_path / "part"), "max_steps": 3})
        assert part.global_step == 3
        resumed = train({"max_steps": 0}, resume=tmp_path / "part")
    assert resumed.status == "finished" and resumed.global_step == whole.global_step == 6
    want, got = _weights(whole.final_dir), _weights(resumed.final_dir)
    assert got["fc.weight"].shape == (12, 40)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_a_resumed_run_reports_at_its_own_log_every(data, tmp_path):
    """The command's progress lines (output not a terminal) come every `log_every` steps, the
    run's saved value when it is resumed without the key."""
    from dtfcli.cli import app

    run = tmp_path / "run"
    first = CliRunner().invoke(app, ["train", *_args(_config(data, run, log_every=4, max_steps=5, val_split=""))],
                               env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, ["train", "--resume", str(run), "max_steps=0"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    shown = [int(line.split()[1].split("/")[0]) for line in (first.output + again.output).splitlines()
             if line.startswith("step ")]
    assert shown == [4, 8, 12]  # every 4th step, and the last


def test_timed_saves_inside_epochs_and_kept_epoch_checkpoints(data, tmp_path, monkeypatch):
    saved = []
    real_save = ckpt.save_checkpoint

    def recording(run_dir, step, *args, **kwargs):
        saved.append((step, kwargs.get("links")))
        return real_save(run_dir, step, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_checkpoint", recording)
    # 3 steps an epoch; a timed save due after every step; a kept checkpoint every epoch
    result = train(_config(data, tmp_path / "run", batch_size=4, save_every=1, checkpoint_minutes=1e-6,
                           val_split=""))
    assert [step for step, _ in saved] == [1, 2, 3, 4, 5, 6]
    assert saved[2][1] == ("last", "epoch-0001") and saved[5][1] == ("last", "epoch-0002")
    root = result.run_dir / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["epoch-0001", "epoch-0002", "last", "step-00000003",
                                                      "step-00000006"]
    assert (root / "epoch-0001").resolve().name == "step-00000003"
