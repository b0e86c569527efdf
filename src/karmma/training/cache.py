"""The teacher feature cache: frozen extractor tokens computed once, on disk.

``karmma extract CONFIG`` runs the teacher's frozen extractors over every clip
and writes, per split, HDF5 shards ``<cache.path>/<split>.rank<r>-of-<w>.h5``:

* ``tokens/<key>``: ``[rows, N_m, C_m]`` float16, chunked one row at a time;
* ``availability``: ``[rows, M]``; ``labels/<head>``: ``[rows]``; ``index``: sample index;
* ``done``: which rows are written (a re-run skips them: extraction resumes).

A row is one (clip, view). Training clips get ``cache.train_views`` augmented
views (random crop/flip/frames, each from its own seed), validation clips the
centred view. **Trade-off:** a frozen extractor sees only these views, so
caching trades augmentation diversity for speed; ``train_views: 0`` caches
only the centred view (fastest, least augmentation), while live extractors
(no ``cache.path``) see a fresh augmentation every epoch at full cost.
Shards split rows by rank (``--rank/--world-size`` or the torchrun
environment), so extraction spreads over processes or GPUs.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from karmma.data.config import load_split
from karmma.data.dataset import ClipDataset, collate_clips
from karmma.data.loader import item_seed
from karmma.data.transforms import finish_inputs
from karmma.io import atomic_path
from karmma.train_config import TrainConfig

log = logging.getLogger("karmma.cache")
VIEW_EPOCH = 1_000_000  # item seeds of cached view v use "epoch" VIEW_EPOCH + v


def view_seed(seed: int, index: int, view: int) -> int:
    return item_seed(seed, VIEW_EPOCH + view, index)


def open_shard(path: Path, mode: str = "r") -> h5py.File:
    """``h5py.File`` with a one-line error naming the shard when it is truncated or corrupt."""
    try:
        return h5py.File(path, mode)
    except OSError as error:
        if not Path(path).is_file() and mode == "r":
            raise FileNotFoundError(f"feature cache shard not found: {path}") from None
        raise CacheError(
            f"{path}: unreadable feature cache shard ({' '.join(str(error).split())[:160]}); delete it and re-run karmma extract"
        ) from None


class CacheError(ValueError):
    """A feature cache shard is truncated, corrupt or written for another dataset/model."""


def shard_paths(folder: str | Path, split: str) -> list[Path]:
    paths = sorted(Path(folder).glob(f"{split}.rank*-of-*.h5"))
    if not paths:
        raise FileNotFoundError(f"no feature cache for the {split} split in {folder}: run `karmma extract` first")
    return paths


class _Rows(Dataset):
    """(clip, view) rows of one shard, loaded with their view seed."""

    def __init__(self, clips: ClipDataset, rows: list[int], views: int, seed: int, train: bool):
        self.clips, self.rows, self.views, self.seed, self.train = clips, rows, views, seed, train

    def __len__(self) -> int:
        return len(self.rows)

    def _clip_key(self, i: int):
        row = self.rows[i]
        index, view = divmod(row, self.views)
        # training rows: view v of the clip is drawn from its own seed; evaluation rows are
        # the dataset's own (clip, view) items
        return (index, view_seed(self.seed, index, view)) if self.train else row

    def __getitem__(self, i: int) -> dict:
        return {**self.clips[self._clip_key(i)], "row": self.rows[i]}

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch at once (see :meth:`ClipDataset.__getitems__`)."""
        items = self.clips.__getitems__([self._clip_key(i) for i in indices])
        return [{**item, "row": self.rows[i]} for item, i in zip(items, indices)]


