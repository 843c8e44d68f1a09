"""The configuration of `dtf train`: one flat set of keys with the paper's recipe as defaults.

Where a value comes from, lowest priority first: the defaults below (:data:`KEYS`), a preset
file (``--config FILE``, TOML: ``key = value`` lines), then ``key=value`` overrides from the
command line.  Keys whose default is ``"auto"`` are filled in by :func:`resolve_config` from
the model and the dataset (base LR by model family, crop from the model, flip off for
Something-Something, ...); the resolved config is what a run saves beside its checkpoints
(``train_config.toml``) and what ``--resume`` reads back.

TOML rather than YAML: ``tomllib`` is in the standard library from Python 3.11 (``tomli``,
the same parser, on 3.10), so presets need no new dependency, and TOML has no implicit
typing surprises (``no`` stays a string, ``1e-4`` is a float).
"""

from __future__ import annotations

import difflib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

AUTO = "auto"
SOMETHING_SOMETHING = ("ssv1", "ssv2")
PAPER_BASE_LR = {"dtfnet": 0.04, "dtfswin": 0.01}  # at PAPER_BATCH clips per optimiser step
PAPER_BATCH = 256
PAPER_EPOCHS = {"ssv1": 64, "ssv2": 64}  # others: 128 (Kinetics-400)
PAPER_SCALE = (256, 340)  # short-side range for a 224 crop; scaled for other crop sizes
PAPER_CROP = 224


class ConfigKeyError(ValueError):
    """A bad key or value in a training config: the message names the key and its source."""


@dataclass(frozen=True)
class Key:
    kind: str  # "str", "int", "float", "bool", "ints", "choice", "path"
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    auto: bool = False  # "auto" is a valid value, filled in by resolve_config
    runtime: bool = False  # may change when resuming (does not change the training trajectory)
    minimum: float | None = None


def _k(kind, default, help, **kw) -> Key:
    return Key(kind, default, help, **kw)


KEYS: dict[str, Key] = {
    # what to train
    "model": _k("str", "dtfnet_r50", "registry name (`dtf models`)"),
    "pretrained": _k("str", "imagenet", "'imagenet' (torchvision's 2D weights inflated), 'imagenet:FILE' (a 2D "
                                        "state dict on disk, inflated), 'none' (from scratch), or video weights to "
                                        "fine-tune (folder, file, hf://org/repo)"),
    "early_stride": _k("int", AUTO, "temporal kernel and stride of the stem (ResNet) or patch embedding (Swin) "
                                    "(auto: the model's, 4; 1 keeps every frame)", auto=True, minimum=1),
    "dataset": _k("choice", "kinetics400", "dataset layout",
                  choices=("kinetics400", "ssv2", "ssv1", "ucf101", "hmdb51", "list", "folder")),
    "root": _k("path", "", "dataset folder (or list file)"),
    "train_split": _k("str", "train", "split to train on"),
    "val_split": _k("str", "val", "split to validate on ('' for none)"),
    "fold": _k("int", 1, "UCF101/HMDB51 split number", minimum=1),
    # clips
    "num_frames": _k("int", AUTO, "frames per clip (auto: the model's)", auto=True, minimum=1),
    "sampling": _k("choice", AUTO, "frame sampling (auto: segments for Something-Something, else dense)",
                   choices=("dense", "segments"), auto=True),
    "frame_interval": _k("int", 4, "frames between samples of a dense clip", minimum=1),
    "crop_size": _k("int", AUTO, "training crop side (auto: 224, or the model's when smaller)", auto=True,
                     minimum=8),
    "scale_range": _k("ints", AUTO, "random short side before the crop (auto: 256-340 scaled to the crop)",
                      auto=True),
    "flip": _k("bool", AUTO, "random horizontal flip (auto: off for Something-Something)", auto=True),
    "randaugment": _k("bool", False, "RandAugment on the training clips"),
    # optimisation
    "epochs": _k("int", AUTO, "training epochs (auto: 64 for Something-Something, else 128)", auto=True, minimum=1),
    "batch_size": _k("int", 8, "clips per process per forward pass", minimum=1),
    "accumulate": _k("int", 1, "forward passes per optimiser step (gradient accumulation)", minimum=1),
    "base_lr": _k("float", AUTO, "LR at a global batch of 256 (auto: 0.04 DTF-Net, 0.01 DTF-Transformer)",
                  auto=True, minimum=0),
    "lr": _k("float", AUTO, "peak LR (auto: base_lr x global batch / 256)", auto=True, minimum=0),
    "min_lr": _k("float", 0.0, "LR at the end of the cosine schedule", minimum=0),
    "warmup_epochs": _k("float", 5.0, "linear warm-up length in epochs, applied per step (not in the paper)",
                        minimum=0),
    "momentum": _k("float", 0.9, "SGD momentum", minimum=0),
    "nesterov": _k("bool", False, "Nesterov momentum"),
    "weight_decay": _k("float", 1e-4, "weight decay", minimum=0),
    "dropout": _k("float", 0.5, "dropout before the classifier", minimum=0),
    "label_smoothing": _k("float", 0.0, "label smoothing of the cross-entropy", minimum=0),
    "clip_grad_norm": _k("float", 0.0, "clip the gradient norm to this (0: off)", minimum=0),
    "seed": _k("int", 0, "seed of the shuffle, augmentation and initialisation"),
    # machine
    "device": _k("str", AUTO, "auto, cpu, cuda or cuda:N (under torchrun: the local GPU)", auto=True),
    "amp": _k("choice", AUTO, "mixed precision (auto: bf16 on a GPU that has it, fp16 on others, off on CPU)",
              choices=("off", "bf16", "fp16"), auto=True),
    "channels_last": _k("bool", AUTO, "channels-last memory format (auto: on GPU)", auto=True),
    "sync_bn": _k("bool", False, "synchronise batch norm statistics across GPUs (DDP on CUDA only)"),
    "deterministic": _k("bool", False, "deterministic algorithms (slower; for exact reproduction)"),
    "num_workers": _k("int", 4, "video decoding processes per training process", minimum=0, runtime=True),
    # output
    "run_dir": _k("path", AUTO, "where the run writes (auto: runs/MODEL-DATASET)", auto=True),
    "val_every": _k("int", 1, "validate every N epochs (0: only at the end, -1: never)", minimum=-1),
    "save_every": _k("int", 0, "also keep the checkpoint of every N-th epoch (0: only last and best)", minimum=0),
    "checkpoint_minutes": _k("float", 30.0, "also save `last` inside an epoch this often (0: epoch ends only)",
                             minimum=0, runtime=True),
    "log_every": _k("int", 10, "steps between progress lines when the output is not a terminal", minimum=1,
                    runtime=True),
    "tensorboard": _k("bool", True, "TensorBoard event files too (needs the tensorboard package)", runtime=True),
    "max_steps": _k("int", 0, "stop after this many optimiser steps (0: all epochs; the schedule is unchanged)",
                    minimum=0, runtime=True),
}


