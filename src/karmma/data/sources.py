"""Where a sample's media lives, one small object per modality.

A source knows whether its files exist (cheap, checked when a dataset is
built), where its media end (``last_frame`` of frame folders, ``uncovered_times``
of audio and video files against their own durations; the dataset applies
:func:`~karmma.data.views.coverage_problem` to both) and how to load the frames
or samples a clip needs (in a worker).
Frame numbers are 1-based RGB frame numbers throughout.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from karmma.data.boxes import Box, boxes_tensor
from karmma.data.media import (
    FLOW_BOUND,
    MediaError,
    read_audio,
    read_quantised_flow,
    read_rgb_frames,
    read_video_frames,
)
from karmma.data.views import coverage_problem, flow_frame

if TYPE_CHECKING:  # the loaders import torch themselves: deployment reads durations here without it
    import torch

    from karmma.data.recipe import PrepareSettings

FRAME_TEMPLATE = "frame_{:010d}.jpg"


@lru_cache(maxsize=4096)
def media_seconds(path: Path, dataset: str | None = None, mtime: float = 0.0, kind: str = "audio") -> float | None:
    """Duration (s) of an audio file (WAV header, HDF5 dataset length) or of a media file's
    ``kind`` stream (``audio``: 0 when it has none) as its headers declare; None when unknown or
    unreadable (loading then reports the file as unreadable). ``mtime`` keys the cache to the file's version."""
    try:
        suffix = path.suffix.lower()
        if suffix == ".wav":
            with wave.open(str(path), "rb") as f:
                return f.getnframes() / f.getframerate()
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                samples = f[dataset or path.stem]
                return len(samples) / float(samples.attrs.get("sample_rate", 24000))
        import av

        with av.open(str(path)) as container:
            streams = container.streams.audio if kind == "audio" else container.streams.video
            if not streams:
                return 0.0 if kind == "audio" else None
            if streams[0].duration is not None:
                return float(streams[0].duration * streams[0].time_base)
            return (
                container.duration / 1_000_000
                if container.duration is not None and len(container.streams) == 1
                else None
            )
    except Exception:  # noqa: BLE001 - corrupt headers: the loader reports the file as unreadable
        return None


@dataclass(frozen=True)
class FrameSource:
    """A folder of RGB JPEG frames ``frame_0000000001.jpg, ...``."""

    directory: Path
    template: str = FRAME_TEMPLATE

    def path(self, number: int) -> Path:
        return self.directory / self.template.format(number)

    def exists(self, first: int, last: int) -> bool:
        return self.path(first).is_file() and self.path(last).is_file()

    def last_frame(self) -> int:
        """The number of the folder's last frame (0 when it has none)."""
        return _frame_count(self.directory, self.template)

    def load(self, numbers: list[int]) -> torch.Tensor:
        """``[T, 3, H, W]`` uint8."""
        return read_rgb_frames([self.path(n) for n in numbers])


