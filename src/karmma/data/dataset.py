"""One dataset class for every source of clips (EPIC, SSv2, manifests, SynthKitchen).

A :class:`ClipSample` says where each modality of one labelled clip lives; a
:class:`ClipDataset` samples frames, loads media and applies transforms,
producing exactly the input shapes the model's modality specs ask for:

* ``V``: ``[T, 3, S, S]`` RGB crops, uint8, with ``affine["V"]`` ``[2, 3]``: the
  per-channel map to ImageNet-normalised float,
* ``F``: ``[T, 2, S, S]`` quantised flow crops, uint8, with ``affine["F"]`` ``[2, 2]``:
  the per-sample map to flow in pixels of the crop divided by ``flow_scale``,
* ``A``: ``[1, n_mels, frames]`` log-mel around the segment centre (student),
  or ``[T, 1, S', S']`` one log-mel image per sampled frame (paper teacher),
* ``D``: ``[T, K, 6]`` normalised boxes.

V and F stay uint8 until :func:`~karmma.data.transforms.finish_inputs` applies
their maps where the model runs (its GPU): a quarter of the bytes to hand over
and to copy to the device, and no float pass on the loader's cores. Every
consumer of the batches calls it; models receive the same float tensors.

A key ``"A:teacher"`` asks for a second form of modality ``A`` (another
shape), for a live teacher whose inputs differ from the student's.

A modality whose files are absent is *missing*; so is one whose media do not
cover the clip (checked against the media's own durations: audio ending
before the clip's end, a 10 ms or empty track, frames ending before it; the
rule of :func:`~karmma.data.views.coverage_problem`, which ``karmma predict``
applies too): never a zero-padded, constant tensor marked present. Frames
ending within its tolerance cut the clip at their last frame. One whose files
cannot be read is *unreadable* (logged with its path). Either way the sample
goes on without it and its availability bit is False; the counts are in
:class:`DataReport` (``not_covered`` lists the uncovered ones, logged once per
dataset). With ``missing="error"``, absent files stop the dataset at
construction instead.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch.utils.data import Dataset

from karmma.data.audio import log_mel, log_mel_images
from karmma.data.media import MediaError
from karmma.data.sampling import segment_frame_numbers
from karmma.data.timing import stage
from karmma.data.transforms import crop_resize, eval_crop_params, flow_affine, random_crop_params, rgb_affine
from karmma.data.views import (
    ClipSample,
    audio_window_start,
    clip_frames,
    coverage_problem,
    log_mel_config,
    modality_of,
    spectrogram_config,
)
from karmma.modalities import IMAGE_MODALITIES
from karmma.train_config import ClipConfig

log = logging.getLogger("karmma.data")

PRESENT, MISSING, UNREADABLE = 0, 1, 2
STATUS_NAMES = {PRESENT: "present", MISSING: "missing", UNREADABLE: "unreadable"}


class DataReport:
    """Counts per modality of present / missing / unreadable, plus skipped samples."""

    def __init__(self, modalities: Sequence[str]):
        self.modalities = list(modalities)
        self.counts = {k: Counter() for k in self.modalities}
        self.not_covered: dict[str, list[tuple[str, str]]] = {k: [] for k in self.modalities}  # (sample id, why)
        self.skipped = 0

    def add(self, status: torch.Tensor) -> None:
        """Add a ``[B, M]`` (or ``[M]``) status tensor of codes PRESENT/MISSING/UNREADABLE."""
        for row in status.reshape(-1, len(self.modalities)).tolist():
            for key, code in zip(self.modalities, row):
                self.counts[key][STATUS_NAMES[code]] += 1

    def as_dict(self) -> dict:
        return {
            "modalities": {k: {name: self.counts[k][name] for name in STATUS_NAMES.values()} for k in self.modalities},
            "not_covered": {k: len(v) for k, v in self.not_covered.items()},
            "skipped_no_modality": self.skipped,
        }

    def __str__(self) -> str:
        lines = [f"{'modality':8s} {'present':>9s} {'missing':>9s} {'unreadable':>10s}"]
        for key in self.modalities:
            c = self.counts[key]
            lines.append(f"{key:8s} {c['present']:9d} {c['missing']:9d} {c['unreadable']:10d}")
        for key, uncovered in self.not_covered.items():
            if uncovered:
                lines.append(
                    f"{key}: {len(uncovered)} missing because the media do not cover the clip (e.g. {uncovered[0][0]}: {uncovered[0][1]})"
                )
        if self.skipped:
            lines.append(f"{self.skipped} sample(s) skipped: no modality available")
        return "\n".join(lines)


class ClipDataset(Dataset):
    """Clips with any subset of modalities.

    Args:
        samples: the clips.
        input_shapes: ``{key: shape}`` of the model's modalities (its
            ``ModalitySpec.input_shape``), in the order of the availability columns.
        train: random temporal/spatial sampling and flips; otherwise the
            ``num_clips x num_crops`` evaluation views, one dataset item each.
        missing: ``"skip"`` (absent files mark the modality missing) or
            ``"error"`` (absent files are an error naming them).
        seed: base seed of the sampling RNG (combined with the epoch, the item and the worker seed).
    """

    def __init__(
        self,
        samples: Sequence[ClipSample],
        input_shapes: Mapping[str, tuple[int, ...]],
        train: bool,
        config: ClipConfig | None = None,
        missing: Literal["skip", "error"] = "skip",
    ):
        if missing not in ("skip", "error"):
            raise ValueError(f"missing must be 'skip' or 'error', got {missing!r}")
        self.modalities = list(input_shapes)
        self.input_shapes = dict(input_shapes)
        self.frames = clip_frames(self.input_shapes)  # V, F and D are sampled at the same frame numbers
        self.train = train
        self.config = config = config or ClipConfig()
        self.views = 1 if train else config.num_clips * config.num_crops
        self.report = DataReport(self.modalities)
        kept, absent = [], []
        for sample in samples:
            checked = [self._index_status(sample, k, self.report) for k in self.modalities]
            status = torch.tensor([code for code, _ in checked], dtype=torch.int8)
            absent += [
                (sample.id, k)
                for k, code in zip(self.modalities, status.tolist())
                if code == MISSING and k in sample.sources
            ]
            self.report.add(status)
            if (status == PRESENT).any():
                cuts = [cut for code, cut in checked if code == PRESENT and cut is not None]
                # media ending within the tolerance of the clip's end: the clip ends at their last frame
                kept.append(dataclasses.replace(sample, stop_frame=min(cuts)) if cuts else sample)
            else:
                self.report.skipped += 1
                log.warning("sample %s has none of the modalities %s: skipped", sample.id, "/".join(self.modalities))
        if missing == "error" and absent:
            shown = ", ".join(f"{sid}:{k}" for sid, k in absent[:5])
            raise FileNotFoundError(
                f"{len(absent)} modality file set(s) are absent (e.g. {shown}); use missing='skip' to train without them"
            )
        for key, uncovered in self.report.not_covered.items():
            if uncovered:
                log.warning(
                    "%s: %d clip(s) whose media do not cover the clip are without it (e.g. %s: %s)",
                    key,
                    len(uncovered),
                    *uncovered[0],
                )
        self.samples = kept

    def _index_status(self, sample: ClipSample, key: str, report: DataReport | None = None) -> tuple[int, int | None]:
        """``(PRESENT or MISSING, cut)``: MISSING when the files are absent or their media do not
        cover the clip (:func:`~karmma.data.views.coverage_problem`, recorded in ``report``);
        ``cut`` is the last frame of frame media that end before the clip's last frame but
        within the tolerance (None otherwise)."""
        source = sample.sources.get(modality_of(key))
        if source is None:
            return MISSING, None
        first, last = sample.start_frame, max(sample.stop_frame, sample.start_frame)
        exists = source.exists() if modality_of(key) == "A" else source.exists(first, last)
        why, cut = None, None
        if hasattr(source, "uncovered_times"):  # audio and video files: their durations
            why = source.uncovered_times(sample.start_time, sample.stop_time) if exists else None
        elif not exists and hasattr(source, "last_frame"):  # frame folders without the clip's last frame
            end = source.last_frame()
            if end >= first:  # the frames start but end early: by how much decides, as in karmma predict
                why = coverage_problem(
                    end / sample.fps, sample.start_time, sample.stop_time, f"frame folder {source.directory}"
                )
                exists, cut = why is None, end
        if why and report is not None:
            report.not_covered[key].append((sample.id, why))
        return (PRESENT if exists and not why else MISSING), cut

    def __len__(self) -> int:
        return len(self.samples) * self.views

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key`` is an index, or ``(index, seed)`` from a seeded sampler: then every random
        choice of the item (frames, crop, flip, modality-dropout noise) follows from the seed."""
        return self._item(key)

    def __getitems__(self, keys: list) -> list[dict]:
        """The items of one batch (a ``DataLoader`` asks for them so). Their inputs are written
        straight into one ``[B, ...]`` tensor per modality (in shared memory in a loader worker),
        which :func:`collate_clips` takes as the batch: no second copy of the clips."""
        buffers = {
            k: _batch_tensor(input_dtype(k), (len(keys), *self.input_shapes[k]), input_channels_last(k))
            for k in self.modalities
        }
        return [self._item(key, buffers, row) for row, key in enumerate(keys)]

    def _item(self, key: int | tuple[int, int], buffers: dict[str, torch.Tensor] | None = None, row: int = 0) -> dict:
        """One item; with ``buffers``, its inputs are row ``row`` of them (left as they are where absent)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        sample_index, view = divmod(index, self.views)
        sample = self.samples[sample_index]
        if seed is not None:
            rng = random.Random(seed)
        else:
            rng = random.Random(torch.randint(0, 2**62, ()).item()) if self.train else random.Random(index)
        noise = torch.tensor([[rng.random() for _ in self.modalities] for _ in range(2)])
        clip_view, crop_view = divmod(view, self.config.num_crops)
        numbers = segment_frame_numbers(
            sample.start_frame, sample.stop_frame, self.frames, self.train, rng, clip_view, self.config.num_clips
        )
        crop = None  # shared by V and F: chosen from the first visual modality's aspect ratio
        inputs, affine, status = {}, {}, []
        for key in self.modalities:
            out = buffers[key][row] if buffers is not None else None  # where the input goes, in a batch
            source = sample.sources.get(modality_of(key))
            code, affine_map = MISSING, None
            if source is not None and self._index_status(sample, key)[0] != MISSING:
                try:
                    tensor, crop, affine_map = self._load(key, sample, source, numbers, crop, rng, crop_view, out)
                    code = PRESENT
                except MediaError as error:
                    log.warning("unreadable %s of sample %s: %s", key, sample.id, error)
                    code = UNREADABLE
                # V and F are uint8 (finished by a finite affine map): only A and D can hold NaN or inf
                if code == PRESENT and input_dtype(key) != torch.uint8 and not torch.isfinite(tensor).all():
                    log.warning("non-finite %s of sample %s: treated as unreadable", key, sample.id)
                    code = UNREADABLE
            if code == PRESENT:
                inputs[key] = tensor
                if affine_map is not None:
                    affine[key] = affine_map
            status.append(code)
        status_tensor = torch.tensor(status, dtype=torch.int8)
        batch = {"batch_inputs": buffers, "batch_row": row} if buffers is not None else {}
        return {
            **batch,
            "id": sample.id,
            "view": view,
            "inputs": inputs,  # V, F: uint8 crops, finished by finish_inputs with "affine"
            "affine": affine,  # {V/F key: [2, C] per-channel scale and shift}
            "availability": status_tensor == PRESENT,
            "status": status_tensor,
            "labels": dict(sample.labels),
            "index": sample_index,
            "noise": noise,  # [2, M] uniform numbers for modality dropout (drop draw, keep-one choice)
        }

    def _load(self, key, sample, source, numbers, crop, rng, crop_view, out=None):
        """``(input, crop, affine)``: the input ``key`` of a sample (written into ``out`` when
        given), the crop of V and F, and the map that finishes a uint8 input (else None)."""
        shape = self.input_shapes[key]
        key = modality_of(key)
        if key in IMAGE_MODALITIES:
            with stage(f"{key} read+decode"):
                frames = source.load(numbers)  # uint8 [T, C, H, W]: RGB, or quantised flow
            if crop is None:
                aspect = frames.shape[-1] / frames.shape[-2]
                crop = (
                    random_crop_params(aspect, rng, self.config.crop_scale, self.config.flip)
                    if self.train
                    else eval_crop_params(aspect, crop_view, self.config.num_crops)
                )
            with stage(f"{key} crop/resize"):
                resized = crop_resize(frames, crop, shape[-1])  # uint8 [T, C, S, S], channels last for V
            with stage(f"{key} copy to batch"):  # V's buffer is channels last, as resized: a plain copy
                tensor = resized if out is None else out.copy_(resized)
            if key == "V":
                return tensor, crop, rgb_affine()
            return (
                tensor,
                crop,
                flow_affine(crop, tuple(frames.shape[-2:]), shape[-1], self.config.flow_scale, source.bound),
            )
        if key == "A":
            tensor = self._load_audio(sample, source, numbers, shape, rng)
        elif key == "D":
            boxes = source.load(numbers, self.config.box_slots or shape[1])
            tensor = boxes if crop is None else crop_boxes(boxes, crop)
        else:
            raise ValueError(f"no loader for modality {key!r}")
        return (tensor if out is None else out.copy_(tensor)), crop, None

    def _load_audio(self, sample, source, numbers, shape, rng) -> torch.Tensor:
        config = self.config.audio
        if len(shape) == 3:  # [1, n_mels, frames]: one spectrogram around the segment
            mel_config = spectrogram_config(config, shape)
            start = audio_window_start(sample.start_time, sample.stop_time, mel_config.seconds, self.train, rng)
            with stage("A read"):
                waveform = source.load(start, mel_config.seconds, config.sample_rate)
            with stage("A log-mel"):
                return log_mel(waveform, mel_config)[None]
        # [T, 1, S, S]: one log-mel image per sampled frame
        times = [sample.start_time + (n - sample.start_frame) / sample.fps for n in numbers]
        window = self.config.audio_image_seconds
        start = min(times) - window / 2
        with stage("A read"):
            waveform = source.load(start, max(times) - min(times) + window, config.sample_rate)
        mel_config = log_mel_config(config, n_mels=shape[2])
        with stage("A log-mel"):
            return log_mel_images(waveform, [t - start for t in times], shape[-1], window, mel_config)


def input_channels_last(key: str) -> bool:
    """Whether input ``key`` is handed over channels last in memory (its shape stays ``[T, C, S, S]``):
    RGB crops, as decoded and resized; copying them to the usual layout costs the loader 5x more
    than a plain copy, finish_inputs makes the model's contiguous floats anyway."""
    return modality_of(key) == "V"


