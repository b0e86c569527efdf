"""The frame recipe: how a video becomes the RGB frames and optical flow a model sees.

One :class:`PrepareSettings` decides it: the flow method, the frames' short side,
the frame rate (when resampled), the flow quantisation bound and the rule that
gives each video its flow stride (RGB frames between the two frames of a flow
pair). ``karmma prepare`` makes frames by it and records it in
``OUT/.prepared/<video>.json``; the dataset reads the flow with the strides it
gives (:func:`read_recipe`); training writes it into every checkpoint and export
into every ``.safetensors`` and ONNX file; deployment builds a video's inputs by
it. A model given data made by another recipe is an error, never a silent
difference (:func:`check_same_recipe`).

The flow stride rules, evaluated the same way by ``prepare`` and deployment:

* ``"epic-id"`` (the default, and the published EPIC-KITCHENS flow): 2 for
  2018-style ids ``PXX_YY`` (flow at half the RGB rate), 1 for any other id
  (2020-style ``PXX_1YY``, any other name). A video file's id is its name
  without the suffix, so with this rule a renamed video can get another stride.
* ``"fps"``: pairs about ``flow_pair_seconds`` apart whatever the name:
  ``round(rate * flow_pair_seconds)``, at least 1 (2 at 50-60 fps, 1 at 30 fps
  and less with the default 1/30 s).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

log = logging.getLogger("karmma.data")

STRIDE_RULES = ("epic-id", "fps")
FLOW_METHODS = ("tvl1", "dis")
#: the folder of ``karmma prepare``'s per-video markers, under the prepared root
MARKERS = ".prepared"
EPIC_2018_VIDEO = re.compile(r"P\d{2}_\d{2}")


@dataclass(frozen=True)
class PrepareSettings:
    """The recipe of a model's frames (see the module docstring).

    ``fps`` None keeps each video's own rate; ``flow_pair_seconds`` is the
    parameter of the ``"fps"`` stride rule (unused by ``"epic-id"``)."""

    flow: str = "tvl1"
    fps: float | None = None
    short_side: int = 256
    flow_bound: float = 20.0  # flow JPEGs map [-bound, bound] px to [0, 255]
    flow_stride: str = "epic-id"
    flow_pair_seconds: float = 1 / 30

    def __post_init__(self):
        if self.flow not in FLOW_METHODS:
            raise ValueError(f"flow method must be one of {', '.join(FLOW_METHODS)}, got {self.flow!r}")
        if self.flow_stride not in STRIDE_RULES:
            raise ValueError(f"flow stride rule must be one of {', '.join(STRIDE_RULES)}, got {self.flow_stride!r}")
        for name in ("short_side", "flow_bound", "flow_pair_seconds", "fps"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")

    def stride(self, video_id: str, rate: float | None) -> int:
        """RGB frames between the two frames of a flow pair in video ``video_id`` of ``rate`` fps
        (the rate after resampling to ``fps``, if set)."""
        if self.flow_stride == "epic-id":
            return 2 if EPIC_2018_VIDEO.fullmatch(video_id) else 1
        if not rate:
            raise ValueError(f"the flow stride rule 'fps' needs the frame rate of video {video_id}, which is unknown")
        return max(1, round(rate * self.flow_pair_seconds))

    def describe_stride(self) -> str:
        if self.flow_stride == "epic-id":
            return "flow stride by EPIC id (2 for 2018-style ids like P01_01, else 1)"
        return f"flow stride from the frame rate (pairs about {self.flow_pair_seconds:.4g} s apart)"

    def describe(self) -> str:
        """One line, e.g. ``dis flow, short side 64 px, the video's frame rate, flow stride by EPIC id (...)``."""
        rate = f"{self.fps:g} fps" if self.fps else "the video's frame rate"
        bound = f", flow quantised over +-{self.flow_bound:g} px" if self.flow_bound != 20.0 else ""
        return f"{self.flow} flow, short side {self.short_side} px, {rate}{bound}, {self.describe_stride()}"

    def differences(self, other: PrepareSettings) -> list[str]:
        """``["flow dis vs tvl1", ...]``: the settings in which ``other`` differs from this recipe."""
        return [
            f"{f.name} {getattr(self, f.name)} vs {getattr(other, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
            and not (f.name == "flow_pair_seconds" and self.flow_stride == other.flow_stride == "epic-id")
        ]

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict, where: str = "") -> PrepareSettings:
        """A recorded recipe; fields recorded before they existed take the value ``karmma prepare``
        used then (flow stride rule ``epic-id``, bound 20 px). Other keys (``jpeg_quality``) are ignored."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in record.items() if k in known})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where or 'a recorded frame recipe'}: unreadable recipe {record!r} ({error})") from None


#: the official EPIC-KITCHENS-100 frames: TV-L1 flow, 256 px short side, each video's rate, the id rule
PUBLISHED_EPIC = PrepareSettings()


def check_same_recipe(
    first: PrepareSettings | None, second: PrepareSettings | None, first_name: str, second_name: str
) -> None:
    """Raise ``ValueError`` (one line) when two recipes differ, e.g. a teacher's and its
    student's training data's. One unknown (None: recorded before karmma recorded recipes, or
    flow not made by ``karmma prepare``) cannot be checked: a warning says so."""
    if first is None or second is None:
        if first is not None or second is not None:
            unknown, known = (first_name, second_name) if first is None else (second_name, first_name)
            log.warning("%s records no frame recipe: it cannot be checked against that of %s", unknown, known)
        return
    changed = first.differences(second)
    if changed:
        raise ValueError(
            f"{first_name} and {second_name} have different frame recipes ({'; '.join(changed)}): "
            "prepare the data again with the model's settings (karmma prepare --flow, --short-side, --fps, "
            "--flow-stride), or use a model trained on data of this recipe"
        )


def marker_path(out: Path, video_id: str) -> Path:
    return out / MARKERS / f"{video_id}.json"


def read_recipe(root: str | Path) -> PrepareSettings | None:
    """The recipe recorded by ``karmma prepare`` under ``root`` (None: no markers).

    Raises ``ValueError`` when its videos were prepared by different recipes."""
    folder = Path(root) / MARKERS
    markers = sorted(folder.glob("*.json")) if folder.is_dir() else []
    recipes: dict[PrepareSettings, str] = {}
    for marker in markers:
        try:
            record = json.loads(marker.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written marker: prepare redoes that video
        recipes.setdefault(PrepareSettings.from_record(record, str(marker)), marker.stem)
    if len(recipes) > 1:
        (first, a), (second, b) = list(recipes.items())[:2]
        raise ValueError(
            f"{root}: videos prepared with different frame recipes ({a} vs {b}: {'; '.join(first.differences(second))}); "
            "run karmma prepare again with one set of settings"
        )
    return next(iter(recipes), None)


def recorded_recipe(record: dict | None, where: str) -> PrepareSettings | None:
    """The frame recipe a model file records (None: unknown). A record written before the flow
    stride rule was recorded (``{"flow", "short_side", "fps"}``, read from ``karmma prepare``'s
    markers, whose only rule then was ``epic-id``) is completed with the rule of that time,
    with a warning: deployment then takes the stride from the video's name, as that data did."""
    if not record:
        return None
    if "flow_stride" not in record:
        log.warning(
            "%s records its frame recipe without the flow stride rule (written before karmma recorded it): "
            "the rule karmma prepare used then applies (epic-id: 2 for 2018-style EPIC ids like P01_01, else 1)",
            where,
        )
    return PrepareSettings.from_record(record, where)
