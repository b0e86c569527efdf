import random

from karmma.data.sampling import audio_centre, segment_frame_numbers


def test_train_sampling_stays_in_each_part():
    rng = random.Random(0)
    for _ in range(100):
        numbers = segment_frame_numbers(11, 50, 8, train=True, rng=rng)
        assert len(numbers) == 8 and numbers == sorted(numbers)
        for i, n in enumerate(numbers):
            assert 11 + i * 5 <= n < 11 + (i + 1) * 5


def test_eval_sampling_is_centred_and_views_spread():
    assert segment_frame_numbers(1, 80, 8, train=False) == [
        6 + 10 * i for i in range(8)
    ]  # middle of each 10-frame part
    views = [segment_frame_numbers(1, 80, 4, train=False, view=v, num_views=2) for v in range(2)]
    assert views[0] != views[1] and all(1 <= n <= 80 for v in views for n in v)


def test_short_segments_repeat_frames():
    assert segment_frame_numbers(7, 8, 4, train=False) == [7, 7, 8, 8]


def test_audio_centre():
    assert audio_centre(2.0, 4.0, train=False) == 3.0
    assert 2.0 <= audio_centre(2.0, 4.0, train=True, rng=random.Random(1)) <= 4.0
