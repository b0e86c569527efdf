"""Where a sample's media lives, one small object per modality.

A source knows whether its files exist (cheap, checked when a dataset is
built) and how to load the frames or samples a clip needs (in a worker).
Frame numbers are 1-based RGB frame numbers throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from karmma.data.boxes import Box, boxes_tensor
from karmma.data.media import MediaError, read_audio, read_quantised_flow, read_rgb_frames, read_video_frames

FRAME_TEMPLATE = "frame_{:010d}.jpg"


@dataclass(frozen=True)
class FrameSource:
    """A folder of RGB JPEG frames ``frame_0000000001.jpg, ...``."""

    directory: Path
    template: str = FRAME_TEMPLATE

    def path(self, number: int) -> Path:
        return self.directory / self.template.format(number)

    def exists(self, first: int, last: int) -> bool:
        return self.path(first).is_file() and self.path(last).is_file()

    def load(self, numbers: list[int]) -> torch.Tensor:
        """``[T, 3, H, W]`` uint8."""
        return read_rgb_frames([self.path(n) for n in numbers])


@dataclass(frozen=True)
class FlowSource:
    """Folders ``u/`` and ``v/`` of quantised flow JPEGs.

    ``stride`` is the number of RGB frames per flow frame: 2 for the 2018
    EPIC-KITCHENS videos (``PXX_YY``, flow at half the RGB rate), 1 otherwise.
    """

    directory: Path
    stride: int = 1
    template: str = FRAME_TEMPLATE

    def index(self, rgb_number: int) -> int:
        return (rgb_number - 1) // self.stride + 1

    def paths(self, rgb_number: int) -> tuple[Path, Path]:
        name = self.template.format(self.index(rgb_number))
        return self.directory / "u" / name, self.directory / "v" / name

    def exists(self, first: int, last: int) -> bool:
        # a video has one flow frame fewer than RGB frames (per stride): the last may be absent
        return all(p.is_file() for n in (first, max(first, last - self.stride)) for p in self.paths(n))

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


@dataclass(frozen=True)
class VideoSource:
    """A video file whose frames are decoded on demand (e.g. SSv2 ``.webm``)."""

    path: Path

    def exists(self, first: int, last: int) -> bool:
        return self.path.is_file()

    def load(self, numbers: list[int]) -> torch.Tensor:
        return read_video_frames(self.path, numbers)


@dataclass(frozen=True)
class AudioSource:
    """A WAV file, an HDF5 file (``dataset`` per video) or a video's audio track."""

    path: Path
    dataset: str | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, start: float, duration: float, sample_rate: int) -> torch.Tensor:
        samples = read_audio(self.path, start, duration, sample_rate, self.dataset)
        if not np.isfinite(samples).all():
            raise MediaError(f"{self.path}: audio contains NaN or infinite samples")
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