def defaults() -> dict[str, Any]:
    return {name: key.default for name, key in KEYS.items()}


def suggest(name: str) -> str:
    close = difflib.get_close_matches(name, KEYS, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else " (see `dtf train --keys`)"


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _describe(kind: str, key: Key) -> str:
    what = {"str": "a string", "path": "a path", "int": "an integer", "float": "a number", "bool": "true or false",
            "ints": "two integers (e.g. 256,340)", "choice": "one of " + ", ".join(key.choices)}[kind]
    return f"{what} or auto" if key.auto else what


def coerce(name: str, value: Any, source: str = "") -> Any:
    """Check and convert one value (a string from the command line, or a TOML value)."""
    where = f" ({source})" if source else ""
    if name not in KEYS:
        raise ConfigKeyError(f"unknown config key '{name}'{where}{suggest(name)}")
    key = KEYS[name]
    if key.auto and value == AUTO:
        return AUTO
    bad = ConfigKeyError(f"config key '{name}'{where}: expected {_describe(key.kind, key)}, got {value!r}")
    text = isinstance(value, str)
    if key.kind in ("str", "path"):
        if not text:
            raise bad
        out: Any = value
    elif key.kind == "choice":
        if value not in key.choices:
            raise bad
        out = value
    elif key.kind == "bool":
        if isinstance(value, bool):
            out = value
        elif text and value.lower() in _TRUE + _FALSE:
            out = value.lower() in _TRUE
        else:
            raise bad
    elif key.kind == "int":
        if isinstance(value, bool):
            raise bad
        try:
            out = int(value) if text or isinstance(value, int) else None
        except ValueError:
            raise bad from None
        if out is None:
            raise bad
    elif key.kind == "float":
        if isinstance(value, bool) or not (text or isinstance(value, (int, float))):
            raise bad
        try:
            out = float(value)
        except ValueError:
            raise bad from None
        if not math.isfinite(out):
            raise bad
    elif key.kind == "ints":
        items = value.strip("[]() ").split(",") if text else value
        try:
            out = [int(v) for v in items] if isinstance(items, (list, tuple)) else None
        except (TypeError, ValueError):
            raise bad from None
        if out is None or len(out) != 2 or not 0 < out[0] <= out[1]:
            raise bad
    else:  # pragma: no cover
        raise AssertionError(key.kind)
    if key.minimum is not None and isinstance(out, (int, float)) and out < key.minimum:
        raise ConfigKeyError(f"config key '{name}'{where}: must be at least {key.minimum:g}, got {value!r}")
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A preset or saved config: flat ``key = value`` TOML.  Errors name the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigKeyError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigKeyError(f"{path}: invalid TOML ({exc})") from None
    out = {}
    for name, value in raw.items():
        if isinstance(value, dict):
            raise ConfigKeyError(f"{path}: [{name}] tables are not used; write the keys at the top level")
        out[name] = coerce(name, value, str(path))
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "epochs=3"]`` -> checked values."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or not name:
            raise ConfigKeyError(f"'{item}': expected key=value (e.g. lr=0.01)")
        out[name] = coerce(name, value.strip(), "command line")
    return out


