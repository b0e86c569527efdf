"""The Recognizer API and raw-video pre-processing (inputs built as the training data pipeline builds them)."""

import csv
import dataclasses
import logging

import numpy as np
import pytest
import torch

from karmma.artifacts import load_model
from karmma.data.config import load_split
from karmma.data.dataset import ClipDataset
from karmma.data.recipe import PrepareSettings
from karmma.data.transforms import finish_inputs
from karmma.deploy import Recognizer
from karmma.deploy.stream import SensorFailures


def test_predict_any_subset_of_ready_inputs(student_file):
    recognizer = Recognizer.load(student_file)
    example = {k: v[0] for k, v in recognizer.runner.model.example_inputs(1).items()}
    full = recognizer.predict(video=example["V"], flow=example["F"], audio=example["A"], top_k=3)
    assert full.modalities == ["V", "F", "A"] and not full.missing
    assert len(full.actions) == 3 and set(full.actions[0]) == {"verb", "noun", "probability"}
    assert full.actions[0]["verb"] in recognizer.info.classes["verb"]
    probabilities = [a["probability"] for a in full.actions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < probabilities[0] <= 1
    audio_only = recognizer.predict(audio=example["A"][None])  # a leading batch of 1 is accepted
    assert audio_only.modalities == ["A"] and audio_only.missing == {"V": "not given", "F": "not given"}
    with torch.no_grad():
        mask = torch.tensor([[False, False, True]])
        logits = recognizer.runner.model({"A": example["A"][None]}, mask).logits
    best_noun = recognizer.info.classes["noun"][int(logits["noun"].argmax())]
    assert audio_only.heads["noun"][0][0] == best_noun


def test_predict_refuses_nothing_and_unknown_modalities(student_file):
    recognizer = Recognizer.load(student_file)
    with pytest.raises(ValueError, match="no modality given"):
        recognizer.predict()
    with pytest.raises(ValueError, match="not trained on modality D"):
        recognizer.predict(boxes=torch.zeros(8, 4, 6))
    with pytest.raises(ValueError, match=r"V \(RGB video\): got shape \[3, 4\]"):
        recognizer.predict(video=np.zeros((3, 4)))


def test_predict_raw_frames_and_waveform(student_file):
    recognizer = Recognizer.load(student_file)
    frames = np.random.default_rng(0).integers(0, 255, (20, 96, 128, 3), dtype=np.uint8)
    waveform = np.random.default_rng(1).standard_normal(24000 * 3).astype(np.float32) * 0.1
    prediction = recognizer.predict(video=frames, audio=waveform)
    assert prediction.modalities == ["V", "A"] and {"rgb", "spectrogram", "model"} <= set(prediction.timings_ms)


def _validation_rows(raw):
    with (raw / "annotations" / "EPIC_100_validation.csv").open() as f:
        return list(csv.DictReader(f))


def test_video_inputs_match_the_training_pipeline(synth_videos, student_file):
    """Recognizer inputs from the MP4 vs ClipDataset inputs from the prepared frames, flow JPEGs and WAV."""
    raw, prepared = synth_videos
    recognizer = Recognizer.load(student_file)
    config = recognizer.info.train_config()
    dataset = ClipDataset(
        load_split(config.data, "validation"), recognizer.info.input_shapes, train=False, config=config.clip
    )
    rows = _validation_rows(raw)
    assert len(dataset) == len(rows) == 3
    for sample, item, row in zip(dataset.samples, dataset, rows):
        video = recognizer.decode(next(raw.rglob(f"{row['video_id']}.MP4")))
        assert video.flow_stride == sample.sources["F"].stride  # as the prepared flow was computed
        inputs, _ = recognizer.preprocessor.inputs(
            video.frames,
            video.rate,
            video.audio,
            [k for k in "VFA" if k in item["inputs"]],
            int(row["start_frame"]),
            int(row["stop_frame"]),
            stride=video.flow_stride,  # the recognizer's own, from the model's recipe and the video
            times=(float(row["start_timestamp"][-5:]), float(row["stop_timestamp"][-5:])),
        )
        for key, expected in finish_inputs(item).items():
            difference = (torch.from_numpy(inputs[key]) - expected).abs()  # NumPy inputs (no torch in deployment)
            # differences come from JPEG compression (RGB, flow) and 16-bit WAV quantisation (audio) only
            assert difference.mean() < {"V": 0.06, "F": 0.02, "A": 0.005}[key], (key, float(difference.mean()))
            if key == "V":  # an unrelated frame is far away
                assert (torch.from_numpy(inputs[key]) - expected.roll(1, dims=0)).abs().mean() > 2.5 * difference.mean()


def test_the_flow_stride_follows_the_recorded_recipe_and_overrides_must_agree(synth_videos, student_file, tmp_path):
    raw, _ = synth_videos
    path = next(p for p in raw.rglob("*.MP4") if len(p.stem) == 6)  # a 2018-style EPIC name (P01_01)
    renamed = tmp_path / "my clip.mp4"
    renamed.write_bytes(path.read_bytes())
    recognizer = Recognizer.load(student_file)
    assert recognizer.info.preparation == PrepareSettings(flow="dis", short_side=64, flow_stride="epic-id")
    # the id rule, evaluated on the file's name as karmma prepare evaluated it on the video id
    assert recognizer.decode(path).flow_stride == 2 and recognizer.decode(renamed).flow_stride == 1
    assert recognizer.predict_file(path, end=2.0).flow_stride == 2
    assert Recognizer.load(student_file, flow_stride=2, flow="dis").decode(path).flow_stride == 2  # agreeing
    with pytest.raises(
        ValueError, match=r"flow stride 1 differs from the stride 2 the model's frame recipe gives P0\d_01 at 24 fps"
    ):
        Recognizer.load(student_file, flow_stride=1).decode(path)
    with pytest.raises(ValueError, match=r"flow tvl1 differs from the flow dis of .*student.safetensors's training"):
        Recognizer.load(student_file, flow="tvl1")
    with pytest.raises(ValueError, match=r"short side 128 differs from the short side 64"):
        Recognizer.load(student_file, short_side=128)


def test_a_model_without_a_recorded_recipe_warns_and_takes_the_arguments(student_file, synth_videos, caplog):
    from karmma.deploy.runtime import TorchRunner

    raw, _ = synth_videos
    path = next(p for p in raw.rglob("*.MP4") if len(p.stem) == 6)
    model, info = load_model(student_file)
    old = dataclasses.replace(info, preparation=None)  # exported before recipes were recorded
    with caplog.at_level(logging.WARNING, logger="karmma.deploy"):
        recognizer = Recognizer(TorchRunner(model, old))
    assert "records no frame recipe" in caplog.text and "flow stride from the frame rate" in caplog.text
    assert recognizer.decode(path).flow_stride == 1  # 24 fps: pairs about 1/30 s apart
    assert Recognizer(TorchRunner(model, old), flow_stride=2, short_side=64).decode(path).flow_stride == 2


def test_sensor_failures_are_seeded_stretches():
    failures = SensorFailures(["V", "F", "A"], rate=0.3, mean_seconds=2.0, seed=7)
    times = np.arange(0, 600, 0.5)
    down = {k: np.array([failures.failed(k, t) for t in times]) for k in "VFA"}
    for key, series in down.items():
        assert 0.15 < series.mean() < 0.45, key
        assert np.count_nonzero(np.diff(series.astype(int)) == 1) < len(times) / 4  # stretches, not flicker
    again = SensorFailures(["V", "F", "A"], rate=0.3, mean_seconds=2.0, seed=7)
    assert [again.failed("V", t) for t in times] == down["V"].tolist()
    always = SensorFailures(["V", "F"], rate=0.99, mean_seconds=100.0, seed=0)
    assert all(len(always.dropped(["V", "F"], t)) <= 1 for t in range(50))


def test_file_prediction_decodes_only_the_segment_and_matches_a_full_decode(synth_videos, student_file):
    """predict_file seeks to --start and keeps only the frames it reads: same inputs as decoding everything."""
    raw, _ = synth_videos
    path = next(raw.rglob("*.MP4"))
    recognizer = Recognizer.load(student_file)
    for start, end in ((2.0, 3.5), (None, None), (4.0, None)):
        sparse = recognizer.decode_segment(path, start, end, need_audio=True)
        assert len(sparse.frames.kept) <= 4 * recognizer.preprocessor.num_frames + 1
        fast = recognizer.predict_file(path, start=start, end=end)
        full = recognizer.predict_decoded(recognizer.decode(path), recognizer.file_modalities(None), start, end)
        assert fast.modalities == full.modalities == ["V", "F", "A"]
        for head in fast.heads:
            assert [p for _, p in fast.heads[head]] == pytest.approx([p for _, p in full.heads[head]], abs=2e-3)


def test_audio_not_covering_the_segment_is_missing_in_predict(media, student_file, tmp_path):
    recognizer = Recognizer.load(student_file)
    short = media.write_video(tmp_path / "short_audio.mp4", media.noise(50, 96, 128), fps=25, audio_seconds=0.01)
    prediction = recognizer.predict_file(short)
    assert (
        prediction.modalities == ["V", "F"]
        and "audio" in prediction.missing["A"]
        and "ends at" in prediction.missing["A"]
    )
    covered = recognizer.predict_file(short, end=0.04)  # no: even the first 40 ms are not covered by 10 ms of audio
    assert "A" in covered.missing
    half = media.write_video(tmp_path / "half_audio.mp4", media.noise(100, 96, 128), fps=25, audio_seconds=2.0)
    assert "A" not in recognizer.predict_file(half, start=0.5, end=1.5).missing
    assert "ends at" in recognizer.predict_file(half, start=2.5, end=3.5).missing["A"]


def test_stream_windows_past_the_audio_are_without_a(media, student_file, tmp_path):
    from karmma.deploy.stream import stream_predictions

    recognizer = Recognizer.load(student_file)
    path = media.write_video(tmp_path / "half_audio.mp4", media.noise(100, 96, 128), fps=25, audio_seconds=2.0)
    windows = list(stream_predictions(recognizer, str(path), window=1.0, hop=1.0))
    assert [w.start for w in windows] == [0.0, 1.0, 2.0, 3.0]
    assert ["A" in w.prediction.modalities for w in windows] == [True, True, False, False]
    assert "ends at" in windows[-1].prediction.missing["A"]
