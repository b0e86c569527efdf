"""The clip recipe shared by the dataset and deployment (karmma.data.views)."""

import pytest

from karmma.data.audio import LogMelConfig
from karmma.data.epic import flow_index
from karmma.data.sources import FlowSource
from karmma.data.views import (
    audio_window_start,
    clip_frames,
    flow_frame,
    flow_pair,
    flow_stride_for_rate,
    spectrogram_config,
)


def test_frames_per_clip_come_from_the_visual_inputs_and_must_agree():
    assert clip_frames({"V": (16, 3, 224, 224), "A": (1, 128, 400), "F": (16, 2, 224, 224)}) == 16
    assert clip_frames({"A": (1, 128, 400)}) == 8  # audio only: the default
    with pytest.raises(ValueError, match="same number of frames"):
        clip_frames({"V": (16, 3, 32, 32), "D": (8, 4, 6)})


def test_flow_pairs_follow_the_prepared_flow_frames():
    # stride 2: flow frame k is RGB (2k - 1) -> (2k + 1); RGB frames 5 and 6 share flow frame 3 (5 -> 7)
    assert [flow_frame(n, 2) for n in (1, 2, 3, 5, 6)] == [1, 1, 2, 3, 3]
    assert flow_pair(6, 2, first=1, last=100) == (5, 7)
    assert flow_pair(6, 1, first=1, last=100) == (6, 7)
    # at the end of a video the previous pair (the last flow frame does not exist)
    assert flow_pair(100, 1, first=1, last=100) == (99, 100)
    assert flow_pair(99, 2, first=1, last=100) == (97, 99)
    # the dataset's readers and the EPIC rule use the same numbering
    assert FlowSource(directory=None, stride=2).index(6) == flow_frame(6, 2) == flow_index("P01_01", 6)


def test_the_spectrogram_window_is_centred_on_the_segment():
    config = spectrogram_config(LogMelConfig(), (1, 64, 100))
    assert (config.n_mels, config.frames) == (64, 100)
    assert audio_window_start(2.0, 4.0, config.seconds) == pytest.approx(3.0 - config.seconds / 2)


def test_the_deployed_flow_stride_follows_the_frame_rate():
    assert [flow_stride_for_rate(rate) for rate in (24, 25, 30, 50, 59.94, 120)] == [1, 1, 1, 2, 2, 4]