@dataclass(frozen=True)
class FlowSource:
    """Folders ``u/`` and ``v/`` of quantised flow JPEGs.

    ``stride`` is the number of RGB frames per flow frame (2 for the 2018
    EPIC-KITCHENS videos ``PXX_YY``: flow at half the RGB rate) and ``bound``
    the quantisation's (grey 0 and 255 are ``-bound`` and ``bound`` pixels):
    both as the frame recipe that made them says (:meth:`made_by`).
    """

    directory: Path
    stride: int = 1
    template: str = FRAME_TEMPLATE
    bound: float = FLOW_BOUND

    @classmethod
    def made_by(cls, recipe: PrepareSettings | None, directory: Path, video_id: str, rate: float | None) -> FlowSource:
        """The flow frames of video ``video_id`` (``rate`` fps) as ``recipe`` made them; None: flow
        not made by ``karmma prepare``, one flow frame per RGB frame over the usual 20 px."""
        if recipe is None:
            return cls(directory)
        return cls(directory, recipe.stride(video_id, rate), bound=recipe.flow_bound)

    def index(self, rgb_number: int) -> int:
        return flow_frame(rgb_number, self.stride)

    def paths(self, rgb_number: int) -> tuple[Path, Path]:
        name = self.template.format(self.index(rgb_number))
        return self.directory / "u" / name, self.directory / "v" / name

    def exists(self, first: int, last: int) -> bool:
        # a video has one flow frame fewer than RGB frames (per stride): the last may be absent
        return all(p.is_file() for n in (first, max(first, last - self.stride)) for p in self.paths(n))

    def last_frame(self) -> int:
        """The last RGB frame this flow stands for: a video of ``n`` frames has ``(n - 1) // stride``
        flow frames, and its last frames (after the last pair) take the last pair, as :meth:`load` reads them."""
        count = _frame_count(self.directory / "u", self.template)
        return (count + 1) * self.stride if count else 0

    def load(self, numbers: list[int]) -> torch.Tensor:
        """Quantised flow ``[T, 2, H, W]`` uint8 (:func:`karmma.data.media.decode_flow` gives pixels)."""
        # The last flow frames of a video may be missing (one fewer flow than RGB frame):
        # fall back to the previous existing flow frame.
        indices = []
        for n in numbers:
            while n > 1 and not self.paths(n)[0].is_file() and self.paths(n - self.stride)[0].is_file():
                n -= self.stride
            indices.append(n)
        u, v = zip(*(self.paths(n) for n in indices))
        return read_quantised_flow(list(u), list(v))


def _frame_count(directory: Path, template: str) -> int:
    return _count_files(directory, template.split("{", 1)[0], directory.stat().st_mtime if directory.is_dir() else 0.0)


@lru_cache(maxsize=4096)
def _count_files(directory: Path, prefix: str, mtime: float) -> int:
    """Files named ``prefix*`` in ``directory`` (0 when absent); ``mtime`` keys the cache to the folder's version."""
    return sum(1 for name in os.listdir(directory) if name.startswith(prefix)) if mtime else 0


@dataclass(frozen=True)
class VideoSource:
    """A video file whose frames are decoded on demand (e.g. SSv2 ``.webm``)."""

    path: Path

    def exists(self, first: int, last: int) -> bool:
        return self.path.is_file()

    def uncovered_times(self, start: float, stop: float) -> str | None:
        if not self.path.is_file():
            return None
        return coverage_problem(
            media_seconds(self.path, None, self.path.stat().st_mtime, "video"), start, stop, f"video {self.path}"
        )

    def load(self, numbers: list[int]) -> torch.Tensor:
        return read_video_frames(self.path, numbers)


@dataclass(frozen=True)
class AudioSource:
    """A WAV file, an HDF5 file (``dataset`` per video) or a video's audio track."""

    path: Path
    dataset: str | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    def seconds(self) -> float | None:
        """The audio's duration (s) from its headers; None when unknown."""
        return media_seconds(self.path, self.dataset, self.path.stat().st_mtime) if self.path.is_file() else None

    def uncovered_times(self, start: float, stop: float) -> str | None:
        """Why the audio does not cover the clip ``[start, stop]`` s (a 10 ms track, an empty
        WAV, timestamps past its end), or None."""
        return coverage_problem(
            self.seconds(), start, stop, f"audio {self.path}" + (f"[{self.dataset}]" if self.dataset else "")
        )

    def load(self, start: float, duration: float, sample_rate: int) -> torch.Tensor:
        samples = read_audio(self.path, start, duration, sample_rate, self.dataset)
        if not np.isfinite(samples).all():
            raise MediaError(f"{self.path}: audio contains NaN or infinite samples")
        import torch

        return torch.from_numpy(samples)


@dataclass(frozen=True)
class BoxSource:
    """Per-frame boxes held in memory, normalised by the frame size when loaded."""

    frames: dict[int, list[Box]]
    width: int
    height: int

    def exists(self, first: int, last: int) -> bool:
        return bool(self.frames)

    def load(self, numbers: list[int], slots: int) -> torch.Tensor:
        return boxes_tensor(self.frames, numbers, slots, self.width, self.height)
