"""Live sensors: timestamped frames, audio chunks and boxes in, one prediction per window out.

```python
session = Recognizer.load("student_split/").session(window=2.0, hop=0.5)
session.push_frame(t, rgb)                # any order, any rate; t in seconds, one clock for all sensors
session.push_audio(t, samples, 16000)     # t: the time of the chunk's first sample
for window in session.poll(now - 0.25):   # every window of the hop grid that has ended by then
    print(window.format_line())
window = session.predict(t)               # or the window ending at any t
```

A window is built with the recipe of a video file (:meth:`Preprocessor.inputs`):
frames are placed by timestamp on a regular grid at the model's frame rate
(each grid time shows the pushed frame nearest to it, as a video decoder shows
the frame of the nearest presentation time), flow is computed from the grid's
frame pairs with the model's stride and method, and the log-mel reads the
audio around the window's centre, resampled to the model's rate. Messages are
placed by their timestamps, never by their count or arrival order.

**Missing modalities.** A sensor is missing for a window when its messages
leave a stretch of the window longer than ``tolerance`` seconds uncovered (a
frame or a box list covers its instant, an audio chunk its samples); F needs
the frames V needs. A window no sensor covers gives no prediction.

**Bounded memory.** Each sensor keeps the messages of the last ``window +
KEEP_EXTRA`` seconds before its newest one. A message older than that means
the sensor's clock went back (a restarted driver, a replayed bag): its buffer
starts over, and :attr:`Session.restarts` counts it.
"""

from __future__ import annotations

import bisect
import collections.abc
import math
from typing import TYPE_CHECKING

import numpy as np

from karmma.data.video import resize_short_side
from karmma.deploy.predictions import InputReport, WindowPrediction
from karmma.modalities import FRAME_MODALITIES, VIDEO_MODALITIES, order_keys

if TYPE_CHECKING:  # annotations only: the recognizer makes sessions (Recognizer.session)
    from karmma.deploy.recognizer import Recognizer

#: seconds each sensor keeps beyond one window: late messages, and predict(t) a little behind the newest
KEEP_EXTRA = 2.0
#: an audio chunk stamped within this many seconds of its predecessor's end continues it sample for sample
#: (chunk stamps jitter; the sample count is the better clock inside a stretch of audio)
AUDIO_JOIN = 0.05
#: seconds of audio resampled either side of the spectrogram's window, so the resampler's edges fall outside
RESAMPLE_MARGIN = 0.05


class Timeline:
    """One sensor's messages, sorted by time: message ``i`` covers ``[starts[i], ends[i]]`` and holds ``items[i]``.

    Keeps the messages starting at most ``keep`` seconds before the newest one; a message
    older than that restarts the timeline (the sensor's clock went back). Measures the
    message rate over every pair of neighbours no more than ``gap`` seconds apart."""

    def __init__(self, keep: float, gap: float):
        self.keep, self.gap = keep, gap
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.items: list = []
        self.restarts = 0
        self._interval_seconds, self._intervals = 0.0, 0  # over the whole history, for the rate

    def __len__(self) -> int:
        return len(self.starts)

    def clear(self) -> None:
        self.starts, self.ends, self.items = [], [], []

    def restart(self) -> None:
        self.clear()
        self.restarts += 1

    def add(self, start: float, end: float, item) -> None:
        if self.starts and start < self.starts[-1] - self.keep:
            self.restart()
        i = bisect.bisect_left(self.starts, start)
        if i < len(self.starts) and self.starts[i] == start:  # the same timestamp again: the newer message wins
            self.ends[i], self.items[i] = end, item
        else:
            before = self.starts[i - 1] if i else None
            after = self.starts[i] if i < len(self.starts) else None
            if before is not None and after is not None:  # an out-of-order message splits an interval
                self._measure(after - before, -1)
            for interval in (start - before if before is not None else 0, after - start if after is not None else 0):
                self._measure(interval, 1)
            self.starts.insert(i, start)
            self.ends.insert(i, end)
            self.items.insert(i, item)
        old = bisect.bisect_left(self.starts, self.starts[-1] - self.keep)
        if old:
            del self.starts[:old], self.ends[:old], self.items[:old]

    def _measure(self, interval: float, sign: int) -> None:
        if 0 < interval <= self.gap:
            self._interval_seconds += sign * interval
            self._intervals += sign

    @property
    def rate(self) -> float | None:
        """Messages per second (gaps longer than ``gap`` left out); None before two close messages."""
        return self._intervals / self._interval_seconds if self._intervals else None

    def uncovered(self, start: float, end: float) -> float:
        """The longest stretch of ``[start, end]`` (s) that no message covers."""
        longest, reached = 0.0, start
        for first, last in zip(self.starts, self.ends):
            if last < start:
                continue
            if first > end:
                break
            longest = max(longest, first - reached)
            reached = max(reached, last)
        return max(longest, end - reached)

    def nearest(self, t: float):
        """The item of the message nearest to ``t`` (ties: the earlier one)."""
        i = bisect.bisect_left(self.starts, t)
        if i == len(self.starts) or (i > 0 and t - self.starts[i - 1] <= self.starts[i] - t):
            i -= 1
        return self.items[i]