def input_dtype(key: str) -> torch.dtype:
    """The dtype input ``key`` is handed over in: uint8 for V and F (crops), float32 otherwise."""
    return torch.uint8 if modality_of(key) in IMAGE_MODALITIES else torch.float32


def crop_boxes(boxes: torch.Tensor, crop) -> torch.Tensor:
    """Apply the visual crop and flip to normalised boxes ``[T, K, 6]``."""
    out = boxes.clone()
    out[..., [0, 2]] = ((boxes[..., [0, 2]] - crop.left) / crop.width).clamp(0, 1)
    out[..., [1, 3]] = ((boxes[..., [1, 3]] - crop.top) / crop.height).clamp(0, 1)
    if crop.flip:
        out[..., [0, 2]] = 1.0 - out[..., [2, 0]]
    out[..., :5] *= boxes[..., 4:5] > 0  # empty slots stay all-zero
    return out


def _batch_tensor(dtype: torch.dtype, shape: tuple[int, ...], channels_last: bool = False) -> torch.Tensor:
    """An uninitialised tensor; in a loader worker, in shared memory straight away (as torch's
    ``default_collate`` does): no copy to hand the batch to the main process. ``channels_last``:
    ``[B, T, C, H, W]`` laid out as ``[B, T, H, W, C]``."""
    stored = (*shape[:-3], shape[-2], shape[-1], shape[-3]) if channels_last else tuple(shape)
    if torch.utils.data.get_worker_info() is None:
        tensor = torch.empty(stored, dtype=dtype)
    else:
        numel = 1
        for n in shape:
            numel *= n
        storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
        tensor = torch.empty(0, dtype=dtype).new(storage).view(stored)
    return tensor.movedim(-1, -3) if channels_last else tensor


