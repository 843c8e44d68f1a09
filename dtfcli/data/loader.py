"""A DataLoader that keeps the model fed and survives broken videos.

Videos decode in worker processes; batches come back in pinned memory when a GPU is
present.  A video that fails to decode is dropped from its batch and reported in
``batch["skipped"]`` (its path and reason), so the caller counts skips; the epoch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset


def collate_skipping(items: list[dict]) -> dict:
    """Stack good items; list failed ones.

    Returns dict(clip=(B, C, T, H, W) or None if all failed, label=(B,) long, index=(B,)
    long, path=list[str], skipped=list[(path, reason)]).
    """
    good = [it for it in items if "error" not in it]
    skipped = [(it["path"], getattr(it["error"], "reason", str(it["error"]))) for it in items if "error" in it]
    return {
        "clip": torch.stack([it["clip"] for it in good]) if good else None,
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "path": [it["path"] for it in good],
        "skipped": skipped,
    }


@dataclass
class SkipCounter:
    """Tallies the videos a loader skipped: ``count`` and the first ``keep`` (path, reason)."""

    keep: int = 5
    count: int = 0
    examples: list = field(default_factory=list)

    def update(self, batch: dict) -> None:
        self.count += len(batch["skipped"])
        room = self.keep - len(self.examples)
        if room > 0:
            self.examples.extend(batch["skipped"][:room])

    def summary(self) -> str:
        if not self.count:
            return "no videos skipped"
        eg = "; ".join(f"{p}: {r}" for p, r in self.examples[:3])
        return f"{self.count} videos skipped (e.g. {eg})"


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, num_workers: int = 2,
                pin_memory: bool | None = None, drop_last: bool = False, seed: int | None = None,
                prefetch_factor: int = 2, persistent_workers: bool = False) -> DataLoader:
    """A DataLoader over a :class:`~dtfcli.data.datasets.VideoDataset`.

    ``pin_memory`` defaults to True when CUDA is available.  ``seed`` makes shuffling and
    the workers' random sampling/augmentation repeatable.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    extra = {"prefetch_factor": prefetch_factor, "persistent_workers": persistent_workers} if num_workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=drop_last, collate_fn=collate_skipping,
                      generator=generator, **extra)
