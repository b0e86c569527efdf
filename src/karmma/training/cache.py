"""The teacher feature cache: frozen extractor tokens computed once, on disk, and the teacher's logits.

``karmma extract CONFIG`` runs the teacher's frozen extractors over every clip
and writes, per split, HDF5 shards ``<cache.path>/<split>.rank<r>-of-<w>.h5``.
A row is one (clip, view): row ``i`` is view ``i % views`` of clip ``i // views``,
written by rank ``i % w``. Each shard holds:

* ``tokens/<key>``: ``[rows, N_m, C_m]`` float16, chunked one row at a time;
  ``availability``: ``[rows, M]`` (a view none of whose media could be read has
  none); ``done``: ``[rows]``, the rows this shard has written (a re-run skips
  them: extraction resumes);
* ``sample_ids``: ``[clips]``; ``labels/<head>``: ``[clips]``;
* ``logits/<head>``: ``[rows, classes]`` float32, added by
  ``karmma extract --logits TEACHER_CKPT`` (the trained teacher's fusion over
  the cached tokens);
* the attribute ``karmma_cache``: JSON metadata (:func:`shard_metadata`): the
  shard's ``rank`` and ``world_size``, the clip recipe and modalities, the
  extractors' weights, the data and, once written, the teacher of the logits.

Readers find a row's shard by the rank written in the shards, never by file
name order, refuse (one line naming the key and both values) a cache whose
metadata differs from their config, and a row that was never written.

Training clips get ``cache.train_views`` augmented views (random crop/flip/frames,
each from its own seed), validation clips the evaluation views. **Trade-off:**
a frozen extractor sees only these views, so caching trades augmentation
diversity for speed; ``train_views: 0`` caches the centred evaluation view
(one temporal clip, centre crop; fastest, no augmentation), for the teacher
and for a student reading its logits alike; live extractors (no ``cache.path``)
see a fresh augmentation every epoch at full cost. Shards split rows by rank
(``--rank/--world-size`` or the torchrun environment), so extraction spreads
over processes or GPUs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from karmma.accuracy import every_head_correct, topk_correct
from karmma.configuration import flatten
from karmma.data.config import load_split
from karmma.data.dataset import ClipDataset, collate_clips
from karmma.data.loader import view_seed
from karmma.data.recipe import read_recipe
from karmma.data.transforms import finish_inputs
from karmma.data.views import ClipSample
from karmma.io import atomic_path, file_sha256
from karmma.stages import require_pretrained_teacher, stage_modalities, stage_preset
from karmma.train_config import TrainConfig, stage_names, stage_spec

log = logging.getLogger("karmma.cache")
CACHE_FORMAT = 2  # 1: shards without metadata, found by name order (refused)
METADATA = "karmma_cache"  # the shard attribute holding the JSON metadata


class CacheError(ValueError):
    """A feature cache shard is truncated, corrupt, incomplete or written for another config."""


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


# ---- what a cache holds: its metadata -------------------------------------------------------


def _plain(value):
    """``value`` as JSON reads it back (tuples become lists), so stored and computed metadata compare equal."""
    return json.loads(json.dumps(value))


def clip_recipe(config: TrainConfig, modalities: Sequence[str]) -> dict:
    """How the cached views are made: what a reader must share with the extraction to get the frames,
    crops and modality-dropout draws the teacher saw (a view's draws depend on the modality count).
    ``clip`` is the config's clip section with the preset's geometry filled in."""
    preset = stage_preset(config)
    video, audio = preset.teacher["V"].input_shape, preset.student["A"].input_shape
    clip = {**dataclasses.asdict(config.clip), "frames": video[0], "size": video[-1], "audio_frames": audio[-1]}
    return _plain(
        {"modalities": list(modalities), "preset": config.preset, "clip": clip, "train_views": config.cache.train_views}
    )


def extractor_weights(config: TrainConfig) -> dict:
    """Where the teacher's frozen extractors come from: ``{"token_pooling": "max", "V": {"key":
    "extractors.V", "weights": path or torchvision name, "sha256": of the file or None}}``, ``None``
    for an extractor left random."""
    preset = stage_preset(config)
    weights: dict = {"token_pooling": getattr(preset.teacher["V"].extractor, "spatial_pool", "")}
    for key in stage_modalities(config, preset):
        section = "extractors" if key in config.extractors else "pretrained" if key in config.pretrained else None
        value = getattr(config, section)[key] if section else None
        weights[key] = value and {
            "key": f"{section}.{key}",
            "weights": value,
            "sha256": file_sha256(value) if Path(value).is_file() else None,
        }
    return weights


def _samples_fingerprint(samples: Sequence[ClipSample]) -> str:
    described = [[s.id, s.start_frame, s.stop_frame, sorted(s.labels.items())] for s in samples]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def data_identity(config: TrainConfig, samples: Sequence[ClipSample]) -> dict:
    """The data the rows come from: format, root (resolved), the ``karmma prepare`` settings found
    there (None when the media were not made by karmma prepare) and a fingerprint of the clips
    (ids, frame ranges, labels)."""
    root = Path(config.data.root).resolve() if config.data.root else None
    return {
        "format": config.data.format,
        "root": str(root or ""),
        "preparation": dataclasses.asdict(recipe) if root and (recipe := read_recipe(root)) else None,
        "clips": len(samples),
        "samples_sha256": _samples_fingerprint(samples),
    }


def shard_metadata(
    config: TrainConfig, model, split: str, clips: ClipDataset, views: int, rank: int, world_size: int
) -> dict:
    """The ``karmma_cache`` attribute of a new shard (``teacher`` is filled in by ``--logits``)."""
    return {
        "format": CACHE_FORMAT,
        "split": split,
        "rank": rank,
        "world_size": world_size,
        "rows": len(clips.samples) * views,
        "views": views,
        "seed": config.trainer.seed,
        "heads": dict(model.heads),
        "recipe": clip_recipe(config, model.modalities),
        "extractors": extractor_weights(config),
        "data": data_identity(config, clips.samples),
        "teacher": None,
    }


def read_metadata(f: h5py.File) -> dict:
    if METADATA not in f.attrs:
        raise CacheError(
            f"{f.filename}: a feature cache shard without metadata (written by an older karmma, which read shards "
            "by name order); delete the cache and re-run karmma extract"
        )
    return json.loads(f.attrs[METADATA])


def first_difference(cached: dict, current: dict, prefix: str = "") -> tuple[str, object, object] | None:
    """``(key, cached value, current value)`` of the first key (in ``current``'s order) that differs."""
    old, new = flatten(cached, prefix), flatten(current, prefix)
    for key in new:
        if old.get(key, "<absent>") != new[key]:
            return key, old.get(key, "<absent>"), new[key]
    return None


def mismatch_error(where: str, key: str, cached, current) -> CacheError:
    return CacheError(
        f"{where}: the cache does not match this config: {key} is {cached!r} in the cache, {current!r} here; "
        "use the config the cache was extracted with, or extract a new cache (karmma extract)"
    )


def _expect(where: str, cached: dict, current: dict, prefix: str = "") -> None:
    difference = first_difference(cached, current, prefix)
    if difference:
        raise mismatch_error(where, *difference)


def _expect_extractors(where: str, cached: dict, current: dict) -> None:
    """The teacher built from this config must carry the extractors that made the tokens: same file
    content (SHA-256) where both are files, else the same weights name; ``None`` is random."""
    for key, now in current.items():
        then = cached.get(key)
        if key == "token_pooling" or now is None or then is None:
            same = then == now
        else:
            same = (
                then["sha256"] == now["sha256"]
                if then["sha256"] and now["sha256"]
                else then["weights"] == now["weights"]
            )
        if not same:
            raise mismatch_error(where, f"extractors.{key}", _weights_name(then), _weights_name(now))


def _weights_name(weights: dict | str | None) -> str:
    if weights is None:
        return "random"
    return weights if isinstance(weights, str) else f"{weights['key']}={weights['weights']}"


def _expect_data(where: str, cached: dict, current: dict, sample_ids: list[str], clips: ClipDataset) -> None:
    """The same clips of the same media: the same sample list and preparation settings (a copy of a
    prepared dataset elsewhere is the same data); where a side has no preparation record, the same root."""
    keys = ["format", "preparation" if cached["preparation"] and current["preparation"] else "root"]
    _expect(where, {k: cached[k] for k in keys}, {k: current[k] for k in keys}, "data.")
    if cached["samples_sha256"] != current["samples_sha256"]:
        now = [s.id for s in clips.samples]
        at = next((i for i, (a, b) in enumerate(zip(sample_ids, now)) if a != b), None)
        if at is not None:
            how = f"clip {at} is {sample_ids[at]!r} in the cache, {now[at]!r} here"
        elif len(sample_ids) != len(now):
            how = f"{len(sample_ids)} clips in the cache, {len(now)} here"
        else:
            how = f"the same {len(now)} clip ids, with other frame ranges or labels"
        raise CacheError(
            f"{where}: the cache does not match this config: data.samples differ ({how}); "
            "use the data the cache was extracted from, or extract a new cache (karmma extract)"
        )


# ---- writing -----------------------------------------------------------------------------


def training_view_clips(samples: Sequence[ClipSample], shapes: dict, config: TrainConfig) -> ClipDataset:
    """The training clips whose fixed views the cache and ``cache.decode_once`` hold, keyed
    ``(index, view_seed(seed, index, view))``: augmented views (training sampling) for
    ``cache.train_views > 0``; for 0 the centred evaluation view (one temporal clip, centre crop),
    the same on the teacher's side (extraction) and the student's."""
    if config.cache.train_views > 0:
        return ClipDataset(samples, shapes, train=True, config=config.clip, missing=config.data.missing)
    centred = dataclasses.replace(config.clip, num_clips=1, num_crops=1)
    return ClipDataset(samples, shapes, train=False, config=centred, missing=config.data.missing)


class _Rows(Dataset):
    """(clip, view) rows of one shard: training rows by their view seed, evaluation rows as the
    dataset's own (clip, view) items."""

    def __init__(self, clips: ClipDataset, rows: list[int], views: int, seed: int, fixed_views: bool):
        self.clips, self.rows, self.views, self.seed, self.fixed_views = clips, rows, views, seed, fixed_views

    def __len__(self) -> int:
        return len(self.rows)

    def _clip_key(self, i: int):
        row = self.rows[i]
        index, view = divmod(row, self.views)
        return (index, view_seed(self.seed, index, view)) if self.fixed_views else row

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
        samples = load_split(config.data, split)
        if train:
            clips = training_view_clips(samples, shapes, config)
            views = max(1, config.cache.train_views)
        else:
            clips = ClipDataset(samples, shapes, train=False, config=config.clip, missing=config.data.missing)
            views = clips.views
        metadata = shard_metadata(config, model, split, clips, views, rank, world_size)
        path = folder / f"{split}.rank{rank}-of-{world_size}.h5"
        if path.is_file():  # finished earlier: checked, never rewritten (delete it to rebuild)
            with open_shard(path) as f:
                _init_shard(f, model, metadata, clips)
            summary[split] = {"rows": len(range(rank, metadata["rows"], world_size)), "written": 0, "file": str(path)}
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
            _init_shard(f, model, metadata, clips)
            done = f["done"][...]
            rows = [r for r in range(rank, metadata["rows"], world_size) if not done[r]]
            loader = DataLoader(
                _Rows(clips, rows, views, config.trainer.seed, fixed_views=train),
                batch_size=batch_size,
                num_workers=config.trainer.workers,
                collate_fn=_collate_rows,
            )
            for batch in tqdm(loader, desc=f"extract {split}", unit="batch", disable=not progress):
                _write_batch(f, model, batch)
        os.replace(partial, path)
        summary[split] = {
            "rows": len(range(rank, metadata["rows"], world_size)),
            "written": len(rows),
            "file": str(path),
        }
    return summary


def extract_teacher_cache(
    config: TrainConfig,
    rank: int | None = None,
    world_size: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
    allow_random_extractors: bool = False,
    teacher_checkpoint: str | Path | None = None,
) -> dict:
    """``karmma extract``: build the teacher of ``config`` (its frozen extractors from ``extractors.*``
    or ``pretrained.*``) and write this rank's cache shards (:func:`extract_features`); then, with
    ``teacher_checkpoint``, add that teacher's logits to every shard (:func:`cache_teacher_logits`).
    A teacher without pre-trained extractors is refused before anything is read, unless
    ``allow_random_extractors``.

    ``rank`` / ``world_size`` default to the torchrun / SLURM environment. A process given neither
    (one process, no launcher) works through every rank of the shards already in ``cache.path``
    (finished shards are only checked), so that ``karmma extract ... --logits`` after a launch of
    ``w`` processes completes that cache instead of writing a second one of one shard. Logits are
    added by one process once every shard exists: refused under a launch of several processes.
    On a GPU machine a process uses the GPU of its local rank (mod the GPU count).

    Returns ``{split: {"rows", "written", "file"}}`` (``"file"``: a pattern when several ranks were
    worked through) and, with ``teacher_checkpoint``, ``"logits"``: the rows given logits."""
    from karmma.data.config import dataset_heads
    from karmma.training.launch import die_with_parent
    from karmma.training.module import build_stage_model

    if not stage_spec(config.stage).frozen_extractors:
        raise ValueError(
            f"karmma extract caches the teacher's frozen extractors: the config's stage is {config.stage!r}, "
            f"not {' or '.join(repr(name) for name in stage_names('teacher'))}"
        )
    if not config.cache.path:
        raise ValueError("set cache.path (the cache folder) in the config or as an override")
    if not allow_random_extractors:
        require_pretrained_teacher(config, " (karmma extract --allow-random-extractors caches random ones on purpose)")
    launched = rank is None or not world_size
    if launched:
        rank, world_size = distributed_rank()
    if teacher_checkpoint and world_size > 1:
        raise ValueError(
            f"--logits in one of {world_size} extraction processes: the logits go into every shard once all "
            "exist; run karmma extract ... --logits TEACHER_CKPT as one process after the launch has ended"
        )
    ranks = [rank]
    if launched and world_size == 1:
        ranks = list(range(shard_world_size(config.cache.path) or 1))
        world_size = len(ranks)
    die_with_parent()  # a process of torchrun ends with its agent
    heads = dataset_heads(config.data)
    torch.manual_seed(config.trainer.seed)  # random extractors (allowed above) are the same on every rank
    model = build_stage_model(config, heads)
    if torch.cuda.is_available():
        model = model.cuda(local_rank(rank) % torch.cuda.device_count())
    shards = [extract_features(config, model, r, world_size, batch_size=batch_size, progress=progress) for r in ranks]
    summary = shards[0]
    if len(shards) > 1:
        summary = {
            split: {
                "rows": sum(s[split]["rows"] for s in shards),
                "written": sum(s[split]["written"] for s in shards),
                "file": str(Path(config.cache.path) / f"{split}.rank*-of-{world_size}.h5"),
            }
            for split in summary
        }
    if teacher_checkpoint:
        summary["logits"] = cache_teacher_logits(config, teacher_checkpoint)
    return summary


def _collate_rows(items: list[dict]) -> dict:
    batch = collate_clips(items)  # leaves out the items without any modality
    batch["rows"] = torch.tensor([item["row"] for item in items if item["availability"].any()], dtype=torch.long)
    batch["empty_rows"] = torch.tensor(
        [item["row"] for item in items if not item["availability"].any()], dtype=torch.long
    )
    return batch


def _init_shard(f: h5py.File, model, metadata: dict, clips: ClipDataset) -> None:
    """Create the shard's datasets and metadata, or check that an existing shard has the same metadata."""
    if "done" in f:
        stored = {k: v for k, v in read_metadata(f).items() if k != "teacher"}
        difference = first_difference(stored, {k: v for k, v in metadata.items() if k != "teacher"})
        if difference:
            key, old, new = difference
            raise CacheError(
                f"{f.filename}: written for another config ({key} is {old!r} there, {new!r} now); delete it to rebuild"
            )
        return
    rows = metadata["rows"]
    f.attrs[METADATA] = json.dumps(metadata)
    for key, spec in model.specs.items():
        f.create_dataset(
            f"tokens/{key}",
            shape=(rows, spec.num_tokens, spec.token_dim),
            dtype="float16",
            chunks=(1, spec.num_tokens, spec.token_dim),
        )
    f.create_dataset("availability", shape=(rows, len(model.modalities)), dtype=bool)
    f.create_dataset("done", shape=(rows,), dtype=bool)
    f.create_dataset("sample_ids", data=[s.id for s in clips.samples], dtype=h5py.string_dtype())
    for head in model.heads:
        f.create_dataset(f"labels/{head}", data=np.array([s.labels[head] for s in clips.samples], dtype=np.int64))


@torch.no_grad()
def _write_batch(f: h5py.File, model, batch: dict) -> None:
    rows = batch["rows"].numpy()
    if len(rows):
        device = next(model.parameters()).device
        inputs = finish_inputs(batch, device, keys=model.modalities)
        tokens = model.extract(inputs, batch["availability"])
        order = np.argsort(rows)  # h5py fancy indexing wants increasing rows
        sorted_rows = rows[order]
        for key in model.modalities:
            if key in tokens:
                f[f"tokens/{key}"][sorted_rows] = tokens[key].float().cpu().numpy()[order].astype(np.float16)
        f["availability"][sorted_rows] = batch["availability"].numpy()[order]
    # a view none of whose media could be read is written too: as a row without any modality
    written = np.sort(np.concatenate([rows, batch["empty_rows"].numpy()]))
    if len(written):
        f["done"][written] = True
    f.flush()


# ---- reading -----------------------------------------------------------------------------


def open_cache(folder: str | Path, split: str) -> tuple[list[Path], dict, list[str], np.ndarray]:
    """``(shards by rank, metadata, sample ids, available [rows])`` of one split of a cache.

    Each shard says which rank of how many wrote it; every rank must be there once, with the same
    metadata, and every row written (``available``: the row's view had at least one modality)."""
    found = sorted(Path(folder).glob(f"{split}.rank*-of-*.h5"))
    if not found:
        raise FileNotFoundError(f"no feature cache for the {split} split in {folder}: run `karmma extract` first")
    by_rank: dict[int, Path] = {}
    metadata, first, sample_ids, available = None, None, [], None
    for path in found:
        with open_shard(path) as f:
            shard = read_metadata(f)
            rank = shard.pop("rank")
            if metadata is None:
                metadata, first = shard, path
                sample_ids = [s.decode() if isinstance(s, bytes) else s for s in f["sample_ids"][...]]
                available = np.zeros(shard["rows"], dtype=bool)
            else:
                difference = first_difference(metadata, shard)
                if difference:
                    key, a, b = difference
                    raise CacheError(
                        f"{folder}: shards of different extractions ({key} is {a!r} in {first.name}, {b!r} in "
                        f"{path.name}); delete the stale ones and re-run karmma extract"
                    )
            if rank in by_rank:
                raise CacheError(f"{folder}: {by_rank[rank].name} and {path.name} both hold rank {rank}; delete one")
            world = metadata["world_size"]
            unwritten = np.flatnonzero(~f["done"][rank::world])
            if len(unwritten):
                row = rank + world * int(unwritten[0])
                raise CacheError(
                    f"{path}: row {row} (clip {sample_ids[row // metadata['views']]!r}, view {row % metadata['views']}) "
                    f"was never written; re-run karmma extract --rank {rank} --world-size {world}"
                )
            available[rank::world] = f["availability"][rank::world].any(axis=1)
            by_rank[rank] = path
    missing = [r for r in range(metadata["world_size"]) if r not in by_rank]
    if missing:
        raise CacheError(
            f"{folder}: no {split} shard of rank {missing[0]} (of {metadata['world_size']}; found ranks "
            f"{sorted(by_rank)}); run karmma extract --rank {missing[0]} --world-size {metadata['world_size']}"
        )
    return [by_rank[r] for r in range(metadata["world_size"])], metadata, sample_ids, available


class _InMemoryShard(dict):
    """A shard's datasets read whole into memory: ``name -> ndarray``, indexed like h5py datasets."""

    def __init__(self, path: Path):
        super().__init__()
        with open_shard(path) as f:
            f.visititems(lambda name, obj: self.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)

    def close(self) -> None:
        self.clear()


class _ShardReader(Dataset):
    """One split of a cache (:func:`open_cache`); opens its shards lazily, one read handle per shard and process.

    ``in_memory``: ``True`` reads each shard whole on first use (one sequential
    read instead of many small ones per batch); ``None`` (auto) does so when all
    shards together are at most ``MEMORY_LIMIT_BYTES``.
    """

    MEMORY_LIMIT_BYTES = 2 * 2**30

    def __init__(self, folder: str | Path, split: str, in_memory: bool | None):
        self.folder, self.in_memory = Path(folder), in_memory
        self.paths, self.metadata, self.sample_ids, self.available = open_cache(folder, split)
        self.where = f"{folder} ({split})"
        self.views, self.world_size = int(self.metadata["views"]), len(self.paths)
        self._files: dict[int, h5py.File | _InMemoryShard] = {}

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
    """A teacher's training or validation clips from the cache, for ``config`` (checked against the
    cache: modalities, clip recipe, extractors).

    Item ``(position, seed)``: in the train split one cached view of the clip (chosen by the seed);
    in the validation split every view of the clip, which validation averages as ``karmma
    evaluate`` does. Clips none of whose views had a modality are left out.
    """

    def __init__(self, config: TrainConfig, split: str, modalities: list[str], in_memory: bool | None = None):
        super().__init__(config.cache.path, split, in_memory)
        _expect(self.where, self.metadata["recipe"], clip_recipe(config, modalities))
        _expect_extractors(self.where, self.metadata["extractors"], extractor_weights(config))
        self.modalities, self.heads = list(modalities), list(self.metadata["heads"])
        with open_shard(self.paths[0]) as f:  # labels are per clip, the same in every shard
            self.labels = {h: f[f"labels/{h}"][...] for h in self.heads}
        self.every_view = split != "train"
        self.samples = np.flatnonzero(self.available.reshape(-1, self.views).any(axis=1)).tolist()

    def __len__(self) -> int:
        return len(self.samples)

    def _rows(self, key) -> tuple[int, list[int], int | None]:
        position, seed = key if isinstance(key, tuple) else (key, None)
        index = self.samples[position]
        views = range(self.views) if self.every_view else [0 if seed is None else seed % self.views]
        return index, [index * self.views + view for view in views], seed

    def __getitem__(self, key) -> dict:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list) -> list[dict]:
        """A whole batch with one read per HDF5 dataset and shard (the DataLoader calls this)."""
        located = [self._rows(key) for key in keys]
        rows_by_shard: dict[int, set[int]] = {}
        for _, rows, _ in located:
            for row in rows:
                rows_by_shard.setdefault(row % self.world_size, set()).add(row)
        values: dict[int, dict] = {}
        for shard, rows in rows_by_shard.items():
            f, unique = self._file(shard), sorted(rows)
            read = {k: f[f"tokens/{k}"][unique].astype(np.float32) for k in self.modalities}
            read["availability"] = f["availability"][unique]
            for i, row in enumerate(unique):
                values[row] = {name: array[i] for name, array in read.items()}
        items = []
        for index, rows, seed in located:
            rng = np.random.default_rng(seed if seed is not None else index)
            items.append(
                {
                    "id": self.sample_ids[index],
                    "index": index,
                    # [views, N, C] and [views, M]: one view in training, every view in validation
                    "tokens": {k: torch.from_numpy(np.stack([values[r][k] for r in rows])) for k in self.modalities},
                    "availability": torch.from_numpy(np.stack([values[r]["availability"] for r in rows])),
                    "labels": {h: int(self.labels[h][index]) for h in self.heads},
                    "noise": torch.from_numpy(rng.random((2, len(self.modalities))).astype(np.float32)),
                }
            )
        return items


