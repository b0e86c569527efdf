"""Seeded loaders: sampling that makes training runs exactly resumable and evaluation repeatable."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from karmma.data.dataset import collate_clips


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for (run seed, epoch, slot): slot ``index >= 0`` is dataset item
    ``index`` (its crop, frames and dropout noise); the named slots below are the other draws."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# Negative slots of item_seed belong to no dataset item, so they never repeat an item's draws:
# the named slots lie in -1 .. FIRST_STEP_SLOT + 1, the training steps' from FIRST_STEP_SLOT down.
SHUFFLE_SLOT = -1  # the epoch's shuffling order (SeededSampler)
SWEEP_NOISE_SLOT = -7  # evaluation: the missing-modality sweep's noise, item_seed(sweep seed, 0, SWEEP_NOISE_SLOT)
FIRST_STEP_SLOT = -1000
# Training reseeds torch's global RNG (layer dropout, stochastic depth) at every step from its own
# slot: distinct for every (step, rank) with fewer than MAX_RANKS ranks, and the same after a
# resume, so a resumed run draws as an uninterrupted one.
MAX_RANKS = 1000


def step_slot(batch_idx: int, rank: int) -> int:
    """The item_seed slot of training step ``batch_idx`` on ``rank``: ``FIRST_STEP_SLOT - (batch_idx *
    MAX_RANKS + rank)``, below every item's slot and every named slot."""
    if not 0 <= rank < MAX_RANKS:
        raise ValueError(f"rank {rank}: step seeds are distinct for ranks 0 .. {MAX_RANKS - 1} only")
    return FIRST_STEP_SLOT - (batch_idx * MAX_RANKS + rank)


#: The fixed views of the teacher cache and ``cache.decode_once``: view ``v`` of item ``index``
#: draws as item ``index`` of "epoch" VIEW_EPOCH + v, an epoch no training run reaches.
VIEW_EPOCH = 1_000_000


def view_seed(seed: int, index: int, view: int) -> int:
    """The item seed of fixed view ``view`` of dataset item ``index`` (see VIEW_EPOCH)."""
    return item_seed(seed, VIEW_EPOCH + view, index)


class SeededSampler(Sampler):
    """Shuffles with ``(seed, epoch)`` and yields ``(index, item_seed)`` for this rank.

    Every random choice of an item follows from its seed, so an epoch is the
    same whether it runs on one process or is split across ``world_size``
    ranks (rank r takes positions r, r + W, ...), and after a resume.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, SHUFFLE_SLOT))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        order += order[: len(self) * self.world_size - self.size]  # pad so every rank gets as many
        for index in order[self.rank :: self.world_size]:
            yield index, item_seed(self.seed, self.epoch, index)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    shuffle: bool,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
    collate=collate_clips,
) -> DataLoader:
    sampler = SeededSampler(len(dataset), seed, shuffle, rank, world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        # Workers outlive the epoch: starting them costs about a second per epoch (train and validation
        # loaders) on 2 cores, 14 s of a 72-s student-sized stage. The sampler still runs in this process,
        # so every epoch gets its own order and item seeds.
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
