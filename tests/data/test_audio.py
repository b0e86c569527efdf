import math

import torch

from karmma.data.audio import LogMelConfig, log_mel, mel_filterbank


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
    peaks = bank.argmax(dim=1)
    assert (peaks[1:] >= peaks[:-1]).all()
    config = LogMelConfig()
    t = torch.arange(48000) / 24000
    spectrogram = log_mel(torch.sin(2 * math.pi * 1000 * t), config)
    band = spectrogram.mean(dim=1).argmax()
    peak_hz = peaks[band].item() * 24000 / 2048
    assert abs(peak_hz - 1000) < 60