def collate_features(items: list[dict]) -> dict:
    """Cached items -> a batch: ``tokens`` ``[R, N, C]`` and ``availability`` ``[R, M]`` hold one row
    per view with at least one modality, ``clips`` ``[R]`` the batch position of the clip each row
    belongs to; ids, labels and noise are per clip (clips without any such view are left out)."""
    rows = [
        (i, v)
        for i, item in enumerate(items)
        for v in range(len(item["availability"]))
        if item["availability"][v].any()
    ]
    kept = sorted({i for i, _ in rows})
    position = {i: p for p, i in enumerate(kept)}
    first = items[0]
    return {
        "ids": [items[i]["id"] for i in kept],
        "tokens": {
            k: torch.stack([items[i]["tokens"][k][v] for i, v in rows])
            if rows
            else first["tokens"][k].new_zeros((0, *first["tokens"][k].shape[1:]))
            for k in first["tokens"]
        },
        "inputs": {},
        "availability": torch.stack([items[i]["availability"][v] for i, v in rows])
        if rows
        else first["availability"].new_zeros((0, first["availability"].shape[1])),
        "clips": torch.tensor([position[i] for i, _ in rows], dtype=torch.long),
        "labels": {h: torch.tensor([items[i]["labels"][h] for i in kept], dtype=torch.long) for h in first["labels"]},
        "indices": torch.tensor([items[i]["index"] for i in kept], dtype=torch.long),
        "noise": torch.stack([items[i]["noise"] for i in kept]) if kept else first["noise"].new_zeros((0, 2, 0)),
    }


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from the torchrun / SLURM environment, (0, 1) otherwise."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))
    return rank, world


