"""The Python API: load a student once, predict actions from any subset of modalities.

```python
from karmma.deploy import Recognizer

recognizer = Recognizer.load("student.onnx")          # or .safetensors / .ckpt / a split-ONNX folder
prediction = recognizer.predict(video=frames, audio=waveform)   # flow, boxes omitted: missing
prediction = recognizer.predict_file("clip.mp4", modalities=["V", "F"])
print(prediction.format_table())
```

On ONNX exports nothing here imports torch (the light install); a ``.safetensors``,
``.ckpt`` or run folder runs eagerly and needs the training install.
"""

from __future__ import annotations

import collections.abc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from karmma.data.media import MediaError, encode_flow
from karmma.data.sources import media_seconds
from karmma.data.video import (
    NoAudioTrack,
    iter_audio,
    iter_frames,
    iter_video_frames,
    probe_video,
    read_audio_window,
    resize_short_side,
)
from karmma.data.views import coverage_problem, segment_frame_range
from karmma.deploy.predictions import InputReport, Prediction
from karmma.deploy.preprocess import Preprocessor
from karmma.deploy.runtime import open_runner
from karmma.deploy.session import Session
from karmma.modalities import IMAGE_MODALITIES, MODALITY_NAMES, VIDEO_MODALITIES, order_keys


@dataclass
class DecodedVideo:
    """Decoded frames at the training short side and audio samples (if any).

    ``frames[i]`` is frame ``first_number + i``; it may be a :class:`SparseFrames` holding
    only the frames a prediction needs. ``audio`` starts at ``audio_offset`` seconds of the
    recording; ``audio_seconds`` is where the track ends (None: unknown), to tell a clip the
    audio does not cover."""

    frames: list[np.ndarray] | SparseFrames
    rate: float
    audio: np.ndarray | None
    audio_note: str  # why there is no audio, when there is none
    flow_stride: int = 1
    decode_ms: float = 0.0
    audio_offset: float = 0.0
    audio_seconds: float | None = None

    @property
    def duration(self) -> float:
        return len(self.frames) / self.rate


class SparseFrames(collections.abc.Sequence):
    """``count`` consecutive frames of which only some were kept (the ones a prediction reads)."""

    def __init__(self, kept: dict[int, np.ndarray], count: int):
        self.kept, self.count = kept, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.kept[index]