def extract_features(
    config: TrainConfig, model, rank: int = 0, world_size: int = 1, batch_size: int = 8, progress: bool = True
) -> dict:
    """Write this rank's shard of the cache for the train and validation splits."""
    from tqdm import tqdm

    folder = Path(config.cache.path)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    shapes = {k: model.specs[k].input_shape for k in model.modalities}
    summary = {}
    for split in ("train", "validation"):
        train = split == "train"
        clips = ClipDataset(
            load_split(config.data, split), shapes, train=train, config=config.clip, missing=config.data.missing
        )
        views = max(1, config.cache.train_views) if train else clips.views
        total = len(clips.samples) * views
        path = folder / f"{split}.rank{rank}-of-{world_size}.h5"
        if path.is_file():  # finished earlier: checked, never rewritten (delete it to rebuild)
            with open_shard(path) as f:
                _init_shard(f, model, clips, total, views, train, config.trainer.seed)
            summary[split] = {"rows": total // world_size, "written": 0, "file": str(path)}
            continue
        # Written under a hidden name and renamed when complete: readers never see a half shard,
        # and a killed extraction resumes from the rows marked done.
        partial = path.with_name(f".{path.name}.partial")
        try:
            f = open_shard(partial, "a")
        except CacheError as error:
            log.warning("%s; starting this shard over", error)
            partial.unlink()
            f = open_shard(partial, "a")
        with f:
            _init_shard(f, model, clips, total, views, train, config.trainer.seed)
            done = f["done"][...]
            rows = [r for r in range(rank, total, world_size) if not done[r]]
            loader = DataLoader(
                _Rows(clips, rows, views, config.trainer.seed, train and config.cache.train_views > 0),
                batch_size=batch_size,
                num_workers=config.trainer.workers,
                collate_fn=_collate_rows,
            )
            for batch in tqdm(loader, desc=f"extract {split}", unit="batch", disable=not progress):
                _write_batch(f, model, batch)
        os.replace(partial, path)
        summary[split] = {"rows": total // world_size, "written": len(rows), "file": str(path)}
    return summary


def extract_teacher_cache(
    config: TrainConfig,
    rank: int | None = None,
    world_size: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict:
    """``karmma extract``: build the teacher of ``config`` (its frozen extractors from ``extractors.*``)
    and write this rank's cache shards (:func:`extract_features`). ``rank`` / ``world_size`` default
    to the torchrun / SLURM environment; on a GPU machine rank r uses GPU r mod the GPU count."""
    from karmma.data.config import dataset_heads
    from karmma.training.module import build_stage_model

    if config.stage != "teacher":
        raise ValueError(
            f"karmma extract caches the teacher's frozen extractors: the config's stage is {config.stage!r}, not 'teacher'"
        )
    if not config.cache.path:
        raise ValueError("set cache.path (the cache folder) in the config or as an override")
    if rank is None or not world_size:
        rank, world_size = distributed_rank()
    model = build_stage_model(config, dataset_heads(config.data))
    if torch.cuda.is_available():
        model = model.cuda(rank % torch.cuda.device_count())
    return extract_features(config, model, rank, world_size, batch_size=batch_size, progress=progress)


def cache_teacher_logits(config: TrainConfig, teacher_checkpoint: str | Path) -> int:
    """Load the trained teacher at ``teacher_checkpoint`` and add its logits to the cache at
    ``config.cache.path`` (:func:`write_teacher_logits`); returns the number of rows."""
    from karmma.data.config import dataset_heads
    from karmma.training.module import load_teacher

    teacher = load_teacher(str(teacher_checkpoint), config, dataset_heads(config.data))
    return write_teacher_logits(config.cache.path, teacher)


def _collate_rows(items: list[dict]) -> dict:
    batch = collate_clips(items)
    batch["rows"] = torch.tensor([item["row"] for item in items if item["availability"].any()], dtype=torch.long)
    return batch


def _init_shard(f: h5py.File, model, clips: ClipDataset, total: int, views: int, train: bool, seed: int) -> None:
    if "done" in f:
        if f.attrs["rows"] != total or list(f.attrs["modalities"]) != model.modalities:
            raise CacheError(f"{f.filename}: the cache was written for another dataset or model; delete it to rebuild")
        return
    f.attrs["rows"], f.attrs["views"], f.attrs["train"], f.attrs["seed"] = total, views, train, seed
    f.attrs["modalities"] = model.modalities
    f.attrs["heads"] = list(model.heads)
    for key, spec in model.specs.items():
        f.create_dataset(
            f"tokens/{key}",
            shape=(total, spec.num_tokens, spec.token_dim),
            dtype="float16",
            chunks=(1, spec.num_tokens, spec.token_dim),
        )
    f.create_dataset("availability", shape=(total, len(model.modalities)), dtype=bool)
    for head in model.heads:
        f.create_dataset(f"labels/{head}", shape=(total,), dtype="int64")
    f.create_dataset("index", data=np.repeat(np.arange(len(clips.samples)), views))
    f.create_dataset("done", shape=(total,), dtype=bool)


@torch.no_grad()
def _write_batch(f: h5py.File, model, batch: dict) -> None:
    rows = batch["rows"].numpy()
    if len(rows) == 0:
        return
    device = next(model.parameters()).device
    inputs = finish_inputs(batch, device, keys=model.modalities)
    tokens = model.extract(inputs, batch["availability"])
    order = np.argsort(rows)  # h5py fancy indexing wants increasing rows
    sorted_rows = rows[order]
    for key in model.modalities:
        if key in tokens:
            f[f"tokens/{key}"][sorted_rows] = tokens[key].float().cpu().numpy()[order].astype(np.float16)
    f["availability"][sorted_rows] = batch["availability"].numpy()[order]
    for head, labels in batch["labels"].items():
        f[f"labels/{head}"][sorted_rows] = labels.numpy()[order]
    done = f["done"]
    done[sorted_rows] = True
    f.flush()


class _InMemoryShard(dict):
    """A shard's datasets read whole into memory: ``name -> ndarray``, indexed like h5py datasets."""

    def __init__(self, path: Path):
        super().__init__()
        with open_shard(path) as f:
            f.visititems(lambda name, obj: self.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)

    def close(self) -> None:
        self.clear()


class _ShardReader(Dataset):
    """Opens cache shards lazily, one read handle per shard and process.

    ``in_memory``: ``True`` reads each shard whole on first use (one sequential
    read instead of many small ones per batch); ``None`` (auto) does so when all
    shards together are at most ``MEMORY_LIMIT_BYTES``.
    """

    MEMORY_LIMIT_BYTES = 2 * 2**30
    paths: list[Path]
    _files: dict[int, h5py.File | _InMemoryShard]
    in_memory: bool | None = None

    def _keep_in_memory(self) -> bool:
        if self.in_memory is None:
            self.in_memory = sum(p.stat().st_size for p in self.paths) <= self.MEMORY_LIMIT_BYTES
        return self.in_memory

    def _file(self, shard: int) -> h5py.File | _InMemoryShard:
        if shard not in self._files:
            path = self.paths[shard]
            self._files[shard] = _InMemoryShard(path) if self._keep_in_memory() else open_shard(path)
        return self._files[shard]

    def __getstate__(self):  # h5py handles do not cross process boundaries
        state = self.__dict__.copy()
        state["_files"] = {}
        return state

    def close(self) -> None:
        """Close the open shard handles (HDF5 refuses to reopen a file for writing while they exist)."""
        for f in self._files.values():
            f.close()
        self._files = {}


class CachedFeatures(_ShardReader):
    """Reads the cache: item ``(index, seed)`` -> one cached view of clip ``index`` (chosen by the seed)."""

    def __init__(self, folder: str | Path, split: str, modalities: list[str], in_memory: bool | None = None):
        self.paths = shard_paths(folder, split)
        self.modalities = modalities
        self.in_memory = in_memory
        with open_shard(self.paths[0]) as f:
            self.rows, self.views = int(f.attrs["rows"]), int(f.attrs["views"])
            if list(f.attrs["modalities"]) != modalities:
                raise ValueError(
                    f"{self.paths[0]}: cached modalities {list(f.attrs['modalities'])}, the model has {modalities}"
                )
            self.heads = list(f.attrs["heads"])
        self.world_size = len(self.paths)
        done = np.zeros(self.rows, dtype=bool)
        for path in self.paths:
            with open_shard(path) as f:
                done |= f["done"][...]
        # rows of clips whose media was unreadable everywhere were never written
        self.samples = sorted({r // self.views for r in np.flatnonzero(done)})
        self._files: dict[int, h5py.File] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _locate(self, key) -> tuple[int, int, int, int | None]:
        position, seed = key if isinstance(key, tuple) else (key, None)
        index = self.samples[position]
        view = 0 if seed is None or self.views == 1 else seed % self.views
        return index, view, index * self.views + view, seed

    def __getitem__(self, key) -> dict:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list) -> list[dict]:
        """A whole batch with one read per HDF5 dataset and shard (the DataLoader calls this)."""
        located = [self._locate(key) for key in keys]
        rows_by_shard: dict[int, list[int]] = {}
        for _, _, row, _ in located:
            rows_by_shard.setdefault(row % self.world_size, []).append(row)
        values: dict[int, dict] = {}
        for shard, rows in rows_by_shard.items():
            f, unique = self._file(shard), sorted(set(rows))
            read = {f"tokens/{k}": f[f"tokens/{k}"][unique].astype(np.float32) for k in self.modalities}
            read["availability"] = f["availability"][unique]
            read.update({f"labels/{h}": f[f"labels/{h}"][unique] for h in self.heads})
            for i, row in enumerate(unique):
                values[row] = {name: array[i] for name, array in read.items()}
        items = []
        for index, view, row, seed in located:
            value = values[row]
            rng = np.random.default_rng(seed if seed is not None else row)
            items.append(
                {
                    "id": str(index),
                    "view": view,
                    "index": index,
                    "tokens": {k: torch.from_numpy(value[f"tokens/{k}"]) for k in self.modalities},
                    "availability": torch.from_numpy(np.asarray(value["availability"])),
                    "labels": {h: int(value[f"labels/{h}"]) for h in self.heads},
                    "noise": torch.from_numpy(rng.random((2, len(self.modalities))).astype(np.float32)),
                }
            )
        return items


def collate_features(items: list[dict]) -> dict:
    keys = items[0]["tokens"].keys()
    return {
        "ids": [item["id"] for item in items],
        "tokens": {k: torch.stack([item["tokens"][k] for item in items]) for k in keys},
        "inputs": {},
        "availability": torch.stack([item["availability"] for item in items]),
        "labels": {h: torch.tensor([item["labels"][h] for item in items]) for h in items[0]["labels"]},
        "indices": torch.tensor([item["index"] for item in items]),
        "noise": torch.stack([item["noise"] for item in items]),
    }


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from the torchrun / SLURM environment, (0, 1) otherwise."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))
    return rank, world


@torch.no_grad()
def write_teacher_logits(folder: str | Path, teacher, batch_size: int = 256) -> int:
    """Add ``logits/<head>`` to every cache shard: the trained teacher's fusion over the
    cached tokens with each clip's real availability (cheap: no extractor runs).

    Each shard is copied, completed and renamed over the original, so a failure (a full
    disk) leaves the shard as it was; this needs free space for one more shard."""
    teacher = teacher.eval()
    device = next(teacher.parameters()).device
    written = 0
    for split in ("train", "validation"):
        for path in shard_paths(folder, split):
            with atomic_path(path) as tmp:
                shutil.copyfile(path, tmp)
                written += _add_logits(tmp, teacher, device, batch_size)
    return written


@torch.no_grad()
def _add_logits(path: Path, teacher, device, batch_size: int) -> int:
    """Write ``logits/<head>`` of every done row of one shard; returns the number of rows."""
    with open_shard(path, "a") as f:
        rows = np.flatnonzero(f["done"][...])
        for head, classes in teacher.heads.items():
            if f"logits/{head}" in f:
                del f[f"logits/{head}"]
            f.create_dataset(f"logits/{head}", shape=(f.attrs["rows"], classes), dtype="float32")
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            tokens = {
                k: torch.from_numpy(f[f"tokens/{k}"][chunk].astype(np.float32)).to(device) for k in teacher.modalities
            }
            availability = torch.from_numpy(f["availability"][chunk])
            logits = teacher.fuse(tokens, availability).logits
            for head, value in logits.items():
                f[f"logits/{head}"][chunk] = value.float().cpu().numpy()
    return len(rows)


class CachedTeacherViews(_ShardReader):
    """Student training clips paired with the teacher logits cached for the same view.

    Item ``(index, seed)``: the seed picks one of the clip's cached views; the
    clip is loaded with that view's seed, so the student sees exactly the
    frames, crop and flip the teacher saw; modality-dropout noise still comes
    from the per-epoch seed.
    """

    def __init__(
        self,
        clips: ClipDataset,
        folder: str | Path,
        split: str = "train",
        in_memory: bool | None = None,
        decode_once: bool = False,
        workers: int = 0,
    ):
        self.paths = shard_paths(folder, split)
        self.in_memory = in_memory
        with open_shard(self.paths[0]) as f:
            self.views, self.seed, rows = int(f.attrs["views"]), int(f.attrs["seed"]), int(f.attrs["rows"])
            if "logits" not in f:
                raise FileNotFoundError(
                    f"{self.paths[0]}: no teacher logits; run `karmma extract ... --logits TEACHER_CKPT`"
                )
            self.heads = list(f["logits"].keys())
        if rows != len(clips.samples) * self.views:
            raise ValueError(
                f"{self.paths[0]}: cached for {rows // self.views} clips, the dataset has {len(clips.samples)}"
            )
        if decode_once:  # the very views the logits were cached for, decoded once (karmma.training.memory)
            from karmma.training.memory import DecodedViews

            clips = DecodedViews(clips, self.views, self.seed, workers)
        self.clips = clips
        self._files: dict[int, h5py.File] = {}

    def __len__(self) -> int:
        return len(self.clips.samples)

    def _clip_key(self, key) -> tuple[int, int]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        view = seed % self.views
        return index, view_seed(self.seed, index, view)

    def _with_logits(self, item: dict, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        row = index * self.views + seed % self.views
        f = self._file(row % len(self.paths))
        item["teacher_logits"] = {h: torch.from_numpy(f[f"logits/{h}"][row]) for h in self.heads}
        rng = np.random.default_rng(seed)
        item["noise"] = torch.from_numpy(rng.random(item["noise"].shape).astype(np.float32))
        return item

    def __getitem__(self, key) -> dict:
        if hasattr(self.clips, "view_item"):  # decoded once: the view straight from memory
            index, seed = key if isinstance(key, tuple) else (key, 0)
            return self._with_logits(self.clips.view_item(index, seed % self.views), key)
        return self._with_logits(self.clips[self._clip_key(key)], key)

    def __getitems__(self, keys: list) -> list[dict]:
        """A batch at once (see :meth:`ClipDataset.__getitems__`)."""
        if hasattr(self.clips, "view_item"):
            return [self[key] for key in keys]
        items = self.clips.__getitems__([self._clip_key(key) for key in keys])
        return [self._with_logits(item, key) for item, key in zip(items, keys)]


def collate_with_teacher_logits(items: list[dict]) -> dict:
    kept = [item for item in items if item["availability"].any()]
    batch = collate_clips(items)
    batch["teacher_logits"] = (
        {h: torch.stack([item["teacher_logits"][h] for item in kept]) for h in kept[0]["teacher_logits"]}
        if kept
        else {}
    )
    return batch