def local_rank(rank: int) -> int:
    """This process's rank on its node (torchrun's ``LOCAL_RANK``, srun's ``SLURM_LOCALID``);
    ``rank`` where no launcher says (``--rank`` given by hand on one machine)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", rank)))


def shard_world_size(folder: str | Path) -> int | None:
    """The number of ranks of the shards (finished or partial) in ``folder``; None without shards.

    Shards of two different world sizes are one cache written twice: a one-line error."""
    sizes = {
        int(match.group(1))
        for path in Path(folder).glob("*.rank*-of-*")
        if (match := re.fullmatch(r"\.?(?:train|validation)\.rank\d+-of-(\d+)\.h5(?:\.partial)?", path.name))
    }
    if len(sizes) > 1:
        raise CacheError(
            f"{folder} holds shards written by {' and by '.join(map(str, sorted(sizes)))} processes: "
            "keep one set (delete the other) before extracting into it"
        )
    return sizes.pop() if sizes else None


# ---- the teacher's logits ------------------------------------------------------------------


def cache_teacher_logits(config: TrainConfig, teacher_checkpoint: str | Path) -> int:
    """Load the trained teacher at ``teacher_checkpoint`` and add its logits to the cache at
    ``config.cache.path`` (:func:`write_teacher_logits`), recording the checkpoint's SHA-256;
    returns the number of rows."""
    from karmma.data.config import dataset_heads
    from karmma.training.module import load_teacher

    teacher = load_teacher(str(teacher_checkpoint), config, dataset_heads(config.data))
    source = {"checkpoint": str(Path(teacher_checkpoint).resolve()), "sha256": file_sha256(teacher_checkpoint)}
    return write_teacher_logits(config.cache.path, teacher, source)


def _percent(correct: torch.Tensor) -> float:
    return round(100 * correct.double().mean().item(), 2)


def teacher_logit_statistics(folder: str | Path, temperature: float) -> dict:
    """What the student distils from, per split of a cache with teacher logits: ``{split: {"views",
    "<head>_top1", "action_top1", "entropy": {head: nats}, "uniform_entropy": {head: nats}}}``.
    Top-1 (percent) of the teacher's logits on each cached view (the distillation's training views;
    validation's evaluation views); ``entropy``: the mean entropy of ``softmax(logits / temperature)``,
    the soft label at the distillation temperature (near 0: a one-hot label; ``uniform_entropy``:
    no information)."""
    out = {}
    for split in ("train", "validation"):
        paths, metadata, _, available = open_cache(folder, split)
        world, views = metadata["world_size"], metadata["views"]
        heads = list(metadata["heads"])
        logits = {h: np.zeros((metadata["rows"], metadata["heads"][h]), dtype=np.float32) for h in heads}
        with open_shard(paths[0]) as f:  # labels are per clip, the same in every shard
            labels = {h: np.repeat(f[f"labels/{h}"][...], views) for h in heads}
        for rank, path in enumerate(paths):
            with open_shard(path) as f:
                if f"logits/{heads[0]}" not in f:
                    raise CacheError(f"{path}: no teacher logits; run `karmma extract ... --logits TEACHER_CKPT`")
                for h in heads:
                    logits[h][rank::world] = f[f"logits/{h}"][rank::world]
        rows = np.flatnonzero(available)
        scores = {h: torch.from_numpy(logits[h][rows]) for h in heads}
        targets = {h: torch.from_numpy(labels[h][rows]) for h in heads}
        entropy = {}
        for h in heads:
            scaled = logits[h][rows] / temperature
            scaled -= scaled.max(axis=1, keepdims=True)
            p = np.exp(scaled)
            p /= p.sum(axis=1, keepdims=True)
            entropy[h] = round(float(-(p * np.log(np.clip(p, 1e-12, None))).sum(axis=1).mean()), 3)
        out[split] = {
            "views": int(len(rows)),
            **{f"{h}_top1": _percent(topk_correct(scores[h], targets[h], 1)) for h in heads},
            "action_top1": _percent(every_head_correct(scores, targets)),
            "temperature": temperature,
            "entropy": entropy,
            "uniform_entropy": {h: round(float(np.log(metadata["heads"][h])), 3) for h in heads},
        }
    return out


@torch.no_grad()
def write_teacher_logits(folder: str | Path, teacher, source: dict, batch_size: int = 256) -> int:
    """Add ``logits/<head>`` to every cache shard: the trained teacher's fusion over the cached
    tokens with each view's real availability (cheap: no extractor runs); ``source``
    (``{"checkpoint", "sha256"}``) goes into the shards' metadata as ``teacher``.

    Each shard is copied, completed and renamed over the original, so a failure (a full
    disk) leaves the shard as it was; this needs free space for one more shard."""
    teacher = teacher.eval()
    device = next(teacher.parameters()).device
    written = 0
    for split in ("train", "validation"):
        paths, metadata, _, _ = open_cache(folder, split)
        where = f"{folder} ({split})"
        _expect(where, {"modalities": metadata["recipe"]["modalities"]}, {"modalities": list(teacher.modalities)})
        _expect(where, {"heads": metadata["heads"]}, {"heads": dict(teacher.heads)})
        for path in paths:
            with atomic_path(path) as tmp:
                shutil.copyfile(path, tmp)
                written += _add_logits(tmp, teacher, device, batch_size, source)
    return written


@torch.no_grad()
def _add_logits(path: Path, teacher, device, batch_size: int, source: dict) -> int:
    """Write ``logits/<head>`` of every written row with a modality of one shard; returns their number."""
    with open_shard(path, "a") as f:
        metadata = read_metadata(f)
        rows = np.flatnonzero(f["done"][...] & f["availability"][...].any(axis=1))
        for head, classes in teacher.heads.items():
            if f"logits/{head}" in f:
                del f[f"logits/{head}"]
            f.create_dataset(f"logits/{head}", shape=(metadata["rows"], classes), dtype="float32")
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            tokens = {
                k: torch.from_numpy(f[f"tokens/{k}"][chunk].astype(np.float32)).to(device) for k in teacher.modalities
            }
            availability = torch.from_numpy(f["availability"][chunk])
            logits = teacher.fuse(tokens, availability).logits
            for head, value in logits.items():
                f[f"logits/{head}"][chunk] = value.float().cpu().numpy()
        f.attrs[METADATA] = json.dumps({**metadata, "teacher": source})
    return len(rows)


class CachedTeacherViews(_ShardReader):
    """Student training clips paired with the teacher logits cached for the same view.

    ``clips``: the student's training clips from :func:`training_view_clips`. The cache must match
    ``config`` (modalities, clip recipe, ``cache.train_views``, the data, and the teacher checkpoint
    when ``teacher`` is set). Item ``(index, seed)``: the seed picks one of the clip's cached views;
    the clip is loaded with that view's seed, so the student sees exactly the frames, crop and flip
    the teacher saw; modality-dropout noise still comes from the per-epoch seed.
    """

    def __init__(
        self,
        clips: ClipDataset,
        config: TrainConfig,
        in_memory: bool | None = None,
        decode_once: bool = False,
        workers: int = 0,
    ):
        super().__init__(config.cache.path, "train", in_memory)
        if clips.train != (config.cache.train_views > 0) or clips.views != 1:
            raise ValueError("CachedTeacherViews reads the fixed training views: give it training_view_clips(...)")
        teacher = self.metadata["teacher"]
        if not teacher:
            raise FileNotFoundError(f"{self.where}: no teacher logits; run `karmma extract ... --logits TEACHER_CKPT`")
        _expect(self.where, self.metadata["recipe"], clip_recipe(config, clips.modalities))
        _expect_data(self.where, self.metadata["data"], data_identity(config, clips.samples), self.sample_ids, clips)
        if config.teacher and Path(config.teacher).is_file():
            _expect(self.where, {"sha256": teacher["sha256"]}, {"sha256": file_sha256(config.teacher)}, "teacher.")
        elif config.teacher:  # e.g. a shipped config's default path: the student does not need the file
            log.warning(
                "teacher=%s: no such file, not checked; the cached logits come from %s (sha256 %s)",
                config.teacher,
                teacher["checkpoint"],
                teacher["sha256"][:12],
            )
        self.teacher, self.seed, self.heads = teacher, int(self.metadata["seed"]), list(self.metadata["heads"])
        if decode_once:  # the very views the logits were cached for, decoded once (karmma.training.memory)
            from karmma.training.memory import DecodedViews

            clips = DecodedViews(clips, self.views, self.seed, workers)
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips.samples)

    def _clip_key(self, key) -> tuple[int, int]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        return index, view_seed(self.seed, index, seed % self.views)

    def _with_logits(self, item: dict, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        row = index * self.views + seed % self.views
        item["teacher_logits"] = {}
        if item["availability"].any():  # (an item without any modality is left out of the batch)
            if not self.available[row]:
                raise CacheError(
                    f"{self.where}: no teacher logits for clip {self.sample_ids[index]!r} view {row % self.views}: "
                    "none of its media could be read at extraction; re-extract the cache"
                )
            f = self._file(row % self.world_size)
            item["teacher_logits"] = {h: torch.from_numpy(np.asarray(f[f"logits/{h}"][row])) for h in self.heads}
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
