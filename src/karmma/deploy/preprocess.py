"""Raw media -> model inputs, built as training and evaluation build them.

The dataset path (``karmma prepare`` then :class:`~karmma.data.dataset.ClipDataset`
with the centre view) is reproduced on decoded frames in memory:

* frames decoded with PyAV and resized to the training short side
  (:func:`karmma.data.video.iter_frames`);
* ``T`` frame numbers at the centre of ``T`` equal parts of the segment
  (:mod:`karmma.data.views`, the recipe the dataset follows too);
* V: centre square crop, resize, ImageNet normalisation;
* F: DIS (or TV-L1) flow between the two frames of each sampled frame's flow
  pair (:func:`~karmma.data.views.flow_pair`; the stride is ``flow_stride``,
  else set by the video's frame rate, :func:`~karmma.data.views.flow_stride_for_rate`),
  quantised to ``[-20, 20]`` px as the flow JPEGs are, then the same crop,
  resize (vectors rescaled) and ``clip.flow_scale``;
* A: the log-mel spectrogram of the window around the segment centre.

Not reproduced: the JPEG compression of the prepared frames (quality 90).

All of it is NumPy and OpenCV, no torch (the light install): the crop, resize
and normalisation are :mod:`karmma.data.numpy_transforms` (the same numbers
as the dataset's torch transforms, bit for bit), the spectrogram
:func:`~karmma.data.audio.log_mel_numpy`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from karmma.artifacts import ModelInfo
from karmma.data.audio import log_mel_numpy
from karmma.data.media import crop_or_pad, encode_flow
from karmma.data.numpy_transforms import CropParams, eval_crop_params, flow_input, rgb_input
from karmma.data.sampling import segment_frame_numbers
from karmma.data.video import flow_calculator
from karmma.data.views import (
    ClipConfig,
    audio_window_start,
    clip_frames,
    flow_pair,
    flow_stride_for_rate,
    spectrogram_config,
)

RAW_MODALITIES = ("V", "F", "A")  # what a video file can give (D needs a detector)


@dataclass
class Preprocessor:
    """Turns decoded frames and audio samples into the student's inputs.

    Args:
        input_shapes: the student's ``{key: shape}``.
        clip: the training clip settings (flow scale, log-mel settings).
        flow_method: ``"dis"`` or ``"tvl1"``.
        short_side: frames are resized to this short side before anything else.
        fps: frame rate the training frames were extracted at (None: the video's).
        flow_stride: frames between the two frames of a flow pair (None: from the
            video's frame rate, :func:`~karmma.data.views.flow_stride_for_rate`).
    """

    input_shapes: dict[str, tuple[int, ...]]
    clip: ClipConfig
    flow_method: str = "dis"
    short_side: int = 256
    fps: float | None = None
    flow_stride: int | None = None

    def __post_init__(self):
        self._flow = flow_calculator(self.flow_method)

    @classmethod
    def for_student(
        cls,
        info: ModelInfo,
        flow: str | None = None,
        short_side: int | None = None,
        flow_stride: int | None = None,
    ) -> Preprocessor:
        """Settings from the student's preparation record; ``flow`` and ``short_side`` override it.

        Without a record: DIS flow, and the short side is the input size
        (``256`` for inputs of 224 px and more, the EPIC convention)."""
        prepared = info.preparation or {}
        size = next((s[-1] for k, s in info.input_shapes.items() if k in ("V", "F")), 224)
        return cls(
            input_shapes=dict(info.input_shapes),
            clip=info.clip_config(),
            flow_method=flow or prepared.get("flow") or "dis",
            short_side=short_side or prepared.get("short_side") or (256 if size >= 224 else size),
            fps=prepared.get("fps"),
            flow_stride=flow_stride,
        )

    @property
    def num_frames(self) -> int:
        return clip_frames(self.input_shapes)

    def stride_for(self, rate: float) -> int:
        """The flow stride for a video of ``rate`` fps: ``flow_stride`` when set, else from the rate."""
        return self.flow_stride or flow_stride_for_rate(rate)

    @property
    def audio_seconds(self) -> float:
        return self._mel_config().seconds

    @property
    def sample_rate(self) -> int:
        return self.clip.audio.sample_rate

    def frame_numbers(self, start_frame: int, stop_frame: int) -> list[int]:
        """The ``T`` 1-based frame numbers of the centre view of ``[start_frame, stop_frame]``."""
        return segment_frame_numbers(start_frame, stop_frame, self.num_frames, train=False)

    def crop(self, frames: list[np.ndarray]) -> CropParams:
        h, w = frames[0].shape[:2]
        return eval_crop_params(w / h, 0, 1)

    def video(self, frames: list[np.ndarray], numbers: list[int], first_number: int = 1) -> np.ndarray:
        """V float32 ``[T, 3, S, S]`` from RGB frames uint8 ``[h, w, 3]``; ``frames[0]`` is frame ``first_number``."""
        picked = np.stack([frames[n - first_number] for n in numbers])  # uint8 [T, h, w, 3]
        return rgb_input(picked, self.crop(frames), self.input_shapes["V"][-1])

    def flow(self, frames: list[np.ndarray], numbers: list[int], stride: int = 1, first_number: int = 1) -> np.ndarray:
        """F float32 ``[T, 2, S, S]``: flow from each sampled frame to the one ``stride`` later.

        Flow frames are aligned to the stride as in the prepared data (flow
        frame ``k`` is frames ``k*stride -> (k+1)*stride``); at the end of the
        video the previous pair is used, as the dataset does."""
        import cv2

        last = first_number + len(frames) - 1
        pairs = [flow_pair(n, stride, first_number, last) for n in numbers]
        flows = {}
        for a, b in dict.fromkeys(pairs):
            grey_a = cv2.cvtColor(frames[a - first_number], cv2.COLOR_RGB2GRAY)
            grey_b = cv2.cvtColor(frames[b - first_number], cv2.COLOR_RGB2GRAY)
            flows[a, b] = np.stack(encode_flow(self._flow.calc(grey_a, grey_b, None)), -1)  # [h, w, 2] uint8, quantised
        stacked = np.stack([flows[pair] for pair in pairs])  # [T, h, w, 2]
        return flow_input(stacked, self.crop(frames), self.input_shapes["F"][-1], self.clip.flow_scale)

    def _mel_config(self):
        shape = self.input_shapes.get("A", (1, self.clip.audio.n_mels, self.clip.audio.frames))
        if len(shape) != 3:
            raise ValueError(
                f"audio input of shape {list(shape)}: only the student's single spectrogram [1, mels, frames] is supported"
            )
        return spectrogram_config(self.clip.audio, shape)

    def audio_span(self, start_time: float, stop_time: float) -> tuple[float, float]:
        """``(start, seconds)``: where the spectrogram of the segment ``[start_time, stop_time]`` reads its audio."""
        seconds = self._mel_config().seconds
        return audio_window_start(start_time, stop_time, seconds), seconds

    def audio(self, samples: np.ndarray, start_time: float, stop_time: float, offset: float = 0.0) -> np.ndarray:
        """A float32 ``[1, n_mels, frames]``: log-mel of the window around the segment centre.

        ``samples`` are mono at :attr:`sample_rate`, sample 0 at time ``offset`` (s)."""
        config = self._mel_config()
        window_start, _ = self.audio_span(start_time, stop_time)
        first = int(round(window_start * config.sample_rate)) - int(round(offset * config.sample_rate))
        window = crop_or_pad(samples, first, int(round(config.seconds * config.sample_rate)))
        return log_mel_numpy(window, config)[None]

    def inputs(
        self,
        frames: list[np.ndarray] | None,
        rate: float,
        audio: np.ndarray | None,
        modalities,
        start_frame: int,
        stop_frame: int,
        first_number: int = 1,
        stride: int = 1,
        times: tuple[float, float] | None = None,
        audio_offset: float = 0.0,
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Inputs of the segment ``[start_frame, stop_frame]`` (1-based, of the video) for ``modalities``.

        ``frames[0]`` is frame ``first_number``; ``times`` are the segment's
        start and stop in seconds (default: from the frame numbers), for audio.
        Returns ``{key: [*input_shape]}`` and the milliseconds spent per step
        (``rgb``, ``flow``, ``spectrogram``)."""
        timings = {}
        inputs = {}
        numbers = self.frame_numbers(start_frame, stop_frame)
        steps = {
            "V": ("rgb", lambda: self.video(frames, numbers, first_number)),
            "F": ("flow", lambda: self.flow(frames, numbers, stride, first_number)),
            "A": (
                "spectrogram",
                lambda: self.audio(
                    audio, *(times or ((start_frame - 1) / rate, stop_frame / rate)), offset=audio_offset
                ),
            ),
        }
        for key in modalities:
            name, build = steps[key]
            start = time.perf_counter()
            inputs[key] = build()
            timings[name] = (time.perf_counter() - start) * 1000
        return inputs, timings
