"""A user's own recordings: one CSV row per clip.

```
clip_id,verb,noun,V,F,A,D,start,stop,fps
grasp_0001,3,12,videos/grasp_0001.mp4,flow/grasp_0001,audio/grasp_0001.wav,,0.0,2.5,30
```

* ``clip_id`` (required, unique).
* One column per classification head with integer class ids (here ``verb``
  and ``noun``): every column that is not one of the others below.
* Modality path columns, any subset, relative to the manifest's folder; an
  empty cell means the clip does not have that modality:
  ``V`` a video file or a folder of ``frame_%010d.jpg`` frames; ``F`` a folder
  with ``u/`` and ``v/`` flow JPEGs (one per RGB frame, or as the frame recipe
  of the data root says when ``karmma prepare`` made them there: the folder's
  name is the video id its stride rule reads); ``A`` a WAV (24 kHz),
  an HDF5 file (dataset named by ``clip_id``) or a video with an audio track;
  ``D`` a JSON file ``{"width": W, "height": H, "frames": {"1": [[x1, y1, x2, y2, category], ...]}}``.
* Optional ``start``/``stop`` (seconds, finite, >= 0; default the whole clip)
  and ``fps`` (finite, > 0; default 30), and ``frames`` (number of frames;
  counted when absent). A bad cell is an error naming the file, line and column.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from karmma.data.annotations import AnnotationError
from karmma.data.boxes import Box
from karmma.data.media import MediaError, video_frame_count
from karmma.data.recipe import PrepareSettings
from karmma.data.sources import AudioSource, BoxSource, FlowSource, FrameSource, VideoSource
from karmma.data.views import ClipSample
from karmma.modalities import MODALITY_ORDER

RESERVED = {"clip_id", *MODALITY_ORDER, "start", "stop", "fps", "frames"}


def _boxes(path: Path, manifest: Path, line: int) -> BoxSource:
    try:
        raw = json.loads(path.read_text())
        frames = {
            int(n): [Box(*map(float, b[:4]), category=int(b[4])) for b in boxes] for n, boxes in raw["frames"].items()
        }
        return BoxSource(frames, int(raw["width"]), int(raw["height"]))
    except FileNotFoundError:
        return BoxSource({}, 1, 1)  # absent: the dataset counts D as missing
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise AnnotationError(manifest, line, f"malformed box file {path} ({error!r})") from None


def read_manifest(
    path: str | Path,
    modalities: tuple[str, ...] = MODALITY_ORDER,
    classes: dict[str, int] | None = None,
    recipe: PrepareSettings | None = None,
) -> tuple[list[ClipSample], list[str]]:
    """Read a manifest; returns the clips and the head names (label columns).

    ``classes`` (``data.heads``): classes per head; a label outside them is an error. ``recipe``:
    the frame recipe of the flow folders (None: not made by ``karmma prepare``)."""
    path = Path(path)
    base = path.parent
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "clip_id" not in columns:
            raise AnnotationError(path, 1, "a manifest needs a 'clip_id' column")
        heads = [c for c in columns if c not in RESERVED]
        for head in classes or {}:
            if head not in heads:
                raise AnnotationError(path, 1, f"data.heads names head {head!r}, not a column of the manifest {heads}")
        if not any(m in columns for m in modalities):
            raise AnnotationError(path, 1, f"no modality column ({', '.join(modalities)})")
        samples, seen = [], {}
        for row in reader:
            line = reader.line_num
            clip_id = row["clip_id"].strip()
            if not clip_id:
                raise AnnotationError(path, line, "empty clip_id")
            if clip_id in seen:
                raise AnnotationError(path, line, f"duplicated clip_id {clip_id!r} (first on line {seen[clip_id]})")
            seen[clip_id] = line
            labels = {}
            for head in heads:
                try:
                    labels[head] = int(row[head])
                except (TypeError, ValueError):
                    raise AnnotationError(
                        path, line, f"label {head}={row[head]!r} is not an integer class id"
                    ) from None
                if labels[head] < 0:
                    raise AnnotationError(path, line, f"label {head}={labels[head]} is negative")
                size = (classes or {}).get(head)
                if size is not None and labels[head] >= size:
                    raise AnnotationError(
                        path,
                        line,
                        f"column {head}: class {labels[head]} is outside the head's {size} classes (0..{size - 1}, data.heads)",
                    )
            fps = _number(row, "fps", path, line, positive=True) or 30.0
            start = _number(row, "start", path, line) or 0.0
            stop = _number(row, "stop", path, line)
            if stop is not None and stop < start:
                raise AnnotationError(path, line, f"stop {stop} is before start {start}")
            if not math.isfinite(max(start, stop or 0.0) * fps):  # int(frame number) would overflow
                raise AnnotationError(
                    path, line, f"columns start/stop: {max(start, stop or 0.0)} s at {fps} fps is past any frame"
                )
            sources = {}
            cells = {m: (row.get(m) or "").strip() for m in modalities}
            if cells.get("V"):
                v = base / cells["V"]
                sources["V"] = FrameSource(v) if v.is_dir() or not v.suffix else VideoSource(v)
            if cells.get("F"):
                flow = base / cells["F"]
                sources["F"] = FlowSource.made_by(recipe, flow, flow.name, fps)
            if cells.get("A"):
                sources["A"] = AudioSource(base / cells["A"], dataset=clip_id)
            if cells.get("D"):
                sources["D"] = _boxes(base / cells["D"], path, line)
            frames = _number(row, "frames", path, line)
            if frames is not None and frames != int(frames):
                raise AnnotationError(path, line, f"column frames: {row['frames']!r} is not a whole number of frames")
            total = int(frames) if frames is not None else _count_frames(sources.get("V"))
            if stop is None:
                stop = total / fps if total else start
            first = int(start * fps) + 1
            last = max(first, min(int(stop * fps) + 1, total or int(stop * fps) + 1))
            samples.append(ClipSample(clip_id, labels, first, last, start, stop, fps, sources, group=clip_id))
    return samples, heads


def _number(row: dict, column: str, path: Path, line: int, positive: bool = False) -> float | None:
    """The cell ``column`` as a finite number >= 0 (> 0 when ``positive``); None when it is empty."""
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AnnotationError(path, line, f"column {column}: {text!r} is not a finite number")
    if value < 0 or (positive and value == 0):
        raise AnnotationError(path, line, f"column {column}: {value} must be {'> 0' if positive else '>= 0'}")
    return value


def _count_frames(source) -> int:
    if isinstance(source, FrameSource):
        return sum(1 for _ in source.directory.glob("*.jpg"))
    if isinstance(source, VideoSource) and source.path.is_file():
        try:
            return video_frame_count(source.path)[0]
        except MediaError:
            return 0
    return 0
