import pytest
import torch

from karmma.data.loader import (
    FIRST_STEP_SLOT,
    MAX_RANKS,
    SHUFFLE_SLOT,
    SWEEP_NOISE_SLOT,
    item_seed,
    make_loader,
    step_slot,
)


class _Seeds(torch.utils.data.Dataset):
    """Returns what the sampler handed over: ``(index, item_seed)``."""

    def __len__(self):
        return 10

    def __getitem__(self, key):
        return key


def _collate(items):
    return list(items)


def _epochs(workers: int, epochs: int = 3) -> list[list[tuple[int, int]]]:
    loader = make_loader(_Seeds(), batch_size=4, seed=7, shuffle=True, workers=workers, collate=_collate)
    seen = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        seen.append([item for batch in loader for item in batch])
    return seen


def test_persistent_workers_still_draw_each_epoch_like_the_main_process():
    loader = make_loader(_Seeds(), batch_size=4, seed=7, shuffle=True, workers=2, collate=_collate)
    assert loader.persistent_workers
    in_workers, in_process = _epochs(workers=2), _epochs(workers=0)
    assert in_workers == in_process
    orders = [[index for index, _ in epoch] for epoch in in_workers]
    assert sorted(orders[0]) == list(range(10))
    assert orders[0] != orders[1] != orders[2]  # a new order every epoch, not the first one frozen
    assert in_workers[0][0][1] != in_workers[1][orders[1].index(orders[0][0])][1]  # and new item seeds


def test_a_training_steps_seed_is_no_items_seed_and_no_other_named_draws():
    """Slots of item_seed: items are >= 0, the named draws negative; a step's reseeding of torch's
    global RNG must draw neither (it once took slot batch_idx * MAX_RANKS + rank: step 0 on rank 0
    drew item 0's seed, so its layer dropout repeated the item's crop and dropout noise draws)."""
    named = {SHUFFLE_SLOT, SWEEP_NOISE_SLOT}
    steps = [step_slot(batch, rank) for batch in range(50) for rank in (0, 1, 7, MAX_RANKS - 1)]
    assert len(set(steps)) == len(steps)  # every (step, rank) its own seed
    assert all(slot < 0 and slot not in named for slot in steps)
    assert min(named) > FIRST_STEP_SLOT >= max(steps)
    items = {item_seed(3, 0, index) for index in range(10_000)} | {item_seed(3, 0, slot) for slot in named}
    assert not items & {item_seed(3, 0, slot) for slot in steps}
    with pytest.raises(ValueError, match="ranks 0 .. 999"):
        step_slot(0, MAX_RANKS)
