"""The Python API: load a student once, predict actions from any subset of modalities.

```python
from karmma.deploy import Recognizer

recognizer = Recognizer.load("student.onnx")          # or .safetensors / .ckpt / a split-ONNX folder
prediction = recognizer.predict(video=frames, audio=waveform)   # flow, boxes omitted: missing
prediction = recognizer.predict_file("clip.mp4", modalities=["V", "F"])
print(prediction.format_table())
```
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from karmma.data.epic import flow_stride
from karmma.data.media import MediaError, decode_audio_track
from karmma.data.prepare import iter_frames, resize_short_side
from karmma.deploy.preprocess import RAW_MODALITIES, Preprocessor
from karmma.deploy.runtime import open_runner
from karmma.modalities import MODALITY_NAMES, order_keys


@dataclass
class Prediction:
    """Top-k classes per head and top-k actions (joint over the heads), with probabilities.

    Attributes:
        heads: per head, ``[(class name, probability)]`` best first.
        actions: ``[{head: class name, ..., "probability": p}]`` best first; the
            probability of an action is the product of its heads' probabilities.
        modalities: the modalities the prediction used.
        missing: modalities not used, with the reason.
        timings_ms: milliseconds per step (``decode``, ``rgb``, ``flow``, ``spectrogram``, ``model``).
    """

    heads: dict[str, list[tuple[str, float]]]
    actions: list[dict]
    modalities: list[str]
    missing: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def top(self) -> dict:
        """The best action, e.g. ``{"verb": "lift", "noun": "cup", "probability": 0.8}``."""
        return self.actions[0]

    def to_dict(self) -> dict:
        return {
            "modalities": self.modalities,
            "missing": self.missing,
            "actions": self.actions,
            "heads": {h: [{"class": name, "probability": round(p, 6)} for name, p in top] for h, top in self.heads.items()},
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }

    def format_table(self) -> str:
        names = list(self.heads)
        lines = [f"modalities used: {'+'.join(self.modalities)}"
                 + "".join(f"; {k} not used ({why})" for k, why in self.missing.items())]
        header = f"{'rank':>4s}  " + "  ".join(f"{h:16s}" for h in names) + "  probability"
        lines += [header, "-" * len(header)]
        for rank, action in enumerate(self.actions, 1):
            lines.append(f"{rank:4d}  " + "  ".join(f"{action[h]:16s}" for h in names) + f"  {action['probability']:.3f}")
        if self.timings_ms:
            lines.append("time: " + ", ".join(f"{k} {v:.1f} ms" for k, v in self.timings_ms.items()))
        return "\n".join(lines)


@dataclass
class DecodedVideo:
    """A decoded video: RGB frames at the training short side and its audio track (if any)."""

    frames: list[np.ndarray]
    rate: float
    audio: np.ndarray | None
    audio_note: str  # why there is no audio, when there is none
    flow_stride: int = 1
    decode_ms: float = 0.0

    @property
    def duration(self) -> float:
        return len(self.frames) / self.rate


class Recognizer:
    """A deployed student: ``Recognizer.load(path)``, then :meth:`predict` or :meth:`predict_file`.

    Args:
        runner: a runner from :mod:`karmma.deploy.runtime`.
        flow, short_side: override the training preparation settings (flow
            method, frame short side) used for raw media.
    """

    def __init__(self, runner, flow: str | None = None, short_side: int | None = None):
        self.runner = runner
        self.info = runner.info
        self.preprocessor = Preprocessor.for_student(self.info, flow, short_side)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, flow: str | None = None, short_side: int | None = None) -> "Recognizer":
        """A ``.onnx`` graph or split-ONNX folder (ONNX Runtime), or a ``.ckpt`` / ``.safetensors`` student (PyTorch)."""
        return cls(open_runner(path, threads), flow, short_side)

    @property
    def modalities(self) -> list[str]:
        return self.info.modalities

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
        self._check_modalities([k for k, v in given.items() if v is not None])
        inputs, timings = {}, {}
        for key, value in given.items():
            if value is None:
                continue
            inputs[key] = self._input_from_array(key, value, given, timings)
        missing = {k: "not given" for k in self.modalities if k not in inputs}
        return self._predict(inputs, missing, timings, top_k)

    def _input_from_array(self, key: str, value, given: dict, timings: dict) -> torch.Tensor:
        shape = tuple(self.info.input_shapes[key])
        tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
        if tuple(tensor.shape) == shape:
            return tensor.float()
        if tuple(tensor.shape) == (1, *shape):
            return tensor[0].float()
        pre = self.preprocessor
        start = time.perf_counter()
        if key in ("V", "F") and tensor.dim() == 4 and tensor.shape[-1] == (3 if key == "V" else 2):
            frames = [resize_short_side(f, pre.short_side) for f in tensor.numpy()] if key == "V" else list(tensor.numpy())
            numbers = pre.frame_numbers(1, len(frames))
            if key == "V":
                out = pre.video(frames, numbers)
            else:  # flow given in pixels: quantise, crop and scale as F is
                from karmma.data.media import encode_flow
                from karmma.data.transforms import flow_input

                picked = torch.from_numpy(np.stack([np.stack(encode_flow(frames[n - 1])) for n in numbers]))  # uint8 [T, 2, h, w]
                out = flow_input(picked, pre.crop(frames), shape[-1], pre.clip.flow_scale)
        elif key == "A" and tensor.dim() == 1:
            seconds = len(tensor) / pre.sample_rate
            out = pre.audio(tensor.float().numpy(), 0.0, seconds)
        else:
            raise ValueError(
                f"{key} ({MODALITY_NAMES.get(key, key)}): got shape {list(tensor.shape)}; expected the model input "
                f"{list(shape)}" + {"V": " or frames [N, H, W, 3] uint8", "F": " or flow [N, H, W, 2] in pixels",
                                     "A": " or a mono waveform [samples]", "D": ""}[key]
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
            if until is not None and len(decoded) > until * item[1] + 2 * flow_stride(path.stem):
                break
        if not decoded:
            raise MediaError(f"{path}: no frames decoded")
        audio, note = None, "the model has no audio input"
        if need_audio:
            try:
                audio, note = decode_audio_track(path, pre.sample_rate), ""
            except MediaError as error:
                note = "no audio track" if "no audio track" in str(error) or "empty" in str(error) else str(error)
        frames = [image for image, _, _ in decoded]
        return DecodedVideo(frames, decoded[0][1], audio, note, flow_stride(path.stem), (time.perf_counter() - start) * 1000)

    def predict_file(
        self, path: str | Path, modalities: Sequence[str] | None = None, start: float | None = None,
        end: float | None = None, top_k: int = 5,
    ) -> Prediction:
        """Predict the action in a video file (or in ``[start, end]`` seconds of it).

        ``modalities``: which of V, F, A to use (default: all the model has
        that a video can give); A is skipped, and said so, when the video has
        no audio track."""
        wanted = self.file_modalities(modalities)
        video = self.decode(path, need_audio="A" in wanted, until=end)
        return self.predict_decoded(video, wanted, start, end, top_k)

    def file_modalities(self, modalities: Sequence[str] | None) -> list[str]:
        """The requested modalities (default: those of V, F, A the model has), checked."""
        if modalities is None:
            return [k for k in self.modalities if k in RAW_MODALITIES]
        self._check_modalities(modalities)
        raw_only = [k for k in modalities if k not in RAW_MODALITIES]
        if raw_only:
            raise ValueError(f"modality {raw_only[0]} ({MODALITY_NAMES.get(raw_only[0])}) cannot be computed from a video file; use Recognizer.predict(boxes=...)")
        return order_keys(modalities, self.modalities)

    def predict_decoded(
        self, video: DecodedVideo, modalities: Sequence[str], start: float | None = None, end: float | None = None,
        top_k: int = 5, dropped: dict[str, str] | None = None, first_number: int = 1,
    ) -> Prediction:
        """Predict from decoded frames; ``video.frames[0]`` is frame ``first_number`` of the recording."""
        count = len(video.frames)
        first_time = (first_number - 1) / video.rate
        start_time = first_time if start is None else start
        stop_time = first_time + count / video.rate if end is None else end
        if not first_time <= start_time < stop_time:
            raise ValueError(f"segment [{start_time:.2f}, {stop_time:.2f}] s is empty or outside the video ({first_time:.2f} to {first_time + count / video.rate:.2f} s)")
        start_frame = max(first_number, int(start_time * video.rate) + 1) if start is not None else first_number
        stop_frame = min(first_number + count - 1, int(stop_time * video.rate) + 1) if end is not None else first_number + count - 1
        missing = {k: "not requested" for k in self.modalities if k not in modalities}
        missing.update(dropped or {})
        used = [k for k in modalities if k not in missing]
        if "A" in used and video.audio is None:
            used.remove("A")
            missing["A"] = video.audio_note
        if not used:
            raise ValueError("no modality left to predict from: " + "; ".join(f"{k}: {why}" for k, why in missing.items()))
        inputs, timings = self.preprocessor.inputs(
            video.frames, video.rate, video.audio, used, start_frame, stop_frame, first_number, video.flow_stride,
            (start_time, stop_time),
        )
        if video.decode_ms:
            timings = {"decode": video.decode_ms, **timings}
        return self._predict(inputs, {k: missing[k] for k in self.modalities if k in missing}, timings, top_k)

    # ---- shared -----------------------------------------------------------------------------

    def _check_modalities(self, keys: Sequence[str]) -> None:
        unknown = [k for k in keys if k not in self.modalities]
        if unknown:
            raise ValueError(
                f"the model was not trained on modality {unknown[0]} ({MODALITY_NAMES.get(unknown[0], 'unknown')}); "
                f"it has {', '.join(self.modalities)}"
            )

    def _predict(self, inputs: dict[str, torch.Tensor], missing: dict[str, str], timings: dict, top_k: int) -> Prediction:
        availability = torch.tensor([[k in inputs for k in self.modalities]])
        if not availability.any():
            raise ValueError(f"no modality given: the model needs at least one of {', '.join(self.modalities)}")
        start = time.perf_counter()
        logits = self.runner.logits({k: v[None] for k, v in inputs.items()}, availability)
        timings["model"] = (time.perf_counter() - start) * 1000
        probabilities = {h: torch.softmax(torch.from_numpy(np.asarray(v[0])), dim=0) for h, v in logits.items()}
        heads = {}
        for head, p in probabilities.items():
            values, indices = p.topk(min(top_k, len(p)))
            heads[head] = [(self.class_name(head, i), float(v)) for v, i in zip(values.tolist(), indices.tolist())]
        return Prediction(heads, self._top_actions(probabilities, top_k), [k for k in self.modalities if k in inputs], missing, timings)

    def _top_actions(self, probabilities: dict[str, torch.Tensor], top_k: int) -> list[dict]:
        """Top-k joint (product) probabilities over the heads (verb x noun on EPIC)."""
        names = list(probabilities)
        joint = probabilities[names[0]]
        for head in names[1:]:
            joint = joint[..., None] * probabilities[head]
        values, flat = joint.flatten().topk(min(top_k, joint.numel()))
        actions = []
        for value, index in zip(values.tolist(), flat.tolist()):
            combo = np.unravel_index(index, tuple(joint.shape))
            actions.append({**{h: self.class_name(h, int(i)) for h, i in zip(names, combo)}, "probability": round(value, 6)})
        return actions
