"""Log-mel spectrogram frontend (EPIC-KITCHENS audio convention).

Default: 24 kHz mono, n_fft 2048, 10 ms window (240 samples), 5 ms hop
(120 samples), 128 mel bins, ``log(mel + 1e-6)``; about 2 s of audio give a
``128 x 400`` spectrogram. The mel filterbank is librosa's default (Slaney
mel scale and area normalisation), written in NumPy so no extra dependency is
needed.

Two forms of one spectrogram: :func:`log_mel` (torch, the training data
loader's: with the NumPy form the loader's audio clips/s fell about 10x,
docs/deploy.md "Light install") and :func:`log_mel_numpy` (deployment
without torch). They share the filterbank,
window and padding; ``tests/data/test_audio.py`` checks they agree within
1e-3 (float32 FFT rounding; 2e-4 measured, in the log of the quietest bands).
torch is imported only by the torch form.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from karmma.train_config import AudioConfig

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LogMelConfig(AudioConfig):
    """The log-mel settings of one spectrogram: the config's ``clip.audio`` and the shape it is made
    in (``n_mels`` bins, ``frames`` hops; :func:`karmma.data.views.spectrogram_config`)."""

    n_mels: int = 128
    frames: int = 400

    def __post_init__(self):
        super().__post_init__()
        for name in ("n_mels", "frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"log-mel {name} must be >= 1, got {getattr(self, name)}")

    @property
    def seconds(self) -> float:
        """Audio length that gives exactly ``frames`` spectrogram frames."""
        return self.frames * self.hop_length / self.sample_rate


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney: linear below 1 kHz, logarithmic above
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """float32 ``[n_mels, n_fft // 2 + 1]`` triangular filters (librosa ``filters.mel`` defaults); read-only."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(np.float64(0.0)), _hz_to_mel(np.float64(sample_rate / 2)), n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    widths = hz_points[1:] - hz_points[:-1]
    ramps = hz_points[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    filters = np.maximum(np.minimum(lower, upper), 0.0)
    filters *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]  # Slaney area normalisation
    filters = filters.astype(np.float32)
    filters.flags.writeable = False  # cached: shared by every call
    return filters


def _fit_frames(mel, frames: int, pad):
    """``mel [n_mels, N]`` cropped or zero-padded (``pad(mel, missing)``) to ``frames`` columns."""
    return mel[:, :frames] if mel.shape[1] >= frames else pad(mel, frames - mel.shape[1])


def log_mel(waveform: torch.Tensor, config: LogMelConfig = LogMelConfig()) -> torch.Tensor:
    """Mono samples ``[N]`` -> log-mel spectrogram ``[n_mels, frames]`` (torch).

    The result is cropped or zero-padded (in the power domain) to
    ``config.frames`` frames.
    """
    import torch
    import torch.nn.functional as F

    window = torch.hann_window(config.win_length, dtype=waveform.dtype, device=waveform.device)
    spectrum = torch.stft(
        waveform,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spectrum.abs() ** 2  # [n_fft // 2 + 1, frames]
    bank = torch.tensor(
        mel_filterbank(config.sample_rate, config.n_fft, config.n_mels)
    )  # a copy: the cache is read-only
    mel = bank.to(power) @ power
    mel = _fit_frames(mel, config.frames, lambda m, missing: F.pad(m, (0, missing)))
    return torch.log(mel + config.eps)


def log_mel_numpy(waveform: np.ndarray, config: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """:func:`log_mel` in NumPy: mono float32 samples ``[N]`` -> float32 ``[n_mels, frames]``.

    The same steps as ``torch.stft(center=True, pad_mode="constant")``: the
    periodic Hann window of ``win_length`` centred in ``n_fft``, the signal
    zero-padded by ``n_fft // 2`` on both sides, one frame every ``hop_length``."""
    waveform = np.asarray(waveform, np.float32)
    n_fft, hop, length = config.n_fft, config.hop_length, config.win_length
    window = np.zeros(n_fft, np.float32)
    left = (n_fft - length) // 2
    window[left : left + length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)  # periodic Hann
    padded = np.pad(waveform, n_fft // 2)
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(padded, (count, n_fft), (padded.strides[0] * hop, padded.strides[0]))
    spectrum = np.fft.rfft(frames * window, axis=1)  # complex64 [frames, n_fft // 2 + 1]
    power = spectrum.real**2 + spectrum.imag**2
    mel = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels) @ power.T
    mel = _fit_frames(mel, config.frames, lambda m, missing: np.pad(m, ((0, 0), (0, missing))))
    return np.log(mel + np.float32(config.eps))


def log_mel_images(
    waveform: torch.Tensor,
    centres: list[float],
    size: int,
    window_seconds: float,
    config: LogMelConfig = LogMelConfig(),
) -> torch.Tensor:
    """One ``size x size`` log-mel image per sampled frame: ``[T, 1, size, size]``.

    ``waveform`` starts at time 0 of the clip window, ``centres`` are the
    frames' times (seconds) in the same reference. Each image is the log-mel
    spectrogram of ``window_seconds`` around its centre, resized (the
    teacher's audio input in the paper preset, as in earlier EPIC audio work).
    """
    import torch
    import torch.nn.functional as F

    length = int(round(window_seconds * config.sample_rate))
    frames = max(1, length // config.hop_length)
    image_config = dataclasses.replace(config, frames=frames)
    images = []
    for centre in centres:
        first = int(round(centre * config.sample_rate)) - length // 2
        piece = waveform.new_zeros(length)
        lo, hi = max(first, 0), min(first + length, len(waveform))
        if hi > lo:
            piece[lo - first : hi - first] = waveform[lo:hi]
        images.append(log_mel(piece, image_config))
    stacked = torch.stack(images)[:, None]  # [T, 1, n_mels, frames]
    return F.interpolate(stacked, size=(size, size), mode="bilinear", align_corners=False)