class Recognizer:
    """A deployed student: ``Recognizer.load(path)``, then :meth:`predict` or :meth:`predict_file`.

    Raw media become inputs by the frame recipe the model records (how its training
    frames were made: flow method, short side, frame rate, the flow stride rule; see
    :mod:`karmma.data.recipe`), the stride evaluated per video as ``karmma prepare`` did.

    Args:
        runner: a runner from :mod:`karmma.deploy.runtime`.
        flow, short_side, flow_stride: stand in for the recipe of a model that records
            none (flow method, frame short side, frames between the two frames of a
            flow pair); against a recorded recipe they must agree (``ValueError``).
        name: the model, in messages.
    """

    def __init__(
        self,
        runner,
        flow: str | None = None,
        short_side: int | None = None,
        flow_stride: int | None = None,
        name: str = "the model",
    ):
        self.runner = runner
        self.info = runner.info
        self.preprocessor = Preprocessor.for_student(self.info, flow, short_side, flow_stride, name)

    @classmethod
    def load(
        cls,
        path: str | Path,
        threads: int | None = None,
        flow: str | None = None,
        short_side: int | None = None,
        flow_stride: int | None = None,
    ) -> Recognizer:
        """A ``.onnx`` graph or split-ONNX folder (ONNX Runtime), or a run folder, ``.ckpt`` or ``.safetensors`` student (PyTorch)."""
        return cls(open_runner(path, threads), flow, short_side, flow_stride, str(path))

    @property
    def modalities(self) -> list[str]:
        return self.info.modalities

    def session(self, window: float = 2.0, hop: float = 1.0, **options) -> Session:
        """A live :class:`~karmma.deploy.session.Session`: push timestamped frames, audio and boxes,
        get one prediction per window (``options``: see the class)."""
        return Session(self, window, hop, **options)

    @property
    def backend(self) -> str:
        return self.runner.kind

    def class_name(self, head: str, index: int) -> str:
        names = (self.info.classes or {}).get(head)
        return names[index] if names else f"{head} {index}"

    # ---- ready or raw arrays ------------------------------------------------------------

    def predict(self, video=None, flow=None, audio=None, boxes=None, top_k: int = 5) -> Prediction:
        """Predict from any subset of the modalities (omitted ones are missing).

        Each argument is either the model input itself (``[*input_shape]`` or
        ``[1, *input_shape]``, float, built as training builds it), or raw data:
        ``video`` RGB frames ``[N, H, W, 3]`` uint8, ``flow`` optical flow
        ``[N, H, W, 2]`` in pixels (one per frame), ``audio`` a mono waveform
        ``[samples]`` at the model's sample rate covering the clip. ``boxes``
        must be the model input ``[T, K, 6]``.
        """
        given = {"V": video, "F": flow, "A": audio, "D": boxes}
        self.check_modalities([k for k, v in given.items() if v is not None])
        inputs, timings = {}, {}
        for key, value in given.items():
            if value is None:
                continue
            inputs[key] = self._input_from_array(key, value, given, timings)
        missing = {k: "not given" for k in self.modalities if k not in inputs}
        return self.predict_inputs(inputs, InputReport(missing, timings), top_k)

    def _input_from_array(self, key: str, value, given: dict, timings: dict) -> np.ndarray:
        shape = tuple(self.info.input_shapes[key])
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)  # a torch tensor too
        if array.shape == shape:
            return array.astype(np.float32, copy=False)
        if array.shape == (1, *shape):
            return array[0].astype(np.float32, copy=False)
        pre = self.preprocessor
        start = time.perf_counter()
        if key in IMAGE_MODALITIES and array.ndim == 4 and array.shape[-1] == (3 if key == "V" else 2):
            frames = [resize_short_side(f, pre.short_side) for f in array] if key == "V" else list(array)
            numbers = pre.frame_numbers(1, len(frames))
            if key == "V":
                out = pre.video(frames, numbers)
            else:  # flow given in pixels: quantise, crop and scale as F is
                bound = pre.recipe.flow_bound
                picked = np.stack([np.stack(encode_flow(frames[n - 1], bound), -1) for n in numbers])  # [T, h, w, 2]
                out = pre.flow_input(picked, pre.crop(frames))
        elif key == "A" and array.ndim == 1:
            seconds = len(array) / pre.sample_rate
            out = pre.audio(array.astype(np.float32, copy=False), 0.0, seconds)
        else:
            raise ValueError(
                f"{key} ({MODALITY_NAMES.get(key, key)}): got shape {list(array.shape)}; expected the model input "
                f"{list(shape)}"
                + {
                    "V": " or frames [N, H, W, 3] uint8",
                    "F": " or flow [N, H, W, 2] in pixels",
                    "A": " or a mono waveform [samples]",
                    "D": "",
                }[key]
            )
        timings[{"V": "rgb", "F": "flow", "A": "spectrogram"}[key]] = (time.perf_counter() - start) * 1000
        return out

    # ---- video files ----------------------------------------------------------------------

    def decode(self, path: str | Path, need_audio: bool = True, until: float | None = None) -> DecodedVideo:
        """Decode a video file's frames (at the training short side and rate; up to ``until``
        seconds and one frame more, for flow) and its audio track."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"input not found: {path}")
        pre = self.preprocessor
        start = time.perf_counter()
        decoded = []
        for item in iter_frames(path, pre.fps, pre.short_side, threads=0):
            decoded.append(item)
            if until is not None and len(decoded) > until * item[1] + 2 * pre.stride_for(path.stem, item[1]):
                break
        if not decoded:
            raise MediaError(f"{path}: no frames decoded")
        audio, note = None, "the model has no audio input"
        if need_audio:
            try:
                audio, note = np.concatenate(list(iter_audio(path, pre.sample_rate, check_complete=False))), ""
            except NoAudioTrack:
                note = "no audio track"
            except MediaError as error:
                note = str(error)
        frames = [image for image, _, _ in decoded]
        seconds = len(audio) / pre.sample_rate if audio is not None else None
        return DecodedVideo(
            frames,
            decoded[0][1],
            audio,
            note,
            pre.stride_for(path.stem, decoded[0][1]),
            (time.perf_counter() - start) * 1000,
            audio_seconds=seconds,
        )

    def decode_segment(
        self, path: str | Path, start: float | None, end: float | None, need_audio: bool
    ) -> DecodedVideo:
        """Decode only what the segment ``[start, end]`` s needs: seek to ``start``, keep the
        sampled frames and their flow partners, stop after ``end``; the audio window around the
        segment's centre. Memory does not grow with the video (nor with the segment)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"input not found: {path}")
        pre = self.preprocessor
        clock = time.perf_counter()
        probe = probe_video(path)
        rate = pre.fps or probe.rate
        stride = pre.stride_for(path.stem, rate)
        start_time = 0.0 if start is None else start
        stop_time = end if end is not None else probe.duration
        if stop_time is None:  # no declared duration (rare): the whole file, as before
            return self.decode(path, need_audio)
        if not start_time < stop_time:
            raise ValueError(
                f"segment [{start_time:.2f}, {stop_time:.2f}] s is empty or outside the video (0 to {probe.duration or 0:.2f} s)"
            )
        first = int(start_time * rate) + 1
        # the segment's last frame as predict_decoded will compute it; without --end: the video's last
        stop_frame = max(first, int(stop_time * rate) + 1 if end is not None else round(stop_time * rate))
        for _ in range(3):  # again when the video ends elsewhere than its header says
            needed = {first}
            for n in pre.frame_numbers(first, stop_frame):
                base = ((n - 1) // stride) * stride + 1
                needed |= {base - stride, base, base + stride, n}
            last = stop_frame + 2 * stride if end is not None else None  # after the segment: flow partners only
            kept, count = {}, 0
            for frame in iter_video_frames(path, rate, (first - 1) / rate, threads=0):
                if last is not None and frame.number > last:
                    break
                count = frame.number - first + 1
                if frame.number in needed:
                    kept[frame.number - first] = resize_short_side(frame.image, pre.short_side)
            if not count:
                raise ValueError(
                    f"segment [{start_time:.2f}, {stop_time:.2f}] s is outside the video (0 to {probe.duration or 0:.2f} s)"
                )
            actual = first + count - 1 if end is None else max(first, min(first + count - 1, int(stop_time * rate) + 1))
            if actual == stop_frame:
                break
            stop_frame = actual
        audio, note, offset, seconds = None, "the model has no audio input", 0.0, None
        if need_audio:
            if not probe.has_audio:
                note = "no audio track"
            else:
                centre = (
                    start_time + (stop_time if end is not None else (first - 1 + count) / rate)
                ) / 2  # as predict_decoded
                offset = centre - pre.audio_seconds / 2
                audio, reached = read_audio_window(path, offset, pre.audio_seconds, pre.sample_rate)
                declared = media_seconds(path, None, path.stat().st_mtime)
                seconds = (
                    declared
                    if declared is not None
                    else (reached if reached < offset + pre.audio_seconds - 1e-3 else None)
                )
                note = ""
        return DecodedVideo(
            SparseFrames(kept, count),
            rate,
            audio,
            note,
            stride,
            (time.perf_counter() - clock) * 1000,
            audio_offset=offset,
            audio_seconds=seconds,
        )

    def predict_file(
        self,
        path: str | Path,
        modalities: Sequence[str] | None = None,
        start: float | None = None,
        end: float | None = None,
        top_k: int = 5,
    ) -> Prediction:
        """Predict the action in a video file (or in ``[start, end]`` seconds of it).

        ``modalities``: which of V, F, A to use (default: all the model has
        that a video can give); one whose media do not cover the segment (no
        audio track, the video or its audio ending before the segment does) is
        skipped, and said so."""
        return self.predict_inputs(*self.file_inputs(path, modalities, start, end), top_k)

    def file_inputs(
        self,
        path: str | Path,
        modalities: Sequence[str] | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> tuple[dict[str, np.ndarray], InputReport]:
        """The model inputs :meth:`predict_file` builds for ``[start, end]`` s of a video:
        ``({key: [*input_shape]}, what else the prediction reports)``."""
        wanted = self.file_modalities(modalities)
        video = self.decode_segment(path, start, end, need_audio="A" in wanted)
        first_number = int((start or 0.0) * video.rate) + 1 if isinstance(video.frames, SparseFrames) else 1
        return self.decoded_inputs(video, wanted, start, end, first_number=first_number)

    def file_modalities(self, modalities: Sequence[str] | None) -> list[str]:
        """The requested modalities (default: those of V, F, A the model has), checked."""
        if modalities is None:
            return [k for k in self.modalities if k in VIDEO_MODALITIES]
        self.check_modalities(modalities)
        raw_only = [k for k in modalities if k not in VIDEO_MODALITIES]
        if raw_only:
            raise ValueError(
                f"modality {raw_only[0]} ({MODALITY_NAMES.get(raw_only[0])}) cannot be computed from a video file; use Recognizer.predict(boxes=...)"
            )
        return order_keys(modalities, self.modalities)

    def predict_decoded(
        self,
        video: DecodedVideo,
        modalities: Sequence[str],
        start: float | None = None,
        end: float | None = None,
        top_k: int = 5,
        dropped: dict[str, str] | None = None,
        first_number: int = 1,
    ) -> Prediction:
        """Predict from decoded frames; ``video.frames[0]`` is frame ``first_number`` of the recording."""
        return self.predict_inputs(*self.decoded_inputs(video, modalities, start, end, dropped, first_number), top_k)

    def decoded_inputs(
        self,
        video: DecodedVideo,
        modalities: Sequence[str],
        start: float | None = None,
        end: float | None = None,
        dropped: dict[str, str] | None = None,
        first_number: int = 1,
    ) -> tuple[dict[str, np.ndarray], InputReport]:
        """The inputs of ``[start, end]`` s of decoded frames (``video.frames[0]`` is frame
        ``first_number``), and what else the prediction reports.

        A modality whose media end before the segment does is not used: the rule of the
        dataset (:func:`~karmma.data.views.coverage_problem`, the same tolerance); frames
        ending within the tolerance cut the segment at the last frame, as the dataset does."""
        count = len(video.frames)
        first_time = (first_number - 1) / video.rate
        last_frame = first_number + count - 1
        frames_end = last_frame / video.rate  # frame n shows from (n - 1) / rate to n / rate
        start_time = first_time if start is None else start
        stop_time = frames_end if end is None else end
        if not first_time <= start_time < stop_time:
            raise ValueError(
                f"segment [{start_time:.2f}, {stop_time:.2f}] s is empty or outside the video ({first_time:.2f} to {frames_end:.2f} s)"
            )
        first, last = segment_frame_range(start_time, stop_time, video.rate)
        start_frame = max(first_number, first) if start is not None else first_number
        stop_frame = min(last_frame, last) if end is not None else last_frame
        missing = {k: "not requested" for k in self.modalities if k not in modalities}
        missing.update(dropped or {})
        used = [k for k in modalities if k not in missing]
        if "A" in used and video.audio is None:
            used.remove("A")
            missing["A"] = video.audio_note
        media = {"V": ("video", frames_end), "F": ("video", frames_end), "A": ("audio", video.audio_seconds)}
        for key in list(used):
            what, end_seconds = media[key]
            why = coverage_problem(end_seconds, start_time, stop_time, what)
            if why:  # never inputs cut short, or a zero-padded spectrogram, passed off as the segment's
                used.remove(key)
                missing[key] = why
        if not used:
            raise ValueError(
                "no modality left to predict from: " + "; ".join(f"{k}: {why}" for k, why in missing.items())
            )
        inputs, timings = self.preprocessor.inputs(
            video.frames,
            video.rate,
            video.audio,
            used,
            start_frame,
            stop_frame,
            first_number,
            video.flow_stride,
            (start_time, stop_time),
            audio_offset=video.audio_offset,
        )
        if video.decode_ms:
            timings = {"decode": video.decode_ms, **timings}
        report = InputReport(
            {k: missing[k] for k in self.modalities if k in missing},
            timings,
            (start_time, stop_time),
            video.flow_stride if "F" in used else None,
        )
        return inputs, report

    # ---- shared -----------------------------------------------------------------------------

    def check_modalities(self, keys: Sequence[str]) -> None:
        """``ValueError`` for a modality the model was not trained on."""
        unknown = [k for k in keys if k not in self.modalities]
        if unknown:
            raise ValueError(
                f"the model was not trained on modality {unknown[0]} ({MODALITY_NAMES.get(unknown[0], 'unknown')}); "
                f"it has {', '.join(self.modalities)}"
            )

    def predict_inputs(self, inputs: dict[str, np.ndarray], report: InputReport, top_k: int = 5) -> Prediction:
        """Predict from model inputs ``{key: [*input_shape]}`` (the keys given are the available
        modalities); ``report`` says what else the prediction reports."""
        availability = np.array([[k in inputs for k in self.modalities]])
        if not availability.any():
            raise ValueError(f"no modality given: the model needs at least one of {', '.join(self.modalities)}")
        start = time.perf_counter()
        logits = self.runner.logits({k: v[None] for k, v in inputs.items()}, availability)
        timings = {**report.timings_ms, "model": (time.perf_counter() - start) * 1000}
        probabilities = {h: _softmax(np.asarray(v[0], np.float32)) for h, v in logits.items()}
        broken = [h for h, p in probabilities.items() if not np.isfinite(p).all()]
        if broken:  # NaN weights or inputs: never print NaN probabilities as a prediction
            raise ValueError(
                f"the model gave non-finite {broken[0]} scores (NaN or infinity): its weights or inputs are broken"
            )
        heads = {}
        for head, p in probabilities.items():
            indices = _top_indices(p, top_k)
            heads[head] = [(self.class_name(head, int(i)), float(p[i])) for i in indices]
        return Prediction(
            heads,
            self._top_actions(probabilities, top_k),
            [k for k in self.modalities if k in inputs],
            report.missing,
            timings,
            report.segment,
            report.flow_stride,
        )

    def _top_actions(self, probabilities: dict[str, np.ndarray], top_k: int) -> list[dict]:
        """Top-k joint (product) probabilities over the heads (verb x noun on EPIC)."""
        names = list(probabilities)
        joint = probabilities[names[0]]
        for head in names[1:]:
            joint = joint[..., None] * probabilities[head]
        flat = joint.ravel()
        actions = []
        for index in _top_indices(flat, top_k):
            combo = np.unravel_index(index, joint.shape)
            actions.append(
                {
                    **{h: self.class_name(h, int(i)) for h, i in zip(names, combo)},
                    "probability": round(float(flat[index]), 6),
                }
            )
        return actions


def _softmax(logits: np.ndarray) -> np.ndarray:
    """float32 probabilities of a ``[classes]`` logit vector (non-finite logits give non-finite output)."""
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest of ``values [N]``, largest first (ties: lower index first)."""
    return np.argsort(-values, kind="stable")[: min(k, len(values))]
