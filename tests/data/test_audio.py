import math

import numpy as np
import pytest
import torch

from karmma.data.audio import LogMelConfig, log_mel, log_mel_numpy, mel_filterbank


def test_epic_convention_gives_128_by_400():
    config = LogMelConfig()
    assert (config.win_length, config.hop_length) == (240, 120)
    waveform = torch.randn(int(config.seconds * config.sample_rate))
    assert log_mel(waveform, config).shape == (128, 400)
    assert config.seconds == 2.0


def test_short_audio_is_padded_and_log_floor():
    config = LogMelConfig()
    spectrogram = log_mel(torch.zeros(1000), config)
    assert spectrogram.shape == (128, 400)
    assert torch.allclose(spectrogram, torch.full_like(spectrogram, math.log(config.eps)))


def test_filterbank_peaks_are_increasing_and_tone_lands_in_right_band():
    bank = mel_filterbank(24000, 2048, 128)
    assert bank.shape == (128, 1025) and (bank >= 0).all()
    peaks = torch.from_numpy(bank.argmax(axis=1))
    assert (peaks[1:] >= peaks[:-1]).all()
    config = LogMelConfig()
    t = torch.arange(48000) / 24000
    spectrogram = log_mel(torch.sin(2 * math.pi * 1000 * t), config)
    band = spectrogram.mean(dim=1).argmax()
    peak_hz = peaks[band].item() * 24000 / 2048
    assert abs(peak_hz - 1000) < 60


@pytest.mark.parametrize("signal", ["noise", "tone", "silence", "short"])
def test_the_numpy_spectrogram_equals_the_torch_one(signal):
    """Deployment (no torch) computes A with log_mel_numpy: within 1e-3 of the training loader's log_mel
    (float32 FFTs round differently; measured 6e-6 on noise, 2e-4 in the quietest bands of a tone)."""
    config = LogMelConfig(frames=200)
    n = int(config.seconds * config.sample_rate)
    waveform = {
        "noise": np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1,
        "tone": np.sin(2 * math.pi * 440 * np.arange(n) / config.sample_rate).astype(np.float32),
        "silence": np.zeros(n, np.float32),
        "short": np.random.default_rng(1).standard_normal(n // 3).astype(np.float32),  # padded frames
    }[signal]
    expected = log_mel(torch.from_numpy(waveform), config).numpy()
    out = log_mel_numpy(waveform, config)
    assert out.shape == expected.shape == (128, 200) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-3)
