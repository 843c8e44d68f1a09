"""`dtf train` as a library: ``train(config) -> TrainResult``.

    >>> from dtfcli.engine.train import train                                   # doctest: +SKIP
    >>> result = train({"model": "dtfnet_tiny", "dataset": "ssv2", "root": "synth",
    ...                 "pretrained": "none", "epochs": 2})                      # doctest: +SKIP
    >>> result.final_dir, result.val["top1"]                                    # doctest: +SKIP

One loop for one process or many (``torchrun``).  How it stops:

- at the end: ``status="finished"``, the model in ``RUN_DIR/final`` (Hub layout);
- on SIGINT or SIGTERM: the current step finishes, a checkpoint is written, and the result
  says ``status="interrupted"`` (the command exits 130 or 143); a second Ctrl-C quits at once;
- on a non-finite loss: :class:`NonFiniteLossError` naming the step, before the weights are
  updated and without writing a checkpoint, so ``checkpoints/last`` stays the last good one.

See docs/training.md.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dtfcli.data.synth import SYNTH_CLASSES, SYNTH_SYMMETRIES
from dtfcli.engine import checkpoint_io as ckpt
from dtfcli.engine.train_config import (
    KEYS,
    ConfigKeyError,
    Resolved,
    build_config,
    coerce,
    dump_config,
    read_config_file,
    resolve_config,
)
from dtfcli.engine.train_data import EpochBatches, derive_seed, train_loader, val_loader
from dtfcli.engine.train_log import MetricsLog
from dtfcli.engine.train_setup import (
    Processes,
    RunDirExistsError,  # noqa: F401  (raised through claim_run_dir; importable from here)
    StopRequest,
    TrainError,
    build_datasets,
    build_model,
    build_optimizer,
    build_schedule,
    claim_run_dir,
    link_final,
    machine_line,
    model_card_text,
    start_processes,
    stop_processes,
    to_channels_last,
)

CONFIG_FILE = "train_config.toml"
EXIT_DIVERGED = 4  # the loss became NaN or infinite
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as shells report it


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite; the run stopped before updating the weights."""

    def __init__(self, message: str, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


@dataclass
class TrainResult:
    status: str  # "finished" or "interrupted"
    run_dir: Path
    global_step: int
    epoch: float  # epochs done, fractional when stopped inside one
    final_dir: Path | None = None
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    signal: str | None = None
    val: dict[str, float] | None = None  # the last validation: top1, top5, loss, videos, skipped
    best_top1: float | None = None
    skipped: int = 0
    elapsed_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_SIGNAL.get(self.signal or "", 0)


class Reporter:
    """What the run tells its user (rank 0 only); the command line shows it with rich."""

    def start(self, info: dict[str, Any]) -> None: ...
    def epoch(self, epoch: int, steps: int, done: int) -> None: ...
    def step(self, row: dict[str, Any]) -> None: ...
    def validation(self, row: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...
    def end(self) -> None: ...


def _prepare_config(config, resume) -> tuple[dict[str, Any], Path | None, Path | None]:
    """(config values, run dir to resume, checkpoint folder to resume)."""
    if resume is None:
        if isinstance(config, (str, Path)):
            return build_config(config), None, None
        return build_config(None, dict(config or {})), None, None
    if isinstance(config, (str, Path)):
        raise ConfigKeyError(f"{config}: a resumed run keeps the config it was started with ({CONFIG_FILE})")
    run_dir, folder = ckpt.find_checkpoint(resume)
    saved = read_config_file(run_dir / CONFIG_FILE)
    for name, value in dict(config or {}).items():
        value = coerce(name, value, "overrides")
        if KEYS[name].runtime:
            saved[name] = value
        elif value != saved.get(name):
            raise ConfigKeyError(f"config key '{name}': cannot change when resuming (the run has "
                                 f"{saved.get(name)!r}); start a new run to train with {value!r}")
    saved["run_dir"] = str(run_dir)
    return saved, run_dir, folder


def train(config: dict[str, Any] | str | Path | None = None, *, resume: str | Path | None = None,
          exist_ok: bool = False, reporter: Reporter | None = None) -> TrainResult:
    """Train a model; see docs/training.md.

    Args:
        config: config keys (dtfcli.engine.train_config.KEYS; missing keys take their
            defaults) or a TOML file.  With ``resume``: only keys that may change on resume
            (num_workers, max_steps, ...).
        resume: a run directory (continues from ``checkpoints/last``) or a checkpoint folder.
        exist_ok: allow a fresh run in a run directory that holds one (its files are replaced).
        reporter: receives progress (rank 0); see :class:`Reporter`.

    Raises:
        ConfigKeyError, TrainError, NonFiniteLossError (each with a one-line message).
    """
    values, _, resume_folder = _prepare_config(config, resume)
    procs = start_processes(values["device"])
    try:
        return _Run(values, procs, resume_folder, exist_ok, reporter if procs.main else None).run()
    finally:
        stop_processes(procs)


class _Run:
    def __init__(self, values, procs: Processes, resume_folder: Path | None, exist_ok: bool, reporter):
        self.procs, self.resume_folder, self.exist_ok = procs, resume_folder, exist_ok
        self.report = reporter or Reporter()
        values = {**values, "device": "cuda" if procs.device.type == "cuda" else values["device"]}
        self.cfg: Resolved = resolve_config(values, world_size=procs.world_size, cuda=procs.device.type == "cuda")
        self.v = self.cfg.values
        self.run_dir = Path(self.v["run_dir"])

    # -- setup --------------------------------------------------------------------------------
    def _setup(self) -> None:
        v, procs = self.v, self.procs
        if v["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif procs.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.resume_folder is None:
            claim_run_dir(self.run_dir, self.exist_ok, procs)
        self.train_set, self.val_set = build_datasets(self.cfg)
        self.classes = list(self.train_set.classes)
        self.sampler = EpochBatches(len(self.train_set), v["batch_size"], world_size=procs.world_size,
                                    rank=procs.rank, seed=v["seed"])
        self.steps_per_epoch = self.sampler.num_batches // v["accumulate"]
        if self.steps_per_epoch == 0:
            raise ConfigKeyError(f"config key 'batch_size': {len(self.train_set)} training videos make no full "
                                 f"step of {self.cfg.global_batch} clips (batch_size x accumulate x processes)")
        torch.manual_seed(derive_seed(v["seed"], "init"))
        model, self.init_line = build_model(self.cfg, len(self.classes), resume_from=self.resume_folder)
        # How clips were sampled travels with the weights: dtf predict and dtf eval test the same way.
        model.config.update(sampling=v["sampling"], frame_interval=v["frame_interval"])
        # So do the label symmetries, which are known for the synthetic classes only (a model
        # fine-tuned to other classes of the same number must not keep its starting point's).
        model.config.pop("symmetries", None)
        if tuple(self.classes) == SYNTH_CLASSES:
            model.config["symmetries"] = SYNTH_SYMMETRIES
        self.model = model.to(procs.device)
        if v["channels_last"]:
            to_channels_last(self.model)
        if v["sync_bn"] and procs.distributed:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.scheduler, self.schedule = build_schedule(self.optimizer, self.cfg, self.steps_per_epoch)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(v["amp"])
        self.scaler = torch.amp.GradScaler(procs.device.type) if v["amp"] == "fp16" else None
        self.ddp = None
        if procs.distributed:
            ids = [procs.device.index] if procs.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.global_step, self.best_top1, self.best_step, self.elapsed = 0, -1.0, -1, 0.0
        self.skipped = 0
        torch.manual_seed(derive_seed(v["seed"], "train", procs.rank))  # dropout etc. differ per process
        if self.resume_folder is not None:
            self._restore()
        elif procs.main:
            (self.run_dir / CONFIG_FILE).write_text(dump_config(v, "dtf train: the resolved config of this run"),
                                                    encoding="utf-8")
        pin = procs.device.type == "cuda"
        self.loader_args = (self.train_set, self.sampler, v["seed"], v["num_workers"], pin)
        self.log = MetricsLog(self.run_dir, resume_step=self.global_step if self.resume_folder else None,
                              tensorboard=v["tensorboard"]) if procs.main else None

    def _restore(self) -> None:
        folder = self.resume_folder
        state, rng = ckpt.load_state(folder, self.procs.rank)
        if state.get("world_size") != self.procs.world_size:
            raise ckpt.CheckpointError(f"{folder}: the run was trained with {state.get('world_size')} processes; "
                                       f"resume it with as many (torchrun --nproc_per_node), not "
                                       f"{self.procs.world_size}")
        if state.get("steps_per_epoch") != self.steps_per_epoch:
            raise ckpt.CheckpointError(f"{folder}: the run had {state.get('steps_per_epoch')} steps per epoch, the "
                                       f"dataset now gives {self.steps_per_epoch}; its videos changed")
        # The weights came with the model (build_model loads the checkpoint folder).
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.global_step = int(state["global_step"])
        self.best_top1, self.best_step = float(state["best_top1"]), int(state["best_step"])
        self.elapsed = float(state["elapsed_s"])
        self.skipped = int(state["skipped"]) if self.procs.main else 0
        if rng is not None:
            ckpt.set_rng_state(rng)
        self.report.message(f"resuming {self.run_dir} at step {self.global_step} "
                            f"(epoch {self.global_step // self.steps_per_epoch + 1}) from {folder.name}")

    # -- checkpoints --------------------------------------------------------------------------
    def _save(self, links: tuple[str, ...] = ("last",)) -> Path | None:
        from dtfcli.hub import save_pretrained

        skipped = int(self.procs.sum([float(self.skipped)])[0])  # all processes' (rank 0 restores it)
        state = {
            "global_step": self.global_step, "epoch": self.global_step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch, "world_size": self.procs.world_size,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "best_top1": self.best_top1, "best_step": self.best_step,
            "elapsed_s": self.elapsed + time.monotonic() - self.t0, "skipped": skipped,
        }
        folder = ckpt.save_checkpoint(
            self.run_dir, self.global_step, lambda d: save_pretrained(self.model, d, labels=self.classes), state,
            rank=self.procs.rank, barrier=self.procs.barrier, links=links)
        self.saved_step = self.global_step
        return folder

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.t0 = time.monotonic()
        self._setup()
        self.saved_step = self.global_step if self.resume_folder else -1
        v, procs = self.v, self.procs
        self.report.start({
            "run_dir": str(self.run_dir), "init": self.init_line, "train_videos": len(self.train_set),
            "val_videos": len(self.val_set) if self.val_set is not None else 0, "classes": len(self.classes),
            "steps_per_epoch": self.steps_per_epoch, "epochs": v["epochs"], "global_batch": self.cfg.global_batch,
            "lr": v["lr"], "device": str(procs.device), "world_size": procs.world_size, "amp": v["amp"],
            "start_step": self.global_step, "total_steps": self.steps_per_epoch * v["epochs"],
            "log_every": v["log_every"],
        })
        self.last_val: dict[str, float] | None = None
        stop = StopRequest()
        try:
            with stop:
                status = self._loop(stop)
            if status == "finished":
                return self._finish()
            return self._result("interrupted", signal_name=stop.signal)
        finally:
            if self.log is not None:
                self.log.close()
            self.report.end()

    def _loop(self, stop: StopRequest) -> str:
        v = self.v
        total = v["epochs"] * self.steps_per_epoch
        last_save = time.monotonic()
        while self.global_step < total:
            epoch, done = divmod(self.global_step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, skip=done * v["accumulate"])
            self.report.epoch(epoch, self.steps_per_epoch, done)
            self.model.train()
            batches = iter(train_loader(*self.loader_args))
            for _ in range(done, self.steps_per_epoch):
                nonfinite, loss_sum, clips, step_s = self._step(batches)
                flags = self.procs.sum([float(nonfinite), loss_sum, clips, float(stop.signal is not None)])
                if flags[0]:
                    self._diverged()
                self._apply_step(epoch, flags[1] / max(flags[2], 1.0), flags[2] / max(step_s, 1e-9))
                end_of_epoch = self.global_step % self.steps_per_epoch == 0
                if end_of_epoch:
                    self._end_epoch(epoch + 1)
                if flags[3]:
                    if self.saved_step != self.global_step:
                        self._save()
                    return "interrupted"
                if v["max_steps"] and self.global_step >= v["max_steps"]:
                    if self.saved_step != self.global_step:
                        self._save()
                    return "finished"
                minutes = v["checkpoint_minutes"]
                if minutes and not end_of_epoch and time.monotonic() - last_save > 60 * minutes:
                    self._save()
                    last_save = time.monotonic()
            del batches
        return "finished"

    def _step(self, batches) -> tuple[bool, float, float, float]:
        """One optimiser step's forward and backward passes: (non-finite?, loss sum, clips, seconds)."""
        v, procs = self.v, self.procs
        accumulate = v["accumulate"]
        net = self.ddp or self.model
        nonfinite, loss_sum, clips = False, 0.0, 0
        start = time.perf_counter()
        for micro in range(accumulate):
            batch = next(batches)
            self.skipped += len(batch["skipped"])
            if batch["skipped"]:
                self.report.message(f"skipped {len(batch['skipped'])} unreadable videos "
                                    f"(e.g. {batch['skipped'][0][0]}: {batch['skipped'][0][1]})")
            clip = batch["clip"]
            if clip is None and not procs.distributed:
                continue
            empty = clip is None  # every process must join the gradient exchange: a zero-weight pass
            if empty:  # (two clips: batch norm needs more than one value per channel)
                shape = (2, 3, v["num_frames"], v["crop_size"], v["crop_size"])
                clip, labels = torch.zeros(shape), torch.zeros(2, dtype=torch.long)
            else:
                labels = batch["label"]
            count = 0 if empty else len(labels)
            if count == 1 and batch["skipped"]:
                # Skipping left one clip: batch norm over one clip fails where the last stage is 1 x 1 in
                # space. The clip twice has the same batch mean and (biased) variance, loss and gradient.
                clip, labels = clip.repeat(2, 1, 1, 1, 1), labels.repeat(2)
            clip = clip.to(procs.device, non_blocking=True)
            labels = labels.to(procs.device, non_blocking=True)
            if v["channels_last"]:
                clip = clip.contiguous(memory_format=torch.channels_last_3d)
            sync = contextlib.nullcontext()
            if self.ddp is not None and micro < accumulate - 1:
                sync = self.ddp.no_sync()
            with sync:
                with torch.autocast(procs.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    logits = net(clip)
                loss = self._loss(logits.float(), labels)
                if empty:
                    loss = loss * 0.0
                else:
                    value = float(loss.detach())
                    nonfinite = nonfinite or not torch.isfinite(loss.detach()).item()
                    loss_sum, clips = loss_sum + value * count, clips + count
                scaled = loss / accumulate
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return nonfinite, loss_sum, float(clips), time.perf_counter() - start

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.v["label_smoothing"])

    def _apply_step(self, epoch: int, loss: float, clips_per_s: float) -> None:
        v = self.v
        if self.scaler is not None:
            if v["clip_grad_norm"]:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), v["clip_grad_norm"])
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if v["clip_grad_norm"]:
                nn.utils.clip_grad_norm_(self.model.parameters(), v["clip_grad_norm"])
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.global_step += 1
        row = {"step": self.global_step, "epoch": round(self.global_step / self.steps_per_epoch, 4), "lr": lr,
               "loss": loss, "clips_per_s": clips_per_s,
               "elapsed_s": round(self.elapsed + time.monotonic() - self.t0, 3)}
        if self.log is not None:
            self.log.step(row)
        self.report.step(row)

    def _diverged(self) -> None:
        epoch, done = divmod(self.global_step, self.steps_per_epoch)
        last = ckpt.pointed(self.run_dir / ckpt.CHECKPOINTS, "last")
        keep = (f"the last good checkpoint is {last} (resume with --resume {self.run_dir})" if last
                else "no checkpoint was written before it")
        raise NonFiniteLossError(
            f"the loss became NaN or infinite at step {self.global_step + 1} (epoch {epoch + 1}, step {done + 1} "
            f"of {self.steps_per_epoch}); the weights were not updated; {keep}. Try a lower lr "
            f"(it is {self.v['lr']:g}) or amp=off", self.global_step + 1, last)

    def _end_epoch(self, epochs_done: int) -> None:
        v = self.v
        final = epochs_done == v["epochs"]
        every = v["val_every"]
        links = ["last"]
        if self.val_set is not None and (final or (every > 0 and epochs_done % every == 0)):
            self.last_val = self._validate(epochs_done)
            if self.last_val["top1"] > self.best_top1:
                self.best_top1, self.best_step = self.last_val["top1"], self.global_step
                links.append("best")
        if v["save_every"] and epochs_done % v["save_every"] == 0:
            links.append(f"epoch-{epochs_done:04d}")
        self._save(tuple(links))

    @torch.no_grad()
    def _validate(self, epochs_done: int) -> dict[str, float]:
        v, procs = self.v, self.procs
        self.model.eval()
        loader = val_loader(self.val_set, procs.rank, procs.world_size, v["batch_size"], v["num_workers"],
                            procs.device.type == "cuda")
        top1 = top5 = loss_sum = count = skipped = 0.0
        for batch in loader:
            skipped += len(batch["skipped"])
            if batch["clip"] is None:
                continue
            clip, labels = batch["clip"].to(procs.device), batch["label"].to(procs.device)
            if v["channels_last"]:
                clip = clip.contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(procs.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = self.model(clip).float()
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += float((best[:, 0] == labels).sum())
            top5 += float((best == labels[:, None]).any(dim=1).sum())
            count += len(labels)
        top1, top5, loss_sum, count, skipped = procs.sum([top1, top5, loss_sum, count, skipped])
        self.model.train()
        row = {"step": self.global_step, "epoch": epochs_done, "top1": 100 * top1 / max(count, 1),
               "top5": 100 * top5 / max(count, 1), "loss": loss_sum / max(count, 1), "videos": int(count),
               "skipped": int(skipped)}
        if self.log is not None:
            self.log.validation(row)
        self.report.validation(row)
        return row

    # -- the end ------------------------------------------------------------------------------
    def _result(self, status: str, signal_name: str | None = None, final_dir: Path | None = None) -> TrainResult:
        root = self.run_dir / ckpt.CHECKPOINTS
        return TrainResult(
            status=status, run_dir=self.run_dir, global_step=self.global_step,
            epoch=self.global_step / self.steps_per_epoch, final_dir=final_dir,
            last_checkpoint=ckpt.pointed(root, "last"), best_checkpoint=ckpt.pointed(root, "best"),
            signal=signal_name, val=self.last_val, best_top1=self.best_top1 if self.best_top1 >= 0 else None,
            skipped=int(self.procs.sum([float(self.skipped)])[0]),
            elapsed_s=self.elapsed + time.monotonic() - self.t0, config=dict(self.v))

    def _finish(self) -> TrainResult:
        from dtfcli.hub import save_pretrained

        if self.last_val is None and self.val_set is not None and self.v["val_every"] >= 0:
            self.last_val = self._validate(self.global_step // self.steps_per_epoch)
        skipped = int(self.procs.sum([float(self.skipped)])[0])
        final = self.run_dir / "final"
        if self.procs.main:
            elapsed = self.elapsed + time.monotonic() - self.t0
            data = {"init": self.init_line, "train_videos": len(self.train_set), "num_classes": len(self.classes),
                    "skipped": skipped}
            summary = {"val": self.last_val, "epochs": self.global_step / self.steps_per_epoch,
                       "steps": self.global_step, "elapsed_s": elapsed}
            metrics = ({self.v["dataset"]: {"top1": self.last_val["top1"], "top5": self.last_val["top5"]}}
                       if self.last_val else None)
            tmp = self.run_dir / ".final.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            save_pretrained(self.model, tmp, labels=self.classes, metrics=metrics,
                            description=model_card_text(self.cfg, data, summary, machine_line(self.procs)))
            ckpt.fsync_tree(tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            link_final(self.run_dir)
            self.report.message(f"model saved to {final} (dtf predict --model {final})")
        self.procs.barrier()
        return self._result("finished", final_dir=final)
