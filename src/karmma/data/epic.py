"""EPIC-KITCHENS-100 on its official layout.

```
<root>/P01/rgb_frames/P01_01/frame_0000000001.jpg
<root>/P01/flow_frames/P01_01/{u,v}/frame_0000000001.jpg
<root>/P01/audio/P01_01.wav        (24 kHz mono), or one HDF5 file with a dataset per video,
<root>/P01/videos/P01_01.MP4       or the audio track of the video
```

Frame numbers in the CSVs are 1-based RGB file numbers. Flow of the 2018
videos (``PXX_YY``) is at half the RGB rate: flow frame ``(rgb - 1) // 2 + 1``;
the 2020 videos (``PXX_1YY``) have one flow frame per RGB frame. That is the
``epic-id`` stride rule of :mod:`karmma.data.recipe`; a root prepared by
``karmma prepare`` records its own recipe, which the layout follows instead.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from karmma.data.annotations import Segment
from karmma.data.recipe import PUBLISHED_EPIC, PrepareSettings
from karmma.data.sources import AudioSource, FlowSource, FrameSource
from karmma.data.views import ClipSample
from karmma.modalities import VIDEO_MODALITIES

DEFAULT_FPS = 59.94


def read_video_info(path: str | Path) -> dict[str, tuple[float, float, tuple[int, int]]]:
    """``EPIC_100_video_info.csv`` (or the ``video_info.csv`` written by ``karmma prepare``)
    -> ``{video_id: (duration, fps, (width, height))}``, where the size is that of the
    source video (``source_resolution`` when present)."""
    from karmma.data.annotations import AnnotationError

    info = {}
    with Path(path).open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                resolution = row.get("source_resolution") or row["resolution"]
                width, height = (int(v) for v in resolution.split("x"))
                info[row["video_id"]] = (float(row["duration"]), float(row["fps"]), (width, height))
            except (KeyError, ValueError, TypeError, AttributeError) as error:
                raise AnnotationError(
                    path, line, f"expected video_id,duration,fps,resolution (WxH) ({type(error).__name__}: {error})"
                ) from None
    return info


@dataclass(frozen=True)
class EpicLayout:
    """Where the media of an EPIC-format root lives.

    ``audio``: ``"auto"`` (WAV, else the HDF5 file, else the video's track),
    ``"wav"``, ``"hdf5"`` or ``"video"``. ``recipe``: how the frames were made
    (the published one for the official frames), which gives each video's flow stride.
    """

    root: Path
    audio: str = "auto"
    audio_hdf5: Path | None = None  # default <root>/audio.hdf5
    video_suffix: str = ".MP4"
    recipe: PrepareSettings = PUBLISHED_EPIC

    def rgb(self, video_id: str, participant: str) -> FrameSource:
        return FrameSource(self.root / participant / "rgb_frames" / video_id)

    def flow(self, video_id: str, participant: str, rate: float | None) -> FlowSource:
        return FlowSource.made_by(self.recipe, self.root / participant / "flow_frames" / video_id, video_id, rate)

    def audio_source(self, video_id: str, participant: str) -> AudioSource | None:
        wav = AudioSource(self.root / participant / "audio" / f"{video_id}.wav")
        hdf5 = AudioSource(self.audio_hdf5 or self.root / "audio.hdf5", dataset=video_id)
        video = AudioSource(self.root / participant / "videos" / f"{video_id}{self.video_suffix}")
        choices = {"wav": [wav], "hdf5": [hdf5], "video": [video], "auto": [wav, hdf5, video]}
        if self.audio not in choices:
            raise ValueError(f"audio must be one of {sorted(choices)}, got {self.audio!r}")
        candidates = choices[self.audio]
        return next((c for c in candidates if c.path.is_file()), candidates[0])


def epic_samples(
    segments: list[Segment],
    layout: EpicLayout,
    video_info: dict | None = None,
    modalities: tuple[str, ...] = VIDEO_MODALITIES,
) -> list[ClipSample]:
    """One :class:`ClipSample` per segment, with V/F/A sources on ``layout``."""
    samples = []
    sources_cache: dict[str, dict] = {}
    for segment in segments:
        info = (video_info or {}).get(segment.video_id)
        if segment.video_id not in sources_cache:
            vid, participant = segment.video_id, segment.participant_id
            sources = {}
            if "V" in modalities:
                sources["V"] = layout.rgb(vid, participant)
            if "F" in modalities:
                sources["F"] = layout.flow(vid, participant, info[1] if info else None)
            if "A" in modalities:
                sources["A"] = layout.audio_source(vid, participant)
            sources_cache[vid] = sources
        fps = info[1] if info else DEFAULT_FPS
        samples.append(
            ClipSample(
                id=segment.id,
                labels=segment.labels,
                start_frame=segment.start_frame,
                stop_frame=segment.stop_frame,
                start_time=segment.start_time,
                stop_time=segment.stop_time,
                fps=fps,
                sources=sources_cache[segment.video_id],
                group=segment.video_id,
            )
        )
    return samples