class GridFrames(collections.abc.Sequence):
    """``count`` frames on the grid ``start + i / rate``: each shows the pushed frame nearest its time."""

    def __init__(self, frames: Timeline, start: float, rate: float, count: int):
        self.frames, self.start, self.rate, self.count = frames, start, rate, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.frames.nearest(self.start + index / self.rate)


class Session:
    """Timestamped sensor messages in, one :class:`WindowPrediction` per window out (see the module).
    Not thread-safe: push and predict from one thread (a ROS 2 node's single-threaded executor).

    Args:
        recognizer: the deployed student.
        window: seconds per prediction.
        hop: seconds between the ends of consecutive windows of :meth:`poll`.
        modalities: which of the model's modalities to use (default: all).
        fps: rate of the frame grid (default: the training frames' rate when the model
            records one, else measured from the frame timestamps).
        tolerance: the longest stretch of a window (s) a sensor may leave without messages
            and still count as present.
        top_k: actions, verbs and nouns per prediction.
        name: the stream's name (a bag's file name): the model's frame recipe reads it for the
            flow stride when its rule is ``epic-id`` (docs/data.md, "Frame recipe").
    """

    def __init__(
        self,
        recognizer: Recognizer,
        window: float = 2.0,
        hop: float = 1.0,
        modalities: collections.abc.Sequence[str] | None = None,
        fps: float | None = None,
        tolerance: float = 0.25,
        top_k: int = 5,
        name: str = "",
    ):
        for option, value in (("window", window), ("hop", hop), ("tolerance", tolerance), ("fps", fps or 1.0)):
            if not value > 0:
                raise ValueError(f"{option} must be positive, got {value}")
        if modalities is not None:
            recognizer.check_modalities(modalities)
        self.recognizer = recognizer
        self.window, self.hop, self.tolerance, self.top_k, self.name = window, hop, tolerance, top_k, name
        self.modalities = order_keys(modalities or recognizer.modalities, recognizer.modalities)
        self.fps = fps or recognizer.preprocessor.fps
        keep = window + KEEP_EXTRA
        self.frames, self.audio, self.boxes = (Timeline(keep, tolerance) for _ in range(3))
        self.audio_rate: int | None = None
        self.origin: float | None = None  # the first message's time (again after a clock went back)
        self.next_end: int | None = None  # the next window of poll ends at next_end * hop
        self.predicted = 0

    # ---- messages in --------------------------------------------------------------------------

    def push_frame(self, t: float, image: np.ndarray) -> None:
        """An RGB frame ``[H, W, 3]`` uint8 (or grey ``[H, W]``) taken at ``t`` s."""
        _check_time(t)
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"a frame must be RGB uint8 [H, W, 3] or grey [H, W], got {image.dtype} {list(image.shape)}"
            )
        image = resize_short_side(image, self.recognizer.preprocessor.short_side)
        if self.frames.items and self.frames.items[-1].shape != image.shape:  # the camera restarted at another size
            self.frames.restart()
        self._push(self.frames, t, t, image)

    def push_audio(self, t: float, samples: np.ndarray, rate: int) -> None:
        """A chunk of audio whose first sample was taken at ``t`` s: ``[n]`` or ``[n, channels]``
        (averaged to mono), float in [-1, 1] or integer PCM, at ``rate`` Hz. A chunk that follows
        the newest one within :data:`AUDIO_JOIN` s continues it sample for sample; one that
        arrives out of order is placed by its own stamp."""
        _check_time(t)
        samples = np.asarray(samples)
        if samples.ndim not in (1, 2):
            raise ValueError(f"audio samples must be [n] or [n, channels], got {list(samples.shape)}")
        if samples.dtype.kind in "iu":  # PCM: full scale is 1
            scale = (np.iinfo(samples.dtype).max + 1) / (2 if samples.dtype.kind == "u" else 1)
            samples = (samples.astype(np.float64) - (scale if samples.dtype.kind == "u" else 0)) / scale
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        if rate != self.audio_rate:  # a new microphone, or one restarted at another rate
            if self.audio_rate is not None:
                self.audio.restart()
            self.audio_rate = int(rate)
        first = round(t * rate)
        if self.audio and t >= self.audio.starts[-1]:  # continues the newest chunk when its stamp agrees
            end = self.audio.items[-1][0] + len(self.audio.items[-1][1])
            if abs(first - end) <= AUDIO_JOIN * rate:
                first = end
        self._push(self.audio, first / rate, (first + len(samples)) / rate, (first, samples.astype(np.float32)))

    def push_boxes(self, t: float, boxes: np.ndarray) -> None:
        """The detections of the frame taken at ``t`` s: ``[K, 6]`` rows ``(x1, y1, x2, y2, score, category)``
        with coordinates divided by the frame size (the D input's rows); ``[0, 6]`` when nothing was detected.
        Publish an empty list rather than nothing: no message means the detector is down."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 6)
        self._push(self.boxes, t, t, boxes)

    def _push(self, timeline: Timeline, start: float, end: float, item) -> None:
        _check_time(start)
        restarts = timeline.restarts
        timeline.add(start, end, item)
        if self.origin is None or timeline.restarts > restarts:
            self.origin = start

    @property
    def restarts(self) -> dict[str, int]:
        """How many times each sensor's buffer started over (clock went back, frame size or audio rate changed)."""
        return {"frames": self.frames.restarts, "audio": self.audio.restarts, "boxes": self.boxes.restarts}

    def buffered_bytes(self) -> int:
        """Memory held by the buffered messages."""
        frames = sum(image.nbytes for image in self.frames.items)
        return frames + sum(s.nbytes for _, s in self.audio.items) + sum(b.nbytes for b in self.boxes.items)

    @property
    def frame_rate(self) -> float | None:
        """The frame grid's rate: ``fps``, else measured from the frame (or box) timestamps; None before two arrive."""
        return self.fps or self.frames.rate or self.boxes.rate

    def covered_until(self) -> float | None:
        """The latest time (s) any sensor's messages reach (a frame shows until one grid step after it)."""
        rate = self.frame_rate
        ends = [self.frames.ends[-1] + (1 / rate if rate else 0.0)] if self.frames else []
        ends += [timeline.ends[-1] for timeline in (self.audio, self.boxes) if timeline]
        return max(ends, default=None)

    # ---- predictions out ------------------------------------------------------------------------

    def poll(self, now: float) -> list[WindowPrediction]:
        """The predictions of the windows that ended by ``now`` and were not predicted yet, oldest first.

        Windows end at whole multiples of ``hop`` on the sensors' clock, from the first a whole
        window after the first message (or after a sensor's clock went back). Windows ending more
        than ``KEEP_EXTRA`` s before ``now`` are skipped (their messages are no longer buffered), so
        one call predicts at most ``KEEP_EXTRA / hop + 1`` windows."""
        if self.origin is None:
            return []
        _check_time(now)
        first = math.ceil((self.origin + self.window) / self.hop - 1e-9)
        oldest = math.ceil((now - KEEP_EXTRA) / self.hop - 1e-9)
        if self.next_end is None or (self.next_end - 1) * self.hop > now + self.window + KEEP_EXTRA:
            self.next_end = first  # the first poll, or the clock went back
        self.next_end = max(self.next_end, oldest)
        windows = []
        while self.next_end * self.hop <= now + 1e-9:
            windows.append(self.predict(self.next_end * self.hop))
            self.next_end += 1
        return windows

    def predict(self, t: float) -> WindowPrediction:
        """The prediction of the window ending at ``t`` s, from the messages pushed so far."""
        _check_time(t)
        pre = self.recognizer.preprocessor
        rate = self.frame_rate
        count = max(2, round(self.window * rate)) if rate else 2  # grid frames (no rate: no frames to place)
        centre = t - self.window / 2
        half = count / (2 * rate) if rate else self.window / 2
        start, end = centre - half, centre + half  # [t - window, t] when the window is a whole number of frames
        unused = {k: "not requested" for k in self.recognizer.modalities if k not in self.modalities}
        sensors = {"V": (self.frames, "frames"), "F": (self.frames, "frames")}
        sensors |= {"A": (self.audio, "audio"), "D": (self.boxes, "boxes")}
        for key in self.modalities:
            timeline, what = sensors[key]
            gap = timeline.uncovered(start, end)
            if not timeline or gap > self.tolerance or (key in FRAME_MODALITIES and not rate):
                unused[key] = f"no {what} for {min(gap, end - start):.2f} s of the window"
        used = [k for k in self.modalities if k not in unused]
        index, self.predicted = self.predicted, self.predicted + 1
        missing = {k: unused[k] for k in self.recognizer.modalities if k in unused}
        if not used:
            return WindowPrediction(index, t - self.window, t, None, unused=missing)
        first = round(start * rate) + 1 if rate else 1  # frame numbers count grid steps from time 0
        frames = GridFrames(self.frames, start, rate, count) if rate else None
        raw = [k for k in used if k in VIDEO_MODALITIES]
        audio, offset = self._audio_samples(start, end) if "A" in used else (None, 0.0)
        stride = pre.stride_for(self.name, rate) if rate else 1  # the model's frame recipe, as in training
        inputs, timings = pre.inputs(
            frames, rate or 1.0, audio, raw, first, first + count - 1, first, stride, (start, end), audio_offset=offset
        )
        if "D" in used:
            numbers = pre.frame_numbers(first, first + count - 1)
            inputs["D"] = self._boxes_input([start + (n - first) / rate for n in numbers])
        report = InputReport(missing, timings, (start, end), stride if "F" in used else None)
        prediction = self.recognizer.predict_inputs(inputs, report, self.top_k)
        return WindowPrediction(index, t - self.window, t, prediction)

    def _audio_samples(self, start: float, end: float) -> tuple[np.ndarray, float]:
        """Mono samples at the model's rate around the spectrogram's window of ``[start, end]``, and the
        time (s) of the first; zeros where no chunk was pushed."""
        pre = self.recognizer.preprocessor
        rate = self.audio_rate
        first_time, seconds = pre.audio_span(start, end)
        margin = 0.0 if rate == pre.sample_rate else RESAMPLE_MARGIN
        first = round((first_time - margin) * rate)
        out = np.zeros(round((seconds + 2 * margin) * rate), np.float32)
        for begin, samples in self.audio.items:
            lo, hi = max(begin, first), min(begin + len(samples), first + len(out))
            if hi > lo:
                out[lo - first : hi - first] = samples[lo - begin : hi - begin]
        if rate != pre.sample_rate:
            out = resample(out, rate, pre.sample_rate)
        return out, first / rate

    def _boxes_input(self, times: list[float]) -> np.ndarray:
        """D ``[T, K, 6]``: the boxes nearest each sampled frame's time, in the model's ``K`` slots (empty: zeros)."""
        shape = self.recognizer.info.input_shapes["D"]
        out = np.zeros(shape, np.float32)
        for i, t in enumerate(times):
            boxes = self.boxes.nearest(t)[: shape[1]]
            out[i, : len(boxes)] = boxes
        return out


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 ``samples`` from ``rate`` to ``target`` Hz with libswresample (as files are decoded)."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = rate
    chunks = [out.to_ndarray().reshape(-1) for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _check_time(t: float) -> None:
    if not math.isfinite(t):
        raise ValueError(f"timestamps must be finite seconds, got {t}")
