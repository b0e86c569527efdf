"""The live session: timestamped frames, audio and boxes in any order, gaps as missing modalities."""

import numpy as np
import pytest

from karmma.deploy.session import KEEP_EXTRA

FPS = 30


def _scene(count: int, seed: int = 0) -> np.ndarray:
    """``count`` RGB frames 96 x 128 of a bright square moving over fixed noise (so flow sees motion)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, (96, 128, 3), dtype=np.uint8)
    frames = np.repeat(background[None], count, axis=0)
    for i in range(count):
        x = 10 + (2 * i) % 90
        frames[i, 30:60, x : x + 24] = 230
    return frames


def _tone_at(t: np.ndarray) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)


def _tone(seconds: float, rate: int) -> np.ndarray:
    return _tone_at(np.arange(round(seconds * rate)) / rate)


def _probabilities(window) -> dict:
    return {h: [p for _, p in top] for h, top in window.prediction.heads.items()}


def test_jittered_timestamps_give_the_prediction_of_evenly_spaced_frames(recognizer):
    """Frames placed by timestamp: +-20 % jitter of the frame interval, and pushes out of order, change
    nothing; the frame rate is measured from the stamps (no fps given)."""
    seconds = 8
    frames = _scene(seconds * FPS)
    audio = _tone(seconds, 16000)
    even = np.arange(len(frames)) / FPS
    jittered = even + np.random.default_rng(1).uniform(-0.2, 0.2, len(frames)) / FPS
    blocks = np.split(np.arange(len(frames)), seconds * 3)  # 1/3 s each, pushed in turn with their audio
    shuffled = [np.random.default_rng(i).permutation(block) for i, block in enumerate(blocks)]
    runs = {}
    for name, times, order in (
        ("even", even, blocks),
        ("jittered", jittered, blocks),
        ("shuffled", jittered, shuffled),
    ):
        session = recognizer.session(window=2.0, hop=0.5)
        runs[name] = []
        for block in order:
            for i in block:
                session.push_frame(times[i], frames[i])
            first = min(block) * 16000 // FPS
            session.push_audio(first / 16000, audio[first : (max(block) + 1) * 16000 // FPS], 16000)
            runs[name] += session.poll(max(block) / FPS - 0.3)
        assert all(w.modalities == ["V", "F", "A"] for w in runs[name])
        runs[name] = {w.end: w for w in runs[name]}  # windows end at multiples of the hop: 2.0 or 2.5, ... 7.5
        assert sorted(runs[name]) == list(np.arange(2.0 if times[0] <= 0 else 2.5, 7.6, 0.5))
    assert runs["even"][2.0].prediction.heads != runs["even"][4.0].prediction.heads  # the content moves
    for name in ("jittered", "shuffled"):
        for end, window in runs[name].items():
            assert window.start == pytest.approx(runs["even"][end].start, abs=0.01)
            assert _probabilities(window) == _probabilities(runs["even"][end]), (name, end)


def test_a_silent_sensor_is_missing_for_the_windows_it_leaves_uncovered(recognizer):
    session = recognizer.session(window=2.0, hop=0.5)
    frames, audio = _scene(12 * FPS), _tone(12, 24000)
    camera_off, microphone_off = (4.1, 6.1), (5.1, 9.1)
    windows = []
    for i, image in enumerate(frames):  # live: audio chunks of 0.1 s between the frames, a poll after each
        if not camera_off[0] <= i / FPS < camera_off[1]:
            session.push_frame(i / FPS, image)
        if i % 3 == 0 and not microphone_off[0] <= i / FPS < microphone_off[1]:
            session.push_audio(i / FPS, audio[i * 800 : i * 800 + 2400], 24000)
        windows += session.poll(i / FPS - 0.3)
    assert [w.end for w in windows] == list(np.arange(2.0, 11.6, 0.5))
    for w in windows:
        camera = max(0.0, min(w.end, camera_off[1]) - max(w.start, camera_off[0]))  # seconds of the window it was off
        microphone = max(0.0, min(w.end, microphone_off[1]) - max(w.start, microphone_off[0]))
        assert min(abs(camera - 0.25), abs(microphone - 0.25)) > 0.05  # no window near the tolerance
        expected = [k for k, off in (("V", camera), ("F", camera), ("A", microphone)) if off < 0.25]
        assert w.modalities == expected, (w.start, w.end)
        if not expected:
            assert w.prediction is None and w.to_dict()["actions"] == [] and "no prediction" in w.format_line()
            assert w.missing == {k: w.missing[k] for k in "VFA"} and "no frames for" in w.missing["V"]
    assert any(not w.modalities for w in windows)


def test_buffers_stay_bounded_and_restarts_are_survived(recognizer):
    session = recognizer.session(window=2.0, hop=1.0)
    image = _scene(1)[0]
    chunk = (_tone(0.1, 16000) * 32767).astype(np.int16)  # integer PCM is accepted
    sizes = []
    for minute in range(4):
        for i in range(60 * FPS):
            t = minute * 60 + i / FPS
            session.push_frame(t, image)
            if i % 3 == 0:
                session.push_audio(t, chunk, 16000)
        sizes.append(session.buffered_bytes())
        windows = session.poll(t)  # those whose messages are still buffered: the last 2
        assert [w.end for w in windows] == [minute * 60 + 58, minute * 60 + 59]
        assert all(w.modalities == ["V", "F", "A"] for w in windows)
    keep = 2.0 + KEEP_EXTRA
    assert len(session.frames) <= keep * FPS + 1 and len(session.audio) <= keep * 10 + 1
    assert max(sizes) <= 1.05 * min(sizes)  # flat: nothing grows with time
    # the camera driver restarts with its clock at 0, then sends another size (twice); the microphone at 48 kHz
    session.push_frame(0.0, image)
    session.push_frame(0.5, np.zeros((120, 200), np.uint8))  # grey, another aspect ratio
    session.push_audio(0.0, _tone(0.1, 48000), 48000)
    for i in range(3 * FPS):
        session.push_frame(i / FPS, image)
        session.push_audio(i / FPS, _tone(1 / FPS, 48000), 48000)
    assert session.restarts == {"frames": 3, "audio": 1, "boxes": 0}
    assert session.predict(2.5).modalities == ["V", "F", "A"]
    windows = session.poll(3.0)  # the clock went back: the windows start again a window after the restart
    assert [w.end for w in windows] == [2.0, 3.0] and all(w.modalities == ["V", "F", "A"] for w in windows)
    with pytest.raises(ValueError, match="finite"):
        session.push_frame(float("nan"), image)
    with pytest.raises(ValueError, match=r"RGB uint8 \[H, W, 3\]"):
        session.push_frame(1.0, np.zeros((4, 4, 3), np.float32))


def test_audio_is_resampled_and_stitched_by_sample_count(recognizer):
    """16 kHz chunks with jittered stamps give the samples a 24 kHz microphone would have recorded."""
    session = recognizer.session(window=2.0)
    audio = _tone(4, 16000)
    stamps = np.arange(40) * 0.1 + np.random.default_rng(0).uniform(-0.01, 0.01, 40)
    for k, t in enumerate(stamps):
        session.push_audio(t, audio[k * 1600 : (k + 1) * 1600], 16000)
    assert len(session.audio) == 40 and session.audio.uncovered(0.5, 3.5) == 0  # no gaps, no overlaps
    samples, offset = session._audio_samples(1.0, 3.0)
    shift = round(stamps[0] * 16000) / 16000  # the stretch is anchored at the first chunk's stamp
    expected = _tone_at(offset - shift + np.arange(len(samples)) / 24000)
    inside = slice(1200, -1200)  # the resampler's edges lie in the 0.05 s margins, outside the spectrogram's 1 s
    assert len(samples) == round((1.0 + 0.1) * 24000) and np.abs(samples - expected)[inside].max() < 1e-4
    assert session.predict(3.0).modalities == ["A"]  # no frames: V and F missing
    assert session.predict(3.0).missing["V"] == "no frames for 2.00 s of the window"


def test_boxes_are_sampled_at_the_frame_times(random_recognizer):
    recognizer = random_recognizer(("V", "F", "D"))
    session = recognizer.session(window=1.0, modalities=["V", "D"])
    frames = _scene(2 * FPS)
    slots = recognizer.info.input_shapes["D"][1]
    for i, image in enumerate(frames):
        session.push_frame(i / FPS, image)
        boxes = np.tile([[0.1, 0.2, 0.3, 0.4, 1.0, 0.0]], (i % 3, 1)) * (1 + i / 100)  # frame i: i % 3 boxes
        session.push_boxes(i / FPS, boxes if i < 45 else np.zeros((0, 6)))
    numbers = recognizer.preprocessor.frame_numbers(31, 60)
    boxes = session._boxes_input([(n - 1) / FPS for n in numbers])
    for row, n in zip(boxes, numbers):
        i = n - 1
        assert (row[:, 4] > 0).sum() == min(i % 3 if i < 45 else 0, slots)
        if i % 3 and i < 45:
            assert row[0, 0] == pytest.approx(0.1 * (1 + i / 100))
    window = session.predict(2.0)
    assert window.modalities == ["V", "D"] and window.missing == {"F": "not requested"}
    assert session.predict(3.0).missing["D"] == "no boxes for 1.00 s of the window"