def collate_clips(items: list[dict]) -> dict:
    """Stack dataset items into a batch.

    ``inputs[key]`` is ``[B, ...]`` with zeros for samples without the modality
    (never read by the model); a modality no sample has is left out. ``affine[key]``
    (``[B, 2, C]``, zeros for those samples) maps uint8 V and F to the model's
    floats: :func:`~karmma.data.transforms.finish_inputs` makes the model's inputs.
    Items with no available modality (all unreadable) are dropped and their
    ids listed in ``dropped``.
    """
    kept = [item for item in items if item["availability"].any()]
    dropped = [item["id"] for item in items if not item["availability"].any()]
    batch_size = len(kept)
    keys = list(dict.fromkeys(k for item in kept for k in item["inputs"]))
    inputs = {}
    buffers = kept[0].get("batch_inputs") if kept else None
    if (
        buffers is not None
        and [item.get("batch_row") for item in kept] == list(range(len(items)))
        and all(item["batch_inputs"] is buffers for item in kept)
    ):  # the items were loaded into one tensor per modality (ClipDataset.__getitems__), none dropped
        inputs = {key: buffers[key] for key in keys}
        for key, tensor in inputs.items():
            for i, item in enumerate(kept):
                if key not in item["inputs"]:
                    tensor[i] = 0  # a missing or unreadable modality's row
    for key in keys:
        if key in inputs:
            continue
        example = next(item["inputs"][key] for item in kept if key in item["inputs"])
        stacked = _batch_tensor(example.dtype, (batch_size, *example.shape), input_channels_last(key))
        for i, item in enumerate(kept):
            if key in item["inputs"]:
                stacked[i] = item["inputs"][key]
            else:
                stacked[i] = 0
        inputs[key] = stacked
    affine = {}
    for key in dict.fromkeys(k for item in kept for k in item.get("affine", {})):
        example = next(item["affine"][key] for item in kept if key in item.get("affine", {}))
        zero = torch.zeros_like(example)  # a missing row's map: it stays zero
        affine[key] = torch.stack([item.get("affine", {}).get(key, zero) for item in kept])
    heads = list(kept[0]["labels"]) if kept else []
    return {
        "ids": [item["id"] for item in kept],
        "views": torch.tensor([item["view"] for item in kept], dtype=torch.long),
        "inputs": inputs,
        "affine": affine,
        "availability": torch.stack([item["availability"] for item in kept])
        if kept
        else torch.zeros(0, 0, dtype=torch.bool),
        "status": torch.stack([item["status"] for item in items]) if items else torch.zeros(0, 0, dtype=torch.int8),
        "labels": {h: torch.tensor([item["labels"][h] for item in kept], dtype=torch.long) for h in heads},
        "indices": torch.tensor([item["index"] for item in kept], dtype=torch.long),
        "noise": torch.stack([item["noise"] for item in kept]) if kept else torch.zeros(0, 2, 0),
        "dropped": dropped,
    }
