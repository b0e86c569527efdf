"""TSN-style temporal sampling and the evaluation views.

A segment of frames ``[start, stop]`` (1-based, inclusive) is cut into ``T``
equal parts; training takes a random frame in each part, evaluation the frame
at ``(view + 0.5) / num_views`` of each part (the centre for one view), so
several temporal views cover the segment evenly.
"""

from __future__ import annotations

import random


def segment_frame_numbers(
    start: int,
    stop: int,
    num_frames: int,
    train: bool,
    rng: random.Random | None = None,
    view: int = 0,
    num_views: int = 1,
) -> list[int]:
    """``num_frames`` frame numbers in ``[start, stop]``, one per equal part."""
    if stop < start:
        raise ValueError(f"segment stop {stop} is before start {start}")
    length = stop - start + 1
    part = length / num_frames
    rng = rng or random.Random()
    numbers = []
    for i in range(num_frames):
        offset = rng.random() if train else (view + 0.5) / num_views
        numbers.append(start + min(int(part * (i + offset)), length - 1))
    return numbers


def audio_centre(start: float, stop: float, train: bool, rng: random.Random | None = None) -> float:
    """Centre (seconds) of the audio window: random within the segment for training, its middle otherwise."""
    if train and stop > start:
        return (rng or random.Random()).uniform(start, stop)
    return (start + stop) / 2
