"""Decoding media by presentation time: frames on a regular time grid, upright, complete or an error.

* **Time grid.** Frame number ``k + 1`` is the picture shown at ``t_k = k / rate``
  seconds from the stream's start: each grid time takes the decoded frame whose
  presentation timestamp is nearest (ties to the earlier one). A variable-frame-rate
  video is so duplicated or thinned *by time* to the target rate, and frame
  numbers always mean ``(number - 1) / rate`` seconds, as annotation timestamps do.
* **Rotation.** The display matrix (phone video) is applied: frames come upright.
* **Completeness.** A stream that decodes to clearly less than its header declares
  (a truncated download, a cut file) raises :class:`MediaError`; so does a decoding
  error in the middle. A shorter video is never returned silently.
* **Bounded memory.** Frames are yielded one at a time and audio in chunks; only
  what a caller keeps stays in memory. ``start`` seeks instead of decoding from 0.

``iter_frames`` (decoded and resized to a short side), ``resize_short_side`` and
``flow_calculator`` (OpenCV TV-L1 or DIS) are shared by ``karmma prepare`` and
deployment, which needs nothing else of the preparation pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from karmma.data.media import MediaError

#: a stream counts as truncated when it ends this much (seconds, or 3 frames) before its declared end
TRUNCATION_TOLERANCE = 0.25


class NoAudioTrack(MediaError):
    """The file has no audio stream at all (as opposed to a broken one)."""


@dataclass
class VideoProbe:
    """What a video's headers say: frame rate, declared duration (None: unknown), upright size, rotation."""

    rate: float
    duration: float | None
    size: tuple[int, int]  # (width, height) after rotation
    rotation: int  # degrees counter-clockwise applied to decoded frames (0, 90, 180, 270)
    has_audio: bool


