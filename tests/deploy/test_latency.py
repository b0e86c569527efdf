"""The pre-processing part of the deployment latency table (karmma.deploy.latency)."""

from karmma.deploy.latency import (
    _random_student,
    preprocessing_latency,
    subset_preprocessing_ms,
    synthetic_video,
)
from karmma.deploy.preprocess import Preprocessor


def test_preprocessing_is_timed_for_the_modalities_the_student_takes(tmp_path):
    """A V+A student has no flow input: its table times decoding, RGB and the spectrogram only
    (it raised KeyError 'F' when every step was timed whatever the model took)."""
    _, info = _random_student("tiny", ["V", "A"])
    pre = Preprocessor.for_student(info)
    video = synthetic_video(tmp_path / "clip.mp4", 1.5, pre.short_side)
    timed = preprocessing_latency(pre, video, clip_seconds=1.0, repeats=1)
    assert {k for k, v in timed.items() if isinstance(v, float)} == {"decode", "rgb", "spectrogram"}
    assert subset_preprocessing_ms(timed, ("V", "A")) == timed["decode"] + timed["rgb"] + timed["spectrogram"]
    assert subset_preprocessing_ms(timed, ("A",)) == timed["decode"] + timed["spectrogram"]
