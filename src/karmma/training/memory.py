"""Training clips decoded once into memory (``cache.decode_once``).

On a small dataset and a small model (SynthKitchen on a laptop CPU) decoding
JPEGs, flow and audio every epoch costs more than the forward and backward
pass. :class:`DecodedViews` decodes ``cache.train_views`` augmented views of
every training clip once (frames, crop and flip seeded by
:func:`~karmma.data.loader.view_seed`, the views the teacher's logits are
cached for; ``train_views: 0``: the centred evaluation view) and keeps them as
the loader hands them over: V and F as uint8 crops with their maps (exact, a
quarter of float32's memory), A as float16.
Each epoch then draws one view per clip and fresh modality-dropout noise, and
only computes. It trades augmentation diversity for speed, like the teacher's
feature cache.

:class:`DecodedClips` does the same for the validation clips
(``cache.decode_validation_once``). There it changes nothing: an evaluation
item is the same every epoch (centred frames, centred crop, the segment's
audio window), so each validation only computes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from karmma.data.dataset import ClipDataset
from karmma.data.loader import view_seed


class _Views(Dataset):
    def __init__(self, clips: ClipDataset, views: int, seed: int):
        self.clips, self.views, self.seed = clips, views, seed

    def __len__(self) -> int:
        return len(self.clips.samples) * self.views

    def __getitem__(self, row: int) -> dict:
        index, view = divmod(row, self.views)
        item = self.clips[(index, view_seed(self.seed, index, view))]
        # uint8 crops (V, F) as they are; float inputs (A) at half the memory, restored to float32 on use
        item["inputs"] = {k: v if v.dtype == torch.uint8 else v.half() for k, v in item["inputs"].items()}
        return item


def _own_memory(value):
    """``value`` with every tensor copied out of shared memory (dicts and lists walked)."""
    if isinstance(value, torch.Tensor):
        return value.clone() if value.is_shared() else value
    if isinstance(value, dict):
        return {k: _own_memory(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_own_memory(v) for v in value]
    return value


def _input_bytes(items: list[dict]) -> int:
    return sum(t.numel() * t.element_size() for item in items for t in item["inputs"].values())


class DecodedViews(Dataset):
    """``views`` decoded views per training clip, held in memory.

    Item ``(index, seed)``: view ``seed % views`` of clip ``index``, with
    modality-dropout noise drawn from ``seed``. ``view_item(index, view)`` gives
    a given view (the student pairs it with the teacher logits cached for it).

    Args:
        clips: the training clips (:func:`~karmma.training.cache.training_view_clips`: augmented,
            or for ``cache.train_views: 0`` the centred evaluation view).
        views: views per clip (``cache.train_views``, at least 1).
        seed: base seed of the views (the feature cache's seed, so views match its logits).
        workers: processes that decode (the loader's workers).
    """

    def __init__(self, clips: ClipDataset, views: int, seed: int, workers: int = 0, progress: bool = False):
        from tqdm import tqdm

        if clips.views != 1:
            raise ValueError(
                "decode_once holds fixed training views: give it the training clips (training_view_clips), "
                "not evaluation clips with several views"
            )
        self.clips, self.views, self.seed = clips, max(1, views), seed
        self.samples = clips.samples
        loader = DataLoader(_Views(clips, self.views, seed), batch_size=None, num_workers=workers)
        # Tensors from worker processes live in shared memory, one file descriptor each: copy them
        # into ordinary memory, or thousands of kept views would exhaust the process's descriptors.
        self.items = [
            _own_memory(item)
            for item in tqdm(loader, desc="decode training views", unit="view", disable=not progress, leave=False)
        ]

    @property
    def bytes(self) -> int:
        return _input_bytes(self.items)

    def __len__(self) -> int:
        return len(self.samples)

    def view_item(self, index: int, view: int) -> dict:
        stored = self.items[index * self.views + view]
        return {
            **stored,
            "inputs": {k: v if v.dtype == torch.uint8 else v.float() for k, v in stored["inputs"].items()},
            "labels": dict(stored["labels"]),
            "noise": stored["noise"].clone(),
        }

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        item = self.view_item(index, seed % self.views)
        rng = np.random.default_rng(seed)
        item["noise"] = torch.from_numpy(rng.random(item["noise"].shape).astype(np.float32))
        return item


class DecodedClips(Dataset):
    """Every item of an evaluation :class:`ClipDataset` (``train=False``), decoded once and held in memory.

    An evaluation item does not depend on its seed (the sampler's seeds only draw its
    modality-dropout noise, which validation does not use), so the stored item is the
    item; the clips are decoded by ``workers`` processes.
    """

    def __init__(self, clips: ClipDataset, workers: int = 0):
        if clips.train:
            raise ValueError(
                "DecodedClips holds evaluation items (their frames and crop are fixed): give it train=False clips"
            )
        self.clips = clips
        loader = DataLoader(clips, batch_size=None, num_workers=workers)  # one item at a time, by index
        self.items = [_own_memory(item) for item in loader]  # out of shared memory, as DecodedViews does

    @property
    def bytes(self) -> int:
        return _input_bytes(self.items)

    @property
    def report(self) -> str:
        return self.clips.report

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key) -> dict:
        index = key[0] if isinstance(key, tuple) else key
        stored = self.items[index]
        return {**stored, "inputs": dict(stored["inputs"]), "labels": dict(stored["labels"])}