def _name(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<stream>")


def _open(source, what: str = "video"):
    import av

    try:
        return av.open(str(source) if isinstance(source, (str, Path)) else source)
    except FileNotFoundError:
        raise MediaError(f"{_name(source)}: file not found") from None
    except (av.FFmpegError, OSError) as error:
        raise MediaError(f"{_name(source)}: undecodable {what} ({error})") from None


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and len(container.streams) == 1:  # the container's is the stream's
        return container.duration / 1_000_000
    return None


def _stream_origin(stream) -> float:
    return (
        float(stream.start_time * stream.time_base)
        if stream.start_time is not None and stream.time_base is not None
        else 0.0
    )


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, as FFmpeg's display matrix reads) to ``[H, W, C]``."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def probe_video(path: str | Path) -> VideoProbe:
    """Read a video's headers (and its first frame, for the display rotation)."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        rotation = 0
        try:
            first = next(container.decode(video=0))
            rotation = int(round(getattr(first, "rotation", 0) or 0))
            width, height = first.width, first.height
        except StopIteration:
            raise MediaError(f"{path}: no frames decoded") from None
        except Exception as error:  # av.FFmpegError and friends
            raise MediaError(f"{path}: undecodable video ({error})") from None
        if round(rotation / 90) % 2:
            width, height = height, width
        return VideoProbe(
            rate, _declared_duration(container, stream), (width, height), rotation, bool(container.streams.audio)
        )


@dataclass
class TimedFrame:
    """One frame of the time grid: ``number`` (1-based), its grid ``time`` (s) and the upright RGB ``image``."""

    number: int
    time: float
    image: np.ndarray
    pts_time: float  # presentation time of the decoded frame shown (s, from the stream start)
    rate: float  # the grid rate


def iter_video_frames(source, fps: float | None = None, start: float = 0.0, threads: int = 1) -> Iterator[TimedFrame]:
    """Frames of a video (path, or a binary file object such as a pipe) on the grid ``k / rate``.

    ``fps``: the grid rate (None: the stream's average rate). ``start``: the first
    grid time wanted (seconds); files are seeked there rather than decoded from 0.
    Raises :class:`MediaError` for undecodable or truncated video.
    """
    import av

    name = _name(source)
    container = _open(source)
    with container:
        if not container.streams.video:
            raise MediaError(f"{name}: no video stream")
        stream = container.streams.video[0]
        stream.thread_count = threads
        native = float(stream.average_rate or stream.guessed_rate or 30)
        rate = float(fps or native)
        origin = _stream_origin(stream)
        k = max(0, math.ceil(start * rate - 1e-6))
        if start > 0 and isinstance(source, (str, Path)):
            # seek to a key frame a little before the first wanted time (backward=True)
            target = max(0.0, start - 1.0) + origin
            container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        previous = None  # (time, av frame, cached ndarray or None)
        decoded = 0
        last_time = None

        def image_of(entry):
            if entry[2] is None:
                entry[2] = upright(
                    entry[1].to_ndarray(format="rgb24"), int(round(getattr(entry[1], "rotation", 0) or 0))
                )
            return entry[2]

        try:
            for frame in container.decode(stream):
                t = (
                    float(frame.pts * stream.time_base) - origin
                    if frame.pts is not None
                    else (last_time or 0.0) + 1.0 / native
                )
                if previous is None and start > 0 and t > start + 0.5 / rate and k > 0:
                    # the seek overshot the wanted time: decode from the beginning instead
                    yield from _from_start(source, fps, start, threads)
                    return
                decoded += 1
                last_time = t
                if previous is not None:
                    middle = (previous[0] + t) / 2
                    while k / rate <= middle + 1e-9:
                        yield TimedFrame(k + 1, k / rate, image_of(previous), previous[0], rate)
                        k += 1
                previous = [t, frame, None]
        except av.FFmpegError as error:
            raise MediaError(f"{name}: undecodable video, a corrupt or truncated stream ({error})") from None
        if previous is None:
            if start > 0:
                return  # nothing at or after start
            raise MediaError(f"{name}: no frames decoded")
        last_duration = float(previous[1].duration * stream.time_base) if previous[1].duration else 1.0 / native
        end = previous[0] + last_duration
        declared = _declared_duration(container, stream) if isinstance(source, (str, Path)) else None
        if declared is not None and end < declared - max(TRUNCATION_TOLERANCE, 3.0 / native):
            raise MediaError(
                f"{name}: truncated video: frames end at {end:.2f} s, the file declares {declared:.2f} s "
                "(an incomplete download or a cut file)"
            )
        frames_declared = stream.frames if isinstance(source, (str, Path)) and start == 0 else 0
        if frames_declared and decoded < frames_declared - 2:
            raise MediaError(
                f"{name}: truncated video: decoded {decoded} of the {frames_declared} frames its index lists"
            )
        while k / rate < end - 1e-6:
            yield TimedFrame(k + 1, k / rate, image_of(previous), previous[0], rate)
            k += 1


def flow_calculator(method: str):
    """An OpenCV optical-flow calculator: ``"tvl1"`` (TV-L1, as the official data) or ``"dis"`` (DIS, fast)."""
    import cv2

    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    raise ValueError(f"unknown flow method {method!r}; choose tvl1 or dis")


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Resize ``[H, W, C]`` so its short side is ``short_side`` (area filter when shrinking)."""
    import cv2

    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def iter_frames(
    source,
    fps: float | None,
    short_side: int,
    threads: int = 1,
    start: float = 0.0,
) -> Iterator[tuple[np.ndarray, float, tuple[int, int]]]:
    """Decode a video (path or binary file object, e.g. a pipe) frame by frame.

    Yields ``(rgb, rate, (width, height))``: the upright RGB frame ``[h, w, 3]``
    uint8 resized to ``short_side``, the frame rate (``fps``, or the video's
    average rate when None) and the upright source size. Frames are placed by
    presentation time on the grid ``k / rate`` (see :mod:`karmma.data.video`):
    a variable-frame-rate video is resampled by time. ``start`` seeks (seconds).
    """
    for frame in iter_video_frames(source, fps, start, threads):
        yield resize_short_side(frame.image, short_side), frame.rate, (frame.image.shape[1], frame.image.shape[0])


def _from_start(source, fps, start, threads) -> Iterator[TimedFrame]:
    for frame in iter_video_frames(source, fps, 0.0, threads):
        if frame.time >= start - 1e-6:
            yield frame


def iter_audio(
    path: str | Path, sample_rate: int, start: float = 0.0, check_complete: bool = True
) -> Iterator[np.ndarray]:
    """The audio track of a media file as mono float32 chunks at ``sample_rate``, from ``start`` seconds.

    Raises :class:`MediaError` with ``"no audio track"`` when the file has none, and for
    undecodable or truncated audio (decoded clearly less than the stream declares)."""
    import av

    with _open(path, "audio") as container:
        if not container.streams.audio:
            raise NoAudioTrack(f"{path}: no audio track")
        stream = container.streams.audio[0]
        origin = _stream_origin(stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        skip = 0  # samples to drop before ``start`` (after a seek: from the first decoded frame's time)
        first = True
        produced = 0
        if start > 0:
            container.seek(int((max(0.0, start - 0.5) + origin) / stream.time_base), stream=stream, backward=True)
        try:
            for frame in container.decode(stream):
                if first:
                    begins = float(frame.pts * stream.time_base) - origin if frame.pts is not None else 0.0
                    skip = max(0, int(round((start - begins) * sample_rate)))
                    produced = int(round(begins * sample_rate))
                    first = False
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    produced += len(chunk)
                    if skip >= len(chunk):
                        skip -= len(chunk)
                        continue
                    yield chunk[skip:]
                    skip = 0
            for out in resampler.resample(None):
                chunk = out.to_ndarray().reshape(-1)
                produced += len(chunk)
                if skip < len(chunk):
                    yield chunk[skip:]
                    skip = 0
        except av.FFmpegError as error:
            raise MediaError(f"{path}: undecodable audio, a corrupt or truncated stream ({error})") from None
        declared = _declared_duration(container, stream)
        if first:
            raise MediaError(f"{path}: the audio track is empty")
        if check_complete and declared is not None and produced / sample_rate < declared - TRUNCATION_TOLERANCE:
            raise MediaError(
                f"{path}: truncated audio: samples end at {produced / sample_rate:.2f} s, the file declares {declared:.2f} s"
            )


def read_audio_window(path: str | Path, start: float, duration: float, sample_rate: int) -> tuple[np.ndarray, float]:
    """``(samples, covered_until)``: mono samples of ``[start, start + duration)`` s (zero-padded
    outside the track) decoding only that stretch, and the time (s) the track really reaches
    within it (``start`` when the window lies wholly after the audio)."""
    length = int(round(duration * sample_rate))
    out = np.zeros(length, dtype=np.float32)
    first = int(round(start * sample_rate))
    position = max(first, 0)  # absolute sample index the next chunk starts at
    for chunk in iter_audio(path, sample_rate, max(start, 0.0), check_complete=False):
        take = min(len(chunk), first + length - position)
        if take <= 0:
            break
        out[position - first : position - first + take] = chunk[:take]
        position += take
    return out, max(position, first) / sample_rate


class AudioWindows:
    """Consecutive audio windows of one file, decoded once, front to back, in bounded memory.

    ``window(start, duration)`` needs non-decreasing starts (a sliding window); samples
    before the current start are dropped, so memory holds about one window."""

    def __init__(self, path: str | Path, sample_rate: int):
        self.rate = sample_rate
        self._chunks = iter_audio(path, sample_rate, check_complete=False)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # absolute sample index of _buffer[0]
        self._ended = False

    def _fill(self, until: int) -> None:
        pieces = [self._buffer]
        end = self._buffer_start + len(self._buffer)
        while end < until and not self._ended:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._ended = True
                break
            pieces.append(chunk)
            end += len(chunk)
        self._buffer = np.concatenate(pieces) if len(pieces) > 1 else self._buffer

    def window(self, start: float, duration: float) -> tuple[np.ndarray, float]:
        """``(samples, covered_until)`` as :func:`read_audio_window`."""
        first, length = int(round(start * self.rate)), int(round(duration * self.rate))
        self._fill(first + length)
        drop = min(max(0, first - self._buffer_start), len(self._buffer))
        self._buffer, self._buffer_start = self._buffer[drop:], self._buffer_start + drop
        out = np.zeros(length, dtype=np.float32)
        lo, hi = max(first, self._buffer_start), min(first + length, self._buffer_start + len(self._buffer))
        if hi > lo:
            out[lo - first : hi - first] = self._buffer[lo - self._buffer_start : hi - self._buffer_start]
        return out, max(hi, first) / self.rate
