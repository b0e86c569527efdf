"""Something-Something v2 (+ Something-Else boxes as the D modality).

Layout (as written by ``karmma prepare`` from the ``.webm`` files):

```
<root>/videos/<id>.webm                          (decoded on the fly when no frames exist)
<root>/rgb_frames/<id>/frame_0000000001.jpg
<root>/flow_frames/<id>/{u,v}/frame_0000000001.jpg   (one flow frame per RGB frame)
<root>/video_info.csv                            (frame rate and source size per video)
```

Every video is one clip covering the whole video; the label is the template
with its brackets removed, looked up in ``labels.json``. Something-Else box
frame numbers are 1-based frames of the original 12 fps videos and are
normalised by the source video size from ``video_info.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from karmma.data.annotations import Segment
from karmma.data.boxes import Box
from karmma.data.recipe import PrepareSettings
from karmma.data.sources import BoxSource, FlowSource, FrameSource, VideoSource
from karmma.data.views import ClipSample
from karmma.modalities import FRAME_MODALITIES

log = logging.getLogger("karmma.data")
SSV2_FPS = 12.0


def ssv2_samples(
    segments: list[Segment],
    root: Path,
    video_info: dict | None = None,
    boxes: dict[str, dict[int, list[Box]]] | None = None,
    modalities: tuple[str, ...] = FRAME_MODALITIES,
    recipe: PrepareSettings | None = None,
) -> list[ClipSample]:
    """One :class:`ClipSample` per video; ``recipe``: how its frames were made (None: unknown)."""
    video_info = video_info or {}
    samples = []
    without_size = 0
    for segment in segments:
        vid = segment.video_id
        duration, fps, (width, height) = video_info.get(vid, (0.0, SSV2_FPS, (0, 0)))
        frames_dir = root / "rgb_frames" / vid
        frame_count = int(round(duration * fps))
        if frame_count <= 0 and frames_dir.is_dir():
            frame_count = sum(1 for _ in frames_dir.glob("*.jpg"))
        sources = {}
        if "V" in modalities:
            sources["V"] = (
                FrameSource(frames_dir) if frames_dir.is_dir() else VideoSource(root / "videos" / f"{vid}.webm")
            )
        if "F" in modalities:
            sources["F"] = FlowSource.made_by(recipe, root / "flow_frames" / vid, vid, fps)
        if "D" in modalities and boxes is not None and vid in boxes:
            if width and height:
                sources["D"] = BoxSource(boxes[vid], width, height)
            else:
                without_size += 1
        samples.append(
            ClipSample(
                id=segment.id,
                labels=segment.labels,
                start_frame=1,
                stop_frame=max(frame_count, 1),
                start_time=0.0,
                stop_time=frame_count / fps if fps else 0.0,
                fps=fps,
                sources=sources,
                group=vid,
            )
        )
    if without_size:
        log.warning("%d video(s) have boxes but no source size in video_info.csv: their D is missing", without_size)
    return samples
