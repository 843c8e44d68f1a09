"""Training checkpoints that survive crashes: written whole or not at all.

Layout inside a run directory::

    checkpoints/step-00001200/     one checkpoint: a Hub-layout model folder (config.json,
        model.safetensors,         model.safetensors, labels.txt, README.md), so that
        state.pt                   `dtf predict --model RUN/checkpoints/best` works, plus the
        rng-rank0.pt ...           training state and each process's random number state
    checkpoints/last -> step-...   symbolic links, replaced atomically
    checkpoints/best -> step-...
    checkpoints/epoch-0010 -> ...  (with save_every)

A checkpoint is written into a hidden temporary folder, every file is flushed to disk
(fsync), and the folder is renamed to its final name; only then does ``last`` move to it
(a new link renamed over the old one).  A crash or a kill at any moment leaves ``last``
pointing at a complete checkpoint.  Folders no link points to are deleted afterwards.

``state.pt`` and ``rng-rank*.pt`` hold only tensors, dicts, lists, numbers and strings, and
are read with ``torch.load(weights_only=True)``: nothing in them can run code.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STATE_NAME = "state.pt"
STATE_FORMAT = 1
CHECKPOINTS = "checkpoints"
POINTERS = ("last", "best")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: names the folder and why."""


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then the folder entries themselves."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file through a temporary name, fsync and rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def point(root: Path, link: str, target: str) -> None:
    """Make ``root/link`` point at ``root/target``, atomically (rename a new link over it)."""
    tmp = root / f".{link}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, root / link)
    fsync_dir(root)


def pointed(root: Path, link: str) -> Path | None:
    path = root / link
    return path.resolve() if path.is_symlink() and path.resolve().is_dir() else None


def prune(root: Path) -> None:
    """Delete checkpoint folders no link points to, and temporary folders of interrupted saves."""
    keep = {p.resolve() for p in root.iterdir() if p.is_symlink()}
    for path in root.iterdir():
        if path.is_symlink():
            continue
        if path.name.startswith(".tmp-") or (path.name.startswith("step-") and path.resolve() not in keep):
            shutil.rmtree(path, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    """This process's random number states, as plain tensors and numbers."""
    import numpy as np

    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [str(np_state[0]), torch.from_numpy(np_state[1].astype("int64")), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(run_dir: Path, global_step: int, write_model: Callable[[Path], None], state: dict[str, Any],
                    *, rank: int = 0, barrier: Callable[[], None] = lambda: None,
                    links: tuple[str, ...] = ("last",)) -> Path | None:
    """Write one checkpoint (collectively: every process calls this) and move ``links`` to it.

    ``write_model(folder)`` writes the model files (rank 0 only); ``state`` goes to
    state.pt.  Each process adds its own rng-rank{rank}.pt.  Returns the folder (rank 0).
    """
    root = run_dir / CHECKPOINTS
    name = f"step-{global_step:08d}"
    tmp = root / f".tmp-{name}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    barrier()
    final = None
    if rank == 0:
        write_model(tmp)
        torch.save({"format": STATE_FORMAT, **state}, tmp / STATE_NAME)
        fsync_tree(tmp)
        final, n = root / name, 1
        while final.exists():  # the same step saved twice (e.g. an epoch end, then a stop): keep both
            final, n = root / f"{name}.{n}", n + 1
        os.rename(tmp, final)
        fsync_dir(root)
        for link in links:
            point(root, link, final.name)
        prune(root)
    barrier()
    return final


def find_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """``--resume PATH``: a run directory (its ``checkpoints/last``) or one checkpoint folder.

    Returns (run directory, checkpoint folder)."""
    path = Path(path)
    if (path / STATE_NAME).is_file():
        return path.resolve().parent.parent, path.resolve()
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run directory")
    last = pointed(path / CHECKPOINTS, "last")
    if last is None or not (last / STATE_NAME).is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from (no {CHECKPOINTS}/last); "
                              "the run stopped before its first checkpoint")
    return path.resolve(), last


def load_state(folder: Path, rank: int = 0) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(training state, this rank's RNG state or None) of a checkpoint folder."""
    try:
        state = torch.load(folder / STATE_NAME, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"{folder / STATE_NAME}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{folder / STATE_NAME}: not a dtf training state (format {STATE_FORMAT})")
    rng_file = folder / f"rng-rank{rank}.pt"
    rng = torch.load(rng_file, map_location="cpu", weights_only=True) if rng_file.is_file() else None
    return state, rng
