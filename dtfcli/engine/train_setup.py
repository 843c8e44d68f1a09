"""What a training run is made of: processes and devices, datasets, the model, the optimiser
and its schedule, and the model card of the result.  Used by `dtfcli.engine.train`."""

from __future__ import annotations

import math
import os
import platform
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dtfcli.engine.train_config import PAPER_CROP, ConfigKeyError, Resolved, model_early_stride


class TrainError(ValueError):
    """A problem that stops a run before or while it trains: one line for the user."""


class RunDirExistsError(TrainError):
    """The run directory holds a run, and neither --resume nor --exist-ok was given."""


# What a run writes into its directory (and --exist-ok removes).
RUN_FILES = ("checkpoints", "final", "tensorboard", "metrics.csv", "val.csv", "train_config.toml",
             "config.json", "model.safetensors", "labels.txt")


# -- processes and devices ------------------------------------------------------------------
@dataclass
class Processes:
    """This process's place among the training processes (torchrun sets RANK/WORLD_SIZE)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over processes (float64 so that counts stay exact)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def start_processes(device: str) -> Processes:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigKeyError(f"config key 'device': {device} asked for, but no CUDA device is available")
        if world > 1 or device == "cuda":
            device = f"cuda:{local % torch.cuda.device_count()}" if world > 1 else "cuda:0"
        torch.cuda.set_device(torch.device(device))
    elif device != "cpu":
        raise ConfigKeyError(f"config key 'device': expected auto, cpu, cuda or cuda:N, got {device!r}")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Processes(rank, world, local, torch.device(device))


def stop_processes(procs: Processes) -> None:
    if procs.distributed and dist.is_initialized():
        dist.destroy_process_group()


# -- signals and the run directory ----------------------------------------------------------
class StopRequest:
    """SIGINT/SIGTERM set a flag the loop reads at each step boundary; a second SIGINT, a
    second or more after the first, quits at once.  Not under torchrun: Ctrl-C reaches the
    workers directly and once more through the launcher, which itself kills them 30 s later."""

    def __init__(self):
        self.signal: str | None = None
        self.first = 0.0
        self.escalate = "TORCHELASTIC_RUN_ID" not in os.environ
        self.previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            if signum == signal.SIGINT and self.escalate and time.monotonic() - self.first > 1.0:
                raise KeyboardInterrupt
            return
        self.signal, self.first = signal.Signals(signum).name, time.monotonic()

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def claim_run_dir(run_dir: Path, exist_ok: bool, procs: Processes) -> None:
    taken = run_dir.is_dir() and any(run_dir.iterdir())
    procs.barrier()  # every process has looked before the main one changes anything
    if taken and not exist_ok:
        raise RunDirExistsError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                                "start over there with --exist-ok (its checkpoints and logs are replaced), "
                                "or pass run_dir=ANOTHER_FOLDER")
    if procs.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            path = run_dir / name
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
    procs.barrier()


def link_final(run_dir: Path) -> None:
    """RUN_DIR itself loads as a model: its config.json, weights and labels link to final/."""
    for name in ("config.json", "model.safetensors", "labels.txt"):
        link = run_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        if (run_dir / "final" / name).exists():
            link.symlink_to(Path("final") / name)


# -- data -----------------------------------------------------------------------------------
def build_datasets(cfg: Resolved):
    """(train dataset, validation dataset or None) with the recipe's transforms."""
    from dtfcli.data import TestTransform, TrainTransform, build_dataset

    v = cfg.values
    common = dict(clip_len=v["num_frames"], frame_interval=v["frame_interval"], sampling=v["sampling"],
                  fold=v["fold"])
    transform = TrainTransform(v["crop_size"], tuple(v["scale_range"]), flip=v["flip"], randaugment=v["randaugment"])
    train_set = build_dataset(v["dataset"], v["root"], v["train_split"], transform=transform, train=True, **common)
    if len(train_set) == 0:
        raise TrainError(f"{v['root']}: the {v['train_split']!r} split has no readable videos")
    val_set = None
    if v["val_split"] and v["val_every"] >= 0:
        val_set = build_dataset(v["dataset"], v["root"], v["val_split"], classes=train_set.classes,
                                transform=TestTransform(v["crop_size"]), train=False, **common)
        if len(val_set) == 0:
            val_set = None
    return train_set, val_set


