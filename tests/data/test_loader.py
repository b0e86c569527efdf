import torch

from karmma.data.loader import make_loader


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
