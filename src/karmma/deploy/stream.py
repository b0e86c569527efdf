"""Streaming: one prediction per sliding window over a long video, a pipe or a camera.

Frames are decoded incrementally and kept only while a window needs them.
A window of ``window`` seconds is predicted every ``hop`` seconds, each as
one segment (its ``T`` centre-view frames, flow at those frames, the audio
around its centre). :class:`SensorFailures` simulates sensors that drop out
for random stretches of time; each window reports the modalities it used.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from karmma.data.media import MediaError
from karmma.data.sources import media_seconds
from karmma.data.video import AudioWindows, iter_frames, probe_video, resize_short_side
from karmma.deploy.predictions import WindowPrediction
from karmma.deploy.recognizer import DecodedVideo, Recognizer


class SensorFailures:
    """Each modality's sensor alternates between working and failed stretches.

    Failed stretches last ``mean_seconds`` on average (exponential), working
    ones ``mean_seconds * (1 - rate) / rate``, so a sensor is down a fraction
    ``rate`` of the time. Seeded: the same seed gives the same failures.
    """

    def __init__(self, modalities: Sequence[str], rate: float, mean_seconds: float = 3.0, seed: int = 0):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"the sensor failure rate must be in [0, 1), got {rate}")
        if mean_seconds <= 0:
            raise ValueError(f"the mean failure length must be positive, got {mean_seconds}")
        self.rate, self.mean = rate, mean_seconds
        self.rng = random.Random(seed)
        # per modality: list of (start, end) failed stretches, and how far the schedule is drawn
        self.stretches: dict[str, list[tuple[float, float]]] = {k: [] for k in modalities}
        self.horizon = {k: 0.0 for k in modalities}

    def _extend(self, key: str, until: float) -> None:
        while self.horizon[key] <= until:
            up = self.rng.expovariate(self.rate / (self.mean * (1 - self.rate))) if self.rate > 0 else float("inf")
            down = self.rng.expovariate(1.0 / self.mean)
            start = self.horizon[key] + up
            self.stretches[key].append((start, start + down))
            self.horizon[key] = start + down

    def failed(self, key: str, t: float) -> bool:
        """Whether ``key``'s sensor is down at time ``t`` (seconds)."""
        if self.rate == 0:
            return False
        self._extend(key, t)
        return any(a <= t < b for a, b in self.stretches[key])

    def dropped(self, modalities: Sequence[str], t: float) -> list[str]:
        """The modalities down at ``t``; never all of them (one, chosen at random, is kept)."""
        down = [k for k in modalities if self.failed(k, t)]
        if modalities and len(down) == len(modalities):
            down.remove(self.rng.choice(list(modalities)))
        return down


def frame_source(source: str, short_side: int, fps: float | None) -> tuple[Iterator[tuple[np.ndarray, float]], str]:
    """Frames ``(rgb, rate)`` from a video file, ``-`` (a video stream on stdin) or a camera index."""
    if source.isdigit():
        return _camera_frames(int(source), short_side), f"camera {source}"
    if source == "-":
        return ((image, rate) for image, rate, _ in iter_frames(sys.stdin.buffer, fps, short_side, threads=0)), "stdin"
    return ((image, rate) for image, rate, _ in iter_frames(source, fps, short_side, threads=0)), source


def _camera_frames(index: int, short_side: int) -> Iterator[tuple[np.ndarray, float]]:
    import cv2

    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise MediaError(f"camera {index}: cannot be opened")
    rate = capture.get(cv2.CAP_PROP_FPS) or 30.0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield resize_short_side(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), short_side), rate
    finally:
        capture.release()


def stream_predictions(
    recognizer: Recognizer,
    source: str,
    modalities: Sequence[str] | None = None,
    window: float = 2.0,
    hop: float = 1.0,
    failures: SensorFailures | None = None,
    top_k: int = 5,
) -> Iterator[WindowPrediction]:
    """One :class:`WindowPrediction` per window of ``window`` seconds, every ``hop`` seconds.

    A source shorter than one window gives one prediction over all of it.
    Audio comes from a file's audio track (pipes and cameras have none)."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got {window} and {hop}")
    wanted = recognizer.file_modalities(modalities)
    pre = recognizer.preprocessor
    frames_iter, name = frame_source(source, pre.short_side, pre.fps)
    windows, note, audio_seconds = None, "no audio from a pipe or camera", None
    is_file = not (source.isdigit() or source == "-")
    video_id = Path(source).stem if is_file else name  # what the frame recipe's stride rule reads
    if is_file and "A" in wanted:
        if probe_video(source).has_audio:  # decoded window by window, front to back: bounded memory
            windows, note = AudioWindows(source, pre.sample_rate), ""
            audio_seconds = media_seconds(Path(source), None, Path(source).stat().st_mtime)
        else:
            note = "no audio track"
    buffer: list[np.ndarray] = []
    first = 1  # frame number of buffer[0]
    index, rate, emitted = 0, None, False

    def predict(start_number: int, count: int) -> WindowPrediction:
        begin = start_number - first
        t0, t1 = (start_number - 1) / rate, (start_number - 1 + count) / rate
        audio, offset, seconds = None, 0.0, audio_seconds
        if windows is not None:
            offset = (t0 + t1) / 2 - pre.audio_seconds / 2
            audio, reached = windows.window(offset, pre.audio_seconds)
            if seconds is None and reached < offset + pre.audio_seconds - 1e-3:
                seconds = reached  # the track ended inside this window
        video = DecodedVideo(
            buffer[begin : begin + count],
            rate,
            audio,
            note,
            pre.stride_for(video_id, rate),
            audio_offset=offset,
            audio_seconds=seconds,
        )
        down = failures.dropped(wanted, (t0 + t1) / 2) if failures else []
        prediction = recognizer.predict_decoded(
            video,
            wanted,
            top_k=top_k,
            dropped={k: "sensor failure" for k in down},
            first_number=start_number,
        )
        return WindowPrediction(index, t0, t1, prediction, down)

    window_start = 1
    for image, frame_rate in frames_iter:
        rate = rate or frame_rate
        buffer.append(image)
        size = max(2, round(window * rate))
        while first + len(buffer) - 1 >= window_start + size - 1:
            yield predict(window_start, size)
            emitted, index = True, index + 1
            window_start += max(1, round(hop * rate))
            drop = min(window_start - first, len(buffer))
            del buffer[:drop]
            first += drop
    if rate is None:
        raise MediaError(f"{name}: no frames decoded")
    if not emitted:
        yield predict(first, len(buffer))