# -- model ----------------------------------------------------------------------------------
def build_model(cfg: Resolved, num_classes: int, *, fresh: bool = False,
                resume_from: Path | None = None) -> tuple[nn.Module, str]:
    """The model to train and a line saying how it was initialised.

    ``fresh``: the architecture alone, no initialisation from ``pretrained``.
    ``resume_from``: a checkpoint folder; the model is the one saved there, architecture and
    weights, which is not always ``model`` with its defaults: a run that started from a
    ``pretrained`` folder trains that folder's architecture (other widths, depths, stem)."""
    from dtfcli.hub import WeightsError, inflate_imagenet, load_model
    from dtfcli.models import create_model

    if resume_from is not None:
        try:
            model, _ = load_model(resume_from, num_classes=num_classes)
        except WeightsError as exc:
            raise TrainError(f"--resume: {exc}") from None
        return model, "from the checkpoint"
    v = cfg.values
    source = v["pretrained"]
    # The paper's 224 training crop keeps the model's own test crop (256 for the ResNets); any
    # other training crop (a CPU-sized model's) is also the crop it is tested at.
    crop = {} if v["crop_size"] == PAPER_CROP else {"crop_size": v["crop_size"]}
    from dtfcli.models import get_model_spec

    stem_stride = model_early_stride(get_model_spec(v["model"]))
    if stem_stride is not None and v.get("early_stride", stem_stride) != stem_stride:
        crop["early_stride"] = v["early_stride"]  # travels in the model's config ("overrides")
    imagenet = source == "imagenet" or source.startswith("imagenet:")
    if source == "none" or imagenet or fresh:
        try:
            model = create_model(v["model"], num_classes=num_classes, num_frames=v["num_frames"],
                                 dropout=v["dropout"], **crop)
        except (KeyError, ValueError) as exc:
            raise ConfigKeyError(f"config key 'model': {exc.args[0] if exc.args else exc}") from None
        if fresh or source == "none":
            return model, "random initialisation (pretrained=none)" if not fresh else "from the checkpoint"
        weights_2d = source.partition(":")[2] or "torchvision"  # imagenet:FILE, a 2D torchvision state dict
        try:
            info = inflate_imagenet(model, weights_2d)
        except (WeightsError, OSError) as exc:
            raise TrainError(f"ImageNet initialisation failed: {exc}. Pass pretrained=imagenet:FILE for 2D weights "
                             "on disk, pretrained=none to train from scratch, or pretrained=PATH to fine-tune "
                             "video weights") from None
        return model, f"ImageNet initialisation from {info['source']} ({info['loaded']} tensors)"
    try:
        model, info = load_model(source, num_classes=num_classes, for_training=True)
    except WeightsError as exc:
        raise TrainError(f"config key 'pretrained': {exc}") from None
    if model.config.get("num_frames") != v["num_frames"]:
        raise ConfigKeyError(f"config key 'num_frames': {source} was built for {model.config.get('num_frames')} "
                             f"frames, not {v['num_frames']}")
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module is getattr(model, "dropout", None):
            module.p = v["dropout"]
    # The test crop travels with the weights: a model fine-tuned at another crop is tested at
    # that crop, by the same rule as a new model's (above).
    model.config["crop_size"] = crop.get("crop_size", get_model_spec(model.config["name"]).crop_size)
    head = ", new classifier" if info.fresh_head else ""
    return model, f"fine-tuning {info.location or source}{head}"


def to_channels_last(model: nn.Module) -> None:
    # Only the 5-D weights (3D convs): `module.to(memory_format=...)` refuses the 2-D/4-D ones of DTF blocks.
    for p in model.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)


