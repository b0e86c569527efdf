import wave

import numpy as np
import pytest
import torch

from karmma.data.media import MediaError, decode_audio_track, decode_flow, encode_flow, read_audio, read_image


def _wav(path, samples, rate=24000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((samples * 32767).astype("<i2").tobytes())


def test_wav_window_is_cropped_and_zero_padded(tmp_path):
    samples = np.linspace(-0.5, 0.5, 24000).astype(np.float32)
    _wav(tmp_path / "a.wav", samples)
    inside = read_audio(tmp_path / "a.wav", 0.25, 0.5, 24000)
    assert inside.shape == (12000,)
    assert inside[0] == pytest.approx(samples[6000], abs=1e-4)
    before = read_audio(tmp_path / "a.wav", -0.5, 1.0, 24000)
    assert (before[:12000] == 0).all() and before[12000] == pytest.approx(samples[0], abs=1e-4)
    after = read_audio(tmp_path / "a.wav", 0.75, 0.5, 24000)
    assert (after[6000:] == 0).all() and after[0] == pytest.approx(samples[18000], abs=1e-4)


def test_wav_errors_name_the_file(tmp_path):
    _wav(tmp_path / "slow.wav", np.zeros(100, np.float32), rate=16000)
    with pytest.raises(MediaError, match="slow.wav: sample rate 16000"):
        read_audio(tmp_path / "slow.wav", 0, 1, 24000)
    with pytest.raises(MediaError, match="missing.wav: file not found"):
        read_audio(tmp_path / "missing.wav", 0, 1, 24000)
    _wav(tmp_path / "cut.wav", np.zeros(24000, np.float32))
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:-20000])
    with pytest.raises(MediaError, match="cut.wav: truncated"):
        read_audio(tmp_path / "cut.wav", 0, 1, 24000)


def test_hdf5_audio(tmp_path):
    import h5py

    with h5py.File(tmp_path / "audio.hdf5", "w") as f:
        f.create_dataset("P01_01", data=np.arange(48000, dtype=np.float32) / 48000)
    out = read_audio(tmp_path / "audio.hdf5", 1.0, 0.5, 24000, dataset="P01_01")
    assert out[0] == pytest.approx(0.5)
    with pytest.raises(MediaError, match="no audio dataset 'P02_01'"):
        read_audio(tmp_path / "audio.hdf5", 0, 1, 24000, dataset="P02_01")


def test_video_without_audio_track(tmp_path):
    from karmma.data.synth import write_mp4

    write_mp4(tmp_path / "silent.mp4", np.zeros((4, 32, 32, 3), np.uint8), 24, audio=None)
    with pytest.raises(MediaError, match="silent.mp4: no audio track"):
        decode_audio_track(tmp_path / "silent.mp4", 24000)


def test_flow_quantisation_round_trip():
    flow = np.random.uniform(-25, 25, size=(6, 7, 2)).astype(np.float32)
    u, v = encode_flow(flow)
    decoded = decode_flow(u, v).permute(1, 2, 0).numpy()
    assert np.abs(decoded - np.clip(flow, -20, 20)).max() <= 40 / 255 / 2 + 1e-5


def test_truncated_image(tmp_path):
    from PIL import Image

    Image.fromarray(np.random.randint(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "f.jpg")
    data = (tmp_path / "f.jpg").read_bytes()
    (tmp_path / "f.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="f.jpg: unreadable image"):
        read_image(tmp_path / "f.jpg")


def test_jpeg_with_corrupt_scan_data_is_unreadable_and_nothing_goes_raw_to_stderr(tmp_path, media, capfd):
    import cv2

    cv2.imwrite(str(tmp_path / "f.jpg"), media.noise(1, 64, 80)[0])
    assert read_image(tmp_path / "f.jpg").shape == (64, 80, 3)
    media.corrupt_jpeg_scan(tmp_path / "f.jpg")
    for mode in ("RGB", "L"):
        with pytest.raises(MediaError, match=r"f.jpg: corrupt image data \(Corrupt JPEG data: .*\)"):
            read_image(tmp_path / "f.jpg", mode)
    assert capfd.readouterr().err == ""


def test_each_distinct_frame_is_decoded_once_and_repeats_are_copied(tmp_path, monkeypatch):
    from PIL import Image

    from karmma.data import media

    paths = []
    for i in range(3):
        Image.fromarray(np.full((6, 10, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    calls = []
    real = media.read_image
    monkeypatch.setattr(media, "read_image", lambda path, mode="RGB": calls.append(path) or real(path, mode))
    frames = media.read_rgb_frames([paths[0], paths[0], paths[2], paths[0]])
    assert sorted(calls) == [paths[0], paths[2]]
    assert frames.shape == (4, 3, 6, 10) and frames.is_contiguous(memory_format=torch.channels_last)
    assert frames[:, 0, 0, 0].tolist() == [0, 0, 80, 0]


def test_quantised_flow_keeps_u_and_v_apart_and_names_a_frame_of_another_size(tmp_path):
    from PIL import Image

    from karmma.data.media import read_quantised_flow

    for name, value, size in (("u1", 10, (8, 6)), ("v1", 200, (8, 6)), ("v2", 200, (9, 6))):
        Image.fromarray(np.full(size[::-1], value, np.uint8)).save(tmp_path / f"{name}.png")
    flow = read_quantised_flow([tmp_path / "u1.png"], [tmp_path / "v1.png"])
    assert flow.shape == (1, 2, 6, 8) and flow.dtype == torch.uint8
    assert flow[0, 0].unique().tolist() == [10] and flow[0, 1].unique().tolist() == [200]
    with pytest.raises(MediaError, match="v2.png: 9x6 pixels, unlike the clip's other frames"):
        read_quantised_flow([tmp_path / "u1.png"], [tmp_path / "v2.png"])
