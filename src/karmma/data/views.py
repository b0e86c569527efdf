"""The clip recipe: what one clip's inputs are, shared by the dataset and deployment.

:class:`~karmma.data.dataset.ClipDataset` (prepared frames, flow JPEGs, WAV)
and :class:`~karmma.deploy.preprocess.Preprocessor` (a raw video in memory)
build the same inputs through these rules:

* ``T`` frames per clip for V, F, D and the teacher's A images (:func:`clip_frames`), at the centre of
  ``T`` equal parts of the segment in the evaluation view
  (:func:`~karmma.data.sampling.segment_frame_numbers`);
* F at a sampled RGB frame is the flow of its pair of RGB frames ``stride``
  apart (:func:`flow_frame`, :func:`flow_pair`);
* A is one log-mel spectrogram ``[1, n_mels, frames]`` of the window around
  the segment centre (:func:`spectrogram_config`, :func:`audio_window_start`);
* a modality whose media end before the segment does is missing, never padded
  (:func:`coverage_problem`, one rule for frames and audio); media ending within
  the tolerance cut the segment at their last frame (:func:`segment_frame_range`).

How the frames themselves are made (flow method, short side, the flow stride of
each video) is the frame recipe of :mod:`karmma.data.recipe`.

:class:`ClipSample` (where one labelled clip's media live) is here so that modules
can name it without importing the Dataset; the settings (``clip:`` of a config) are
:class:`karmma.train_config.ClipConfig`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from karmma.data.audio import LogMelConfig
from karmma.data.sampling import audio_centre
from karmma.modalities import FRAME_MODALITIES
from karmma.train_config import AudioConfig

#: media may end up to this many seconds (or a tenth of a shorter segment) before a segment does
COVERAGE_TOLERANCE = 0.1


@dataclass(frozen=True)
class ClipSample:
    """One clip: labels, frame range, times, and a source per modality it may have."""

    id: str
    labels: dict[str, int]
    start_frame: int
    stop_frame: int
    start_time: float
    stop_time: float
    fps: float
    sources: dict[str, Any] = field(default_factory=dict)
    group: str = ""  # video or participant, for splits and reports


def modality_of(key: str) -> str:
    """``"A:teacher"`` (a second form of a modality, e.g. the teacher's audio images) -> ``"A"``."""
    return key.split(":", 1)[0]


def clip_frames(input_shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Frames per clip of the V, F and D inputs (``[T, ...]``), and of an A input of log-mel images,
    one per sampled frame (``[T, 1, S, S]``, the teacher's); 8 when the model has none of them.

    Raises ``ValueError`` when they ask for different numbers of frames."""
    counts = {
        k: s[0]
        for k, s in input_shapes.items()
        if modality_of(k) in FRAME_MODALITIES or (modality_of(k) == "A" and len(s) == 4)
    }
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"the video, flow, box and audio-image inputs must have the same number of frames, got {counts}"
        )
    return next(iter(counts.values()), 8)


def spectrogram_config(audio: AudioConfig, shape: tuple[int, ...]) -> LogMelConfig:
    """The log-mel settings of an A input ``[1, n_mels, frames]`` (its window is ``frames`` hops long)."""
    return log_mel_config(audio, n_mels=shape[1], frames=shape[2])


def log_mel_config(audio: AudioConfig, **shape: int) -> LogMelConfig:
    """``clip.audio`` with the spectrogram's ``n_mels`` and ``frames`` (the model's A input decides them)."""
    settings = {f.name: getattr(audio, f.name) for f in dataclasses.fields(AudioConfig)}
    return LogMelConfig(**settings, **shape)


def audio_window_start(
    start_time: float, stop_time: float, seconds: float, train: bool = False, rng: random.Random | None = None
) -> float:
    """Where (s) the ``seconds``-long audio window of a segment starts: centred on the segment
    (training: on a random time inside it)."""
    return audio_centre(start_time, stop_time, train, rng) - seconds / 2


def flow_frame(rgb_number: int, stride: int) -> int:
    """The 1-based flow frame that goes with RGB frame ``rgb_number``: flow frame ``k`` is the motion
    from RGB frame ``(k - 1) * stride + 1`` to ``k * stride + 1`` (how ``karmma prepare`` writes it)."""
    return (rgb_number - 1) // stride + 1


def flow_pair(rgb_number: int, stride: int, first: int, last: int) -> tuple[int, int]:
    """The two RGB frames whose flow stands for ``rgb_number`` when frames ``first..last`` exist.

    At the end of a video, where the pair's second frame is missing (a video has one flow
    frame fewer than RGB frames per stride), the previous pair, as the dataset reads it."""
    base = (flow_frame(rgb_number, stride) - 1) * stride + 1
    if base + stride > last:
        base = max(first, base - stride)
    return base, min(base + stride, last)


def coverage_problem(media_seconds: float | None, start: float, stop: float, what: str = "audio") -> str | None:
    """Why media ending at ``media_seconds`` do not cover the segment ``[start, stop]`` s, or None when they do.

    The one rule of the dataset and ``karmma predict``, for frames and audio alike. A shortfall
    of up to :data:`COVERAGE_TOLERANCE` (or a tenth of a short segment) is tolerated: audio
    tracks routinely end a few milliseconds before the last frame, and a segment's end rarely
    falls on a frame boundary."""
    if media_seconds is None:
        return None  # duration unknown: loading will tell
    if media_seconds <= 0:
        return f"the {what} has no samples (0 s)"
    tolerance = min(COVERAGE_TOLERANCE, 0.1 * max(stop - start, 0.0))
    if stop > media_seconds + tolerance:
        return f"the {what} ends at {media_seconds:.2f} s, before the clip's end at {stop:.2f} s"
    return None


def segment_frame_range(start: float, stop: float, rate: float) -> tuple[int, int]:
    """The 1-based first and last frame of the segment ``[start, stop]`` s in frames at ``rate``
    (frame ``n`` shows time ``(n - 1) / rate``; the EPIC CSVs' convention)."""
    first = int(start * rate) + 1
    return first, max(first, int(stop * rate) + 1)