# -- optimiser and schedule -----------------------------------------------------------------
def build_optimizer(model: nn.Module, cfg: Resolved) -> torch.optim.SGD:
    """SGD with momentum and weight decay on every parameter, as the paper describes it."""
    v = cfg.values
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=v["lr"], momentum=v["momentum"], nesterov=v["nesterov"],
                           weight_decay=v["weight_decay"])


@dataclass(frozen=True)
class CosineSchedule:
    """LR per optimiser step: linear warm-up to ``peak`` over ``warmup`` steps, then a cosine to
    ``floor`` at ``total``.  A pure function of the global step, so a resumed run cannot jump."""

    peak: float
    floor: float
    warmup: int
    total: int

    def lr(self, step: int) -> float:
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.floor + (self.peak - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def factor(self, step: int) -> float:
        return self.lr(step) / self.peak if self.peak > 0 else 0.0


def build_schedule(optimizer: torch.optim.Optimizer, cfg: Resolved, steps_per_epoch: int):
    v = cfg.values
    total = v["epochs"] * steps_per_epoch
    warmup = min(total, round(v["warmup_epochs"] * steps_per_epoch))
    schedule = CosineSchedule(v["lr"], min(v["min_lr"], v["lr"]), warmup, total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor), schedule


# -- the model card -------------------------------------------------------------------------
def machine_line(procs: Processes) -> str:
    if procs.device.type == "cuda":
        what = torch.cuda.get_device_name(procs.device)
    else:
        what = f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"
    return f"{procs.world_size} x {what}; torch {torch.__version__}, Python {platform.python_version()}"


def model_card_text(cfg: Resolved, data: dict[str, Any], result: dict[str, Any], machine: str) -> str:
    v = cfg.values
    acc = result.get("val")
    acc_line = (f"top-1 {acc['top1']:.2f}%, top-5 {acc['top5']:.2f}% on {acc['videos']} {v['val_split']!r} "
                "videos (one centre clip and crop each)") if acc else "not validated"
    scaled = v["base_lr"] * cfg.global_batch / 256
    lr_note = (f"base {v['base_lr']:g} at batch 256, scaled linearly" if math.isclose(v["lr"], scaled)
               else f"set explicitly; linear scaling of {v['base_lr']:g} at batch 256 gives {scaled:.3g}")
    rows = [
        ("recipe", f"SGD (momentum {v['momentum']}, weight decay {v['weight_decay']:g}), peak LR {v['lr']:g} "
                   f"({lr_note}), cosine schedule after {v['warmup_epochs']:g} warm-up epoch(s), "
                   f"dropout {v['dropout']}"),
        ("batch", f"{cfg.global_batch} clips per step ({v['batch_size']} x {v['accumulate']} accumulation x "
                  f"{cfg.world_size} processes)"),
        ("input", f"{v['num_frames']} frames ({v['sampling']}), random {v['crop_size']} crop from short side "
                  f"{v['scale_range'][0]}-{v['scale_range'][1]}, flip {'on' if v['flip'] else 'off'}"),
        ("initialisation", data["init"]),
        ("data", f"{v['dataset']} ({Path(str(v['root'])).name}): {data['train_videos']} training videos, "
                 f"{data['num_classes']} classes; {data['skipped']} unreadable videos skipped"),
        ("training", f"{result['epochs']:g} epochs, {result['steps']} steps, {result['elapsed_s'] / 60:.1f} min "
                     "of training"),
        ("accuracy", acc_line),
        ("machine", f"{machine}; precision {v['amp'] if v['amp'] != 'off' else 'float32'}"),
    ]
    table = "\n".join(["| | |", "|---|---|"] + [f"| {k} | {text} |" for k, text in rows])
    return (f"A `{v['model']}` trained with `dtf train` (Dynamic Temporal Filtering, Long et al., ECCV 2022) "
            f"on {v['dataset']}.\n\n## Training\n\n{table}\n")
