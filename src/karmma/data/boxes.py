"""Hand/object boxes for the D modality: Something-Else annotations -> ``[T, K, 6]``.

Per box: ``(x1, y1, x2, y2, score, category)`` with coordinates divided by
the frame width/height and clipped to ``[0, 1]``; ``score`` is 1 for an
annotated box and 0 for an empty slot; ``category`` is 0 for a hand, 1 + k for
the k-th placeholder object (``standard_category`` ``"0000"``, ``"0001"``,
...), capped at ``num_categories - 1``. Slots are filled hands first, then
objects by placeholder index, so a slot tends to follow the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from karmma.data.annotations import AnnotationError, read_json

if TYPE_CHECKING:  # imported where used: karmma.data.sources is read by the torch-free deployment
    import torch


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    category: int
    score: float = 1.0


def box_category(label: dict, num_categories: int = 4) -> int:
    standard = str(label.get("standard_category", label.get("category", "")))
    if standard == "hand" or label.get("category") == "hand":
        return 0
    try:
        return min(1 + int(standard), num_categories - 1)
    except ValueError:
        return num_categories - 1


def read_something_else(path: str | Path, num_categories: int = 4) -> dict[str, dict[int, list[Box]]]:
    """Something-Else JSON -> ``{video_id: {frame_number (1-based): [Box, ...]}}``."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not all(isinstance(frames, list) for frames in raw.values()):
        raise AnnotationError(path, None, "expected a JSON object mapping video ids to lists of frame entries")
    videos: dict[str, dict[int, list[Box]]] = {}
    for video_id, frames in raw.items():
        per_frame: dict[int, list[Box]] = {}
        for i, frame in enumerate(frames):
            try:
                number = int(Path(frame["name"]).stem)
                boxes = [
                    Box(
                        float(label["box2d"]["x1"]),
                        float(label["box2d"]["y1"]),
                        float(label["box2d"]["x2"]),
                        float(label["box2d"]["y2"]),
                        box_category(label, num_categories),
                    )
                    for label in frame.get("labels", [])
                ]
            except (KeyError, TypeError, ValueError) as error:
                raise AnnotationError(
                    path, None, f"video {video_id}, frame entry {i}: malformed box annotation ({error!r})"
                ) from None
            per_frame[number] = sorted(boxes, key=lambda b: b.category)
        videos[str(video_id)] = per_frame
    return videos


def boxes_tensor(
    frames: dict[int, list[Box]], frame_numbers: list[int], slots: int, width: int, height: int
) -> torch.Tensor:
    """Boxes of the sampled frames as ``[T, slots, 6]``, normalised by the frame size."""
    import torch

    out = torch.zeros(len(frame_numbers), slots, 6)
    for t, number in enumerate(frame_numbers):
        for k, box in enumerate(frames.get(number, [])[:slots]):
            out[t, k] = torch.tensor(
                [box.x1 / width, box.y1 / height, box.x2 / width, box.y2 / height, box.score, box.category]
            )
    out[..., :4] = out[..., :4].clamp(0.0, 1.0)
    return out