def build_config(config_file: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None,
                 ) -> dict[str, Any]:
    """Defaults, then the file, then the overrides (``key=value`` strings or a dict)."""
    config = defaults()
    if config_file:
        config.update(read_config_file(config_file))
    if isinstance(overrides, list):
        config.update(parse_overrides(overrides))
    elif overrides:
        config.update({k: coerce(k, v, "overrides") for k, v in overrides.items()})
    return config


@dataclass
class Resolved:
    """A config with every "auto" filled in, and what was derived on the way."""

    values: dict[str, Any]
    family: str
    world_size: int
    global_batch: int = field(init=False)

    def __post_init__(self):
        v = self.values
        self.global_batch = v["batch_size"] * v["accumulate"] * self.world_size

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def model_early_stride(spec) -> int | None:
    """The temporal stride of a registry entry's stem (ResNet) or patch embedding (Swin), or None."""
    import inspect

    param = inspect.signature(spec.builder).parameters.get("early_stride")
    if param is None:
        return None
    return int(spec.arch.get("early_stride", param.default))


def resolve_config(config: dict[str, Any], *, world_size: int = 1, cuda: bool = False) -> Resolved:
    """Fill in the "auto" values from the model, the dataset and the machine."""
    from dtfcli.models import get_model_spec

    v = dict(config)
    if not v["root"]:
        raise ConfigKeyError("config key 'root': the dataset folder is required (e.g. root=data/ssv2)")
    try:
        spec = get_model_spec(v["model"])
    except KeyError as exc:
        raise ConfigKeyError(f"config key 'model': {exc.args[0]}") from None
    something = v["dataset"] in SOMETHING_SOMETHING
    stem_stride = model_early_stride(spec)
    if v["early_stride"] == AUTO:
        v["early_stride"] = stem_stride or 1
    elif stem_stride is None and v["early_stride"] != 1:
        raise ConfigKeyError(f"config key 'early_stride': {v['model']} has no temporal stem (leave it at auto)")
    if v["num_frames"] == AUTO:
        v["num_frames"] = spec.num_frames
    if v["sampling"] == AUTO:
        v["sampling"] = "segments" if something else "dense"
    if v["crop_size"] == AUTO:
        # The paper trains every full-size model on 224 crops (and tests the ResNets at 256, the
        # registry's crop); CPU-sized models train at their own, smaller crop.
        v["crop_size"] = min(spec.crop_size, PAPER_CROP)
    if v["scale_range"] == AUTO:
        v["scale_range"] = [round(v["crop_size"] * s / PAPER_CROP) for s in PAPER_SCALE]
    if v["flip"] == AUTO:
        v["flip"] = not something  # direction-paired classes ("left to right" vs "right to left")
    if v["epochs"] == AUTO:
        v["epochs"] = PAPER_EPOCHS.get(v["dataset"], 128)
    if v["base_lr"] == AUTO:
        v["base_lr"] = PAPER_BASE_LR[spec.family]
    resolved = Resolved(v, spec.family, world_size)
    if v["lr"] == AUTO:
        v["lr"] = v["base_lr"] * resolved.global_batch / PAPER_BATCH
    if v["device"] == AUTO:
        v["device"] = "cuda" if cuda else "cpu"
    on_gpu = v["device"].startswith("cuda")
    if v["amp"] == AUTO:
        v["amp"] = "off"
        if on_gpu:
            import torch

            v["amp"] = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if v["channels_last"] == AUTO:
        v["channels_last"] = on_gpu
    if v["sync_bn"] and not on_gpu:
        raise ConfigKeyError("config key 'sync_bn': synchronised batch norm needs CUDA devices")
    if v["run_dir"] == AUTO:
        v["run_dir"] = str(Path("runs") / f"{v['model']}-{v['dataset']}")
    return resolved


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def dump_config(values: dict[str, Any], header: str = "") -> str:
    """Flat TOML text of a config, readable by :func:`read_config_file`."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    lines += [f"{name} = {_toml_value(values[name])}" for name in KEYS if name in values]
    return "\n".join(lines) + "\n"


def keys_table() -> list[tuple[str, str, str]]:
    """(key, default, help) rows for `dtf train --keys` and the docs."""
    return [(name, _toml_value(k.default), k.help) for name, k in KEYS.items()]
