"""Decoding by presentation time: VFR resampled by time, rotation applied, truncation detected, seeking."""

import numpy as np
import pytest

from karmma.data.media import MediaError
from karmma.data.video import AudioWindows, NoAudioTrack, iter_audio, iter_video_frames, probe_video, read_audio_window


def test_vfr_frames_match_their_grid_times(media, tmp_path):
    """Frame brightness encodes the source timestamp: every grid frame shows a picture from
    within one target frame of its own time (numbering at the average rate drifts far more)."""
    gaps = [10] * 40 + [40] * 20 + list(np.random.default_rng(1).choice([10, 20, 30, 40], 20))  # fast, slow, jittery
    times = media.write_vfr_video(tmp_path / "vfr.mp4", gaps)
    fps = 25.0
    frames = list(iter_video_frames(tmp_path / "vfr.mp4", fps))
    shown = np.array([media.shown_ms(f.image, times) / 1000 for f in frames])
    grid = np.array([f.time for f in frames])
    assert [f.number for f in frames] == list(range(1, len(frames) + 1))
    assert np.allclose(grid, (np.arange(len(frames))) / fps)
    assert np.abs(shown - grid).max() < 1 / fps  # within one frame
    assert abs(len(frames) / fps - (times[-1] / 1000 + gaps[-1] / 1000)) < 2 / fps
    # the old way: the i-th decoded frame numbered at the average rate
    average = probe_video(tmp_path / "vfr.mp4").rate
    naive = np.abs(np.array(times) / 1000 - np.arange(len(times)) / average).max()
    assert naive > 3 / fps, naive  # the test video really is variable: numbering by count would be wrong


def test_seeking_gives_the_same_frames(media, tmp_path):
    media.write_vfr_video(tmp_path / "vfr.mp4", [33] * 80)
    every = list(iter_video_frames(tmp_path / "vfr.mp4", 30.0))
    late = list(iter_video_frames(tmp_path / "vfr.mp4", 30.0, start=2.0))
    assert late[0].number == 61 and late[0].time == pytest.approx(2.0)
    assert [f.number for f in late] == [f.number for f in every[60:]]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(late, every[60:]))


def test_rotated_phone_video_comes_upright(media, tmp_path):
    upright = np.zeros((96, 64, 3), np.uint8)
    upright[:48] = 255  # portrait, bright top half
    stored = np.rot90(upright, -1)  # the sensor's landscape picture
    path = media.write_video(tmp_path / "phone.mp4", np.stack([stored] * 5), rotation=90)
    probe = probe_video(path)
    assert probe.rotation == 90 and probe.size == (64, 96)
    frame = next(iter_video_frames(path))
    assert frame.image.shape == (96, 64, 3)
    assert frame.image[:40].mean() > 200 and frame.image[56:].mean() < 50


def test_truncated_video_is_an_error_not_a_shorter_video(media, tmp_path):
    full = media.write_video(tmp_path / "full.mp4", media.noise(100), audio_seconds=4.0)
    assert sum(1 for _ in iter_video_frames(full)) == 100
    assert sum(len(c) for c in iter_audio(full, 24000)) / 24000 == pytest.approx(4.0, abs=0.1)
    clean_cut = media.cut_at_packet(full, tmp_path / "cut.mp4")  # every remaining packet decodes
    with pytest.raises(MediaError, match="cut.mp4: truncated video"):
        list(iter_video_frames(clean_cut))
    with pytest.raises(MediaError, match="cut.mp4: truncated audio"):
        list(iter_audio(clean_cut, 24000))
    torn = tmp_path / "torn.mp4"
    torn.write_bytes(full.read_bytes()[: full.stat().st_size // 2 + 7])  # cut inside a packet
    with pytest.raises(MediaError, match="torn.mp4: (truncated|undecodable) video"):
        list(iter_video_frames(torn))


def test_no_audio_track_is_told_apart(media, tmp_path):
    path = media.write_video(tmp_path / "silent.mp4", media.noise(10))
    with pytest.raises(NoAudioTrack, match="no audio track"):
        list(iter_audio(path, 24000))


def test_audio_windows_decode_only_what_they_need(media, tmp_path):
    path = media.write_video(tmp_path / "v.mp4", media.noise(50), fps=10, audio_seconds=5.0)
    whole = np.concatenate(list(iter_audio(path, 24000)))
    samples, covered = read_audio_window(path, 2.0, 1.0, 24000)
    assert covered == pytest.approx(3.0)
    assert np.abs(samples - whole[48000:72000]).max() < 0.02  # the same samples (AAC frame alignment aside)
    tail, covered = read_audio_window(path, 4.5, 1.0, 24000)
    assert covered == pytest.approx(len(whole) / 24000, abs=0.05) and not tail[-1000:].any()
    windows = AudioWindows(path, 24000)
    for start in (0.0, 1.0, 2.0, 4.5):
        a, covered_a = windows.window(start, 1.0)
        b, covered_b = read_audio_window(path, start, 1.0, 24000)
        assert covered_a == pytest.approx(covered_b, abs=0.05) and np.abs(a - b).max() < 0.02
    assert len(windows._buffer) <= 2 * 24000  # about one window is held
