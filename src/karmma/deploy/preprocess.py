"""Raw media -> model inputs, built as training and evaluation build them.

The dataset path (``karmma prepare`` then :class:`~karmma.data.dataset.ClipDataset`
with the centre view) is reproduced on decoded frames in memory:

* frames decoded with PyAV and resized to the training short side, at the
  training frame rate when it was resampled (:func:`karmma.data.video.iter_frames`);
* ``T`` frame numbers at the centre of ``T`` equal parts of the segment
  (:mod:`karmma.data.views`, the recipe the dataset follows too);
* V: centre square crop, resize, ImageNet normalisation;
* F: the training flow method between the two frames of each sampled frame's
  flow pair (:func:`~karmma.data.views.flow_pair`), the pair's frames as far
  apart as the frame recipe's stride rule says for this video
  (:meth:`~karmma.data.recipe.PrepareSettings.stride`, the rule ``karmma prepare``
  applied), quantised over the recipe's bound as the flow JPEGs are, then the
  same crop, resize (vectors rescaled) and ``clip.flow_scale``;
* A: the log-mel spectrogram of the window around the segment centre.

Not reproduced: the JPEG compression of the prepared frames (quality 90).

All of it is NumPy and OpenCV, no torch (the light install): the crop, resize
and normalisation are :mod:`karmma.data.numpy_transforms` (the same numbers
as the dataset's torch transforms, bit for bit), the spectrogram
:func:`~karmma.data.audio.log_mel_numpy`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from karmma.artifacts import ModelInfo
from karmma.data.audio import LogMelConfig, log_mel_numpy
from karmma.data.media import crop_or_pad, encode_flow
from karmma.data.numpy_transforms import CropParams, eval_crop_params, flow_input, rgb_input
from karmma.data.recipe import PrepareSettings
from karmma.data.sampling import segment_frame_numbers
from karmma.data.video import flow_calculator
from karmma.data.views import audio_window_start, clip_frames, flow_pair, spectrogram_config
from karmma.modalities import IMAGE_MODALITIES
from karmma.train_config import ClipConfig

log = logging.getLogger("karmma.deploy")


@dataclass
class Preprocessor:
    """Turns decoded frames and audio samples into the student's inputs.

    Args:
        input_shapes: the student's ``{key: shape}``.
        clip: the training clip settings (flow scale, log-mel settings).
        recipe: how the training frames were made (flow method and stride rule,
            short side, frame rate, flow bound).
        flow_stride: a stride for every video instead of the recipe's rule; only
            for models that record no recipe (``recorded`` False): with a recorded
            one it must agree with the rule (:meth:`stride_for` raises otherwise).
        recorded: whether ``recipe`` is the model's record (else assumed).
    """

    input_shapes: dict[str, tuple[int, ...]]
    clip: ClipConfig
    recipe: PrepareSettings
    flow_stride: int | None = None
    recorded: bool = True

    def __post_init__(self):
        self._flow = flow_calculator(self.recipe.flow)

    @classmethod
    def for_student(
        cls,
        info: ModelInfo,
        flow: str | None = None,
        short_side: int | None = None,
        flow_stride: int | None = None,
        name: str = "the model",
    ) -> Preprocessor:
        """The student's recorded frame recipe. ``flow``, ``short_side`` and ``flow_stride`` stand in
        for a recipe the model does not record; against a recorded one they must agree (else
        ``ValueError``: the inputs would differ from the training data's).

        Without a record (a warning says so): DIS flow, the input size as short side
        (``256`` for inputs of 224 px and more, the EPIC convention), each video's rate,
        and the ``fps`` stride rule, unless the arguments say otherwise."""
        recipe = info.preparation
        if recipe is None:
            size = next((s[-1] for k, s in info.input_shapes.items() if k in IMAGE_MODALITIES), 224)
            recipe = PrepareSettings(
                flow=flow or "dis", short_side=short_side or (256 if size >= 224 else size), flow_stride="fps"
            )
            log.warning(
                "%s records no frame recipe (exported before karmma recorded it): assuming %s%s",
                name,
                recipe.describe(),
                f", flow stride {flow_stride}" if flow_stride else "",
            )
        else:
            for option, given, recorded in (("flow", flow, recipe.flow), ("short side", short_side, recipe.short_side)):
                if given is not None and given != recorded:
                    raise ValueError(
                        f"{option} {given} differs from the {option} {recorded} of {name}'s training frames "
                        f"({recipe.describe()}): its inputs would not be those it was trained on; drop the option"
                    )
        return cls(
            dict(info.input_shapes), info.clip_config(), recipe, flow_stride, recorded=info.preparation is not None
        )

    @property
    def num_frames(self) -> int:
        return clip_frames(self.input_shapes)

    @property
    def short_side(self) -> int:
        return self.recipe.short_side

    @property
    def fps(self) -> float | None:
        """The frame rate the training frames were resampled to (None: each video's own)."""
        return self.recipe.fps

    def stride_for(self, video_id: str, rate: float) -> int:
        """The flow stride of video ``video_id`` (its file name without the suffix) at ``rate`` fps:
        the recipe's rule, as ``karmma prepare`` applied it to the training videos."""
        stride = self.recipe.stride(video_id, rate)
        if self.flow_stride is None or self.flow_stride == stride:
            return stride
        if self.recorded:
            raise ValueError(
                f"flow stride {self.flow_stride} differs from the stride {stride} the model's frame recipe gives "
                f"{video_id or 'this video'} at {rate:.4g} fps ({self.recipe.describe_stride()}): its flow would not "
                "be the flow it was trained on; drop --flow-stride"
            )
        return self.flow_stride

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
            flow = self._flow.calc(grey_a, grey_b, None)
            flows[a, b] = np.stack(encode_flow(flow, self.recipe.flow_bound), -1)  # [h, w, 2] uint8, quantised
        stacked = np.stack([flows[pair] for pair in pairs])  # [T, h, w, 2]
        return self.flow_input(stacked, self.crop(frames))

    def flow_input(self, quantised: np.ndarray, crop: CropParams) -> np.ndarray:
        """F float32 ``[T, 2, S, S]`` from quantised flow uint8 ``[T, h, w, 2]``, as the dataset de-quantises it."""
        return flow_input(quantised, crop, self.input_shapes["F"][-1], self.clip.flow_scale, self.recipe.flow_bound)

    def _mel_config(self):
        default = LogMelConfig()  # a model without A: the default spectrogram's window
        shape = self.input_shapes.get("A", (1, default.n_mels, default.frames))
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
