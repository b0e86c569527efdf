"""The clip recipe shared by the dataset and deployment (karmma.data.views)."""

import pytest

from karmma.data.audio import LogMelConfig
from karmma.data.recipe import PUBLISHED_EPIC
from karmma.data.sources import FlowSource
from karmma.data.views import (
    audio_window_start,
    clip_frames,
    coverage_problem,
    flow_frame,
    flow_pair,
    segment_frame_range,
    spectrogram_config,
)


def test_frames_per_clip_come_from_the_visual_inputs_and_must_agree():
    assert clip_frames({"V": (16, 3, 224, 224), "A": (1, 128, 400), "F": (16, 2, 224, 224)}) == 16
    assert clip_frames({"A": (1, 128, 400)}) == 8  # audio only: the default
    # the teacher's audio, one log-mel image per sampled frame, alone or beside video
    assert clip_frames({"A": (4, 1, 32, 32)}) == 4
    with pytest.raises(ValueError, match="same number of frames"):
        clip_frames({"V": (8, 3, 32, 32), "A": (4, 1, 32, 32)})
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
    stride = PUBLISHED_EPIC.stride("P01_01", None)
    assert FlowSource(directory=None, stride=stride).index(6) == flow_frame(6, 2) == 3


def test_the_spectrogram_window_is_centred_on_the_segment():
    config = spectrogram_config(LogMelConfig(), (1, 64, 100))
    assert (config.n_mels, config.frames) == (64, 100)
    assert audio_window_start(2.0, 4.0, config.seconds) == pytest.approx(3.0 - config.seconds / 2)


def test_media_cover_a_segment_up_to_the_tolerance():
    assert coverage_problem(3.0, 1.0, 3.05) is None  # 50 ms short of a 2 s segment: covered
    assert coverage_problem(3.0, 1.0, 60.0) == "the audio ends at 3.00 s, before the clip's end at 60.00 s"
    assert coverage_problem(3.0, 2.9, 3.05, "video") == "the video ends at 3.00 s, before the clip's end at 3.05 s"
    assert coverage_problem(0.0, 0.0, 1.0) == "the audio has no samples (0 s)"
    assert coverage_problem(None, 0.0, 1.0) is None  # unknown: loading tells


def test_segment_frames_follow_the_epic_convention():
    assert segment_frame_range(1.0, 3.0, 25) == (26, 76)  # frame n shows (n - 1) / 25 s
    assert segment_frame_range(0.0, 0.01, 25) == (1, 1)
