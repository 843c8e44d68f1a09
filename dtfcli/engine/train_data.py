"""Training and validation data for `dtf train`: batches as a pure function of (seed, epoch).

Why no state: the order of an epoch is a permutation drawn from (seed, epoch), cut into
global micro-batches and shared out among processes; each clip's random frames, crop and
flip come from a generator seeded by (seed, epoch, video index), inside whichever process
decodes it.  So resuming at step k of an epoch is "skip the first k x accumulate batches",
decoding nothing, and neither the workers nor the number of them carry state to save.

Sharding: global micro-batch m covers permutation positions [m*B*W, (m+1)*B*W) (B: batch
size per process, W: processes); process r takes the r-th slice of B.  One process with
batch B*W sees exactly the same clips per micro-batch as W processes together.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from dtfcli.data.loader import collate_skipping


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple, stable across processes, runs and Python versions."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SeededItems(Dataset):
    """Items addressed as (epoch, index): the item's randomness is seeded by (seed, epoch, index)
    and the caller's random state is left as it was."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "item", epoch, index))
            return self.dataset[index]


class EpochBatches:
    """Batch sampler of one process: its share of each global micro-batch of an epoch.

    ``set_epoch(epoch, skip)`` picks the epoch and how many of its micro-batches were done.
    Incomplete global micro-batches at the end of an epoch are dropped (every process must
    take part in every step).
    """

    def __init__(self, num_items: int, batch_size: int, *, world_size: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True):
        self.num_items, self.batch_size, self.world_size, self.rank = num_items, batch_size, world_size, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.skip = 0, 0

    @property
    def num_batches(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_items))
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "shuffle", epoch))
        return torch.randperm(self.num_items, generator=generator).tolist()

    def __len__(self) -> int:
        return max(0, self.num_batches - self.skip)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order, span = self.order(self.epoch), self.batch_size * self.world_size
        for m in range(self.skip, self.num_batches):
            start = m * span + self.rank * self.batch_size
            yield [(self.epoch, i) for i in order[start:start + self.batch_size]]


def ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C in a terminal reaches every process of the group: a worker that quit on it could
    take the training process down (a batch it owed never comes) before it saved.  Workers
    leave the signal to the training process, which stops them when it is done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_loader(dataset: Dataset, sampler: EpochBatches, seed: int, num_workers: int, pin_memory: bool
                 ) -> DataLoader:
    extra = {"prefetch_factor": 2, "persistent_workers": False,
             "worker_init_fn": ignore_interrupts} if num_workers > 0 else {}
    # Its own generator: without one, starting the iterator draws from the global random state,
    # which would then differ between a resumed run and an uninterrupted one.
    generator = torch.Generator().manual_seed(derive_seed(seed, "loader", sampler.epoch))
    return DataLoader(SeededItems(dataset, seed), batch_sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, collate_fn=collate_skipping, generator=generator, **extra)


class ShardOf(Dataset):
    """Items rank, rank + W, rank + 2W, ...: every item in exactly one process."""

    def __init__(self, dataset: Dataset, rank: int, world_size: int):
        self.dataset, self.indices = dataset, list(range(rank, len(dataset), world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]


def val_loader(dataset: Dataset, rank: int, world_size: int, batch_size: int, num_workers: int, pin_memory: bool
               ) -> DataLoader:
    """The validation split without padding or duplicates: counts are summed across processes."""
    extra = {"prefetch_factor": 2, "worker_init_fn": ignore_interrupts} if num_workers > 0 else {}
    return DataLoader(ShardOf(dataset, rank, world_size), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, pin_memory=pin_memory, collate_fn=collate_skipping,
                      generator=torch.Generator().manual_seed(0), **extra)
