"""The Recognizer builds the training dataset's inputs by itself: one frame recipe, one coverage rule.

Tiny videos with a 2018-style id (``P01_01``) and a 2020-style one (``P01_101``) at 24, 50 and
59.94 fps are prepared with :func:`karmma.data.prepare.prepare`; a random-weight student is
exported with the recipe of its data; the Recognizer, given only the export and the video file
(no stride, short side or flow method), must build the inputs the training dataset builds for
the same segment. The prepared frames are stored losslessly here (PNG bytes in the ``.jpg``
files, which the readers decode alike): JPEG compression is the one known difference between
the two paths (docs/deploy.md, measured by tests/deploy/test_recognizer.py), and without it
everything else (decoding, resizing, frame numbers, flow pairs and their stride, flow method,
quantisation, crop, scale) must agree to 1e-5. A (16-bit WAV against decoded float samples)
keeps its documented tolerance. A segment the media do not cover is missing the same
modalities on both sides.
"""

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import karmma.data.prepare as prepare_module
from karmma.artifacts import describe_model, save_student
from karmma.data.annotations import EPIC_LABEL_COLUMNS, EPIC_TIMESTAMP_COLUMNS, epic_timestamp
from karmma.data.config import dataset_heads, load_split
from karmma.data.dataset import ClipDataset
from karmma.data.prepare import PrepareSettings, prepare
from karmma.data.recipe import read_recipe
from karmma.data.transforms import finish_inputs
from karmma.data.video import probe_video
from karmma.data.views import segment_frame_range
from karmma.deploy import Recognizer
from karmma.stages import build_stage_model

pytestmark = pytest.mark.e2e  # writes and prepares MP4s at three frame rates under both flow stride rules

VIDEO_IDS = ("P01_01", "P01_101")  # 2018-style (half-rate flow by the EPIC id rule), 2020-style
SEGMENT = (0.25, 1.25)  # seconds, the segment compared in every video
TOLERANCE = 1e-5


def _lossless_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    """``prepare``'s frame writer, losslessly: PNG bytes (``cv2.imdecode`` reads them whatever the name)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    path.write_bytes(cv2.imencode(".png", image)[1].tobytes())


def prepare_lossless(raw: Path, out: Path, settings: PrepareSettings) -> dict:
    """:func:`prepare` in this process (so that the lossless writer is the one used)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepare_module, "_write_jpeg", _lossless_jpeg)
        patch.setattr(prepare_module, "process_pool", lambda workers: ThreadPoolExecutor(1))
        summary = prepare(raw, out, settings, workers=1, progress=False)
    assert summary["prepared"] == len(list(raw.rglob("*.MP4"))) and not summary["failed"], summary
    return summary


def moving_texture(count: int, height: int = 72, width: int = 128, speed: float = 1.5) -> np.ndarray:
    """``[count, H, W, 3]`` uint8: a smooth pattern moving ``speed`` px per frame (flow grows with the stride)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(count):
        shift = speed * i
        frames.append(
            np.stack(
                [
                    128 + 90 * np.sin((x - shift) / 6) * np.cos(y / 9),
                    128 + 90 * np.cos((x - shift + y) / 8),
                    128 + 60 * np.sin((x - shift) / 11 + y / 5),
                ],
                -1,
            ).astype(np.uint8)
        )
    return np.stack(frames)


def write_epic_set(media, raw: Path, fps, seconds: float, segments: dict[str, tuple[float, float]], audio=None):
    """Videos ``raw/P01/videos/<id>.MP4`` and EPIC-format annotations with one validation segment per
    entry of ``segments`` (``{narration id: (start, stop)}``, each in the video its id starts with)."""
    rate = float(fps)
    videos = {narration.rsplit("_", 1)[0] for narration in segments}
    for video_id in videos:
        path = raw / "P01" / "videos" / f"{video_id}.MP4"
        path.parent.mkdir(parents=True, exist_ok=True)
        media.write_video(path, moving_texture(round(seconds * rate)), fps=fps, audio_seconds=audio or seconds)
    annotations = raw / "annotations"
    annotations.mkdir(exist_ok=True)
    for head in ("verb", "noun"):
        (annotations / f"EPIC_100_{head}_classes.csv").write_text(
            "id,key,instances,category\n0,a,['a'],x\n1,b,['b'],x\n"
        )
    with (annotations / "EPIC_100_validation.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*EPIC_TIMESTAMP_COLUMNS, *EPIC_LABEL_COLUMNS])
        for narration, (start, stop) in segments.items():
            video_id = narration.rsplit("_", 1)[0]
            # the frame numbers karmma predict takes for --start/--end (the EPIC convention), at the rate it reads
            first, last = segment_frame_range(start, stop, probe_video(raw / "P01" / "videos" / f"{video_id}.MP4").rate)
            stamps = [epic_timestamp(t) for t in (start, start, stop)]
            writer.writerow([narration, "P01", video_id, *stamps, first, last, "a a", "a", 0, "a", 0, "['a']", "[0]"])


@pytest.fixture(scope="module")
def export(make_student_config):
    """``export(root, out)``: a tiny V/F/A student with random weights (the 2 verbs and 2 nouns written
    above), as trained on ``root``: its export carries the recipe of ``root``'s frames."""
    torch.manual_seed(0)
    model = build_stage_model(make_student_config(Path()), {"verb": 2, "noun": 2}).eval()

    def write(root: Path, out: Path) -> Path:
        config = make_student_config(root)
        return save_student(model, describe_model(model, asdict(config), dataset_heads(config.data)), out)

    return write


def dataset_items(root: Path, recognizer: Recognizer) -> dict[str, dict]:
    """The evaluation (centre-view) items of the validation split, by narration id."""
    config = recognizer.info.train_config()
    dataset = ClipDataset(load_split(config.data, "validation"), recognizer.info.input_shapes, False, config.clip)
    return {dataset[i]["id"]: dataset[i] for i in range(len(dataset))}


def differences(inputs: dict, item: dict) -> dict[str, tuple[float, float]]:
    """``{key: (largest, mean absolute difference)}`` between the Recognizer's inputs and a dataset item's."""
    expected = finish_inputs(item)
    assert sorted(inputs) == sorted(expected)  # the same modalities present on both sides
    return {
        k: (float(np.abs(inputs[k] - expected[k].numpy()).max()), float(np.abs(inputs[k] - expected[k].numpy()).mean()))
        for k in inputs
    }


@pytest.fixture(scope="module", params=["epic-id", "fps"])
def rule(request) -> str:
    return request.param


# frames between the two frames of a flow pair, by rule, video id and frame rate
EXPECTED_STRIDES = {
    "epic-id": {"P01_01": {24: 2, 50: 2, 59.94: 2}, "P01_101": {24: 1, 50: 1, 59.94: 1}},
    "fps": {"P01_01": {24: 1, 50: 2, 59.94: 2}, "P01_101": {24: 1, 50: 2, 59.94: 2}},
}


@pytest.mark.parametrize("fps", [24, 50, 59.94])
def test_the_recognizer_builds_the_training_inputs_by_itself(media, export, rule, fps, tmp_path):
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    rate = Fraction(60000, 1001) if fps == 59.94 else fps
    write_epic_set(media, raw, rate, 1.6, {f"{v}_0": SEGMENT for v in VIDEO_IDS})
    settings = PrepareSettings(flow="dis", short_side=48, flow_stride=rule)
    summary = prepare_lossless(raw, prepared, settings)
    assert read_recipe(prepared) == settings  # recorded in the markers
    exported = export(prepared, tmp_path / "student.safetensors")
    recognizer = Recognizer.load(exported)
    assert recognizer.info.preparation == settings  # carried by the export
    items = dataset_items(prepared, recognizer)
    for video_id in VIDEO_IDS:
        stride = EXPECTED_STRIDES[rule][video_id][fps]
        video = raw / "P01" / "videos" / f"{video_id}.MP4"
        marker = json.loads((prepared / ".prepared" / f"{video_id}.json").read_text())
        assert marker["summary"]["flow_stride"] == stride, summary
        inputs, report = recognizer.file_inputs(video, start=SEGMENT[0], end=SEGMENT[1])  # no stride given
        difference = differences(inputs, items[f"{video_id}_0"])
        assert difference["V"][0] < TOLERANCE and difference["F"][0] < TOLERANCE, (video_id, stride, difference)
        assert difference["A"][1] < 0.005, difference  # 16-bit WAV quantisation only
        assert report.flow_stride == stride

        # another stride is refused, and would have shown: its flow is not the training flow
        wrong = 3 - stride
        with pytest.raises(ValueError, match=rf"flow stride {wrong} differs from the stride {stride}"):
            Recognizer.load(exported, flow_stride=wrong).file_inputs(video, ["F"], *SEGMENT)
        skewed = skewed_flow(recognizer, video, wrong)
        assert np.abs(skewed - finish_inputs(items[f"{video_id}_0"])["F"].numpy()).max() > 0.2


def skewed_flow(recognizer: Recognizer, video: Path, stride: int) -> np.ndarray:
    """F of :data:`SEGMENT` with flow pairs ``stride`` frames apart, whatever the recipe says."""
    decoded = recognizer.decode(video, need_audio=False)
    first, last = segment_frame_range(*SEGMENT, decoded.rate)
    inputs, _ = recognizer.preprocessor.inputs(decoded.frames, decoded.rate, None, ["F"], first, last, stride=stride)
    return inputs["F"]


def test_a_segment_past_the_media_is_missing_on_both_sides_alike(media, export, tmp_path, capsys):
    """``karmma predict VIDEO --start 1 --end 60`` on a 3 s video: the rule of the dataset
    (:func:`~karmma.data.views.coverage_problem`), never frames cut short on one side only."""
    from karmma.cli import main

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    segments = {"P01_01_0": (1.0, 60.0), "P01_01_1": (1.0, 3.05), "P01_01_2": (0.5, 1.9)}
    write_epic_set(media, raw, 25, 3.0, segments, audio=2.0)  # 3 s of video, 2 s of audio
    prepare_lossless(raw, prepared, PrepareSettings(flow="dis", short_side=48))
    exported = export(prepared, tmp_path / "student.safetensors")
    recognizer = Recognizer.load(exported)
    items = dataset_items(prepared, recognizer)
    video = raw / "P01" / "videos" / "P01_01.MP4"

    assert "P01_01_0" not in items  # nothing covers 1-60 s: the dataset skips the segment, predict refuses it
    with pytest.raises(ValueError, match=r"V: the video ends at 3\.00 s, before the clip's end at 60\.00 s; F: "):
        recognizer.file_inputs(video, start=1.0, end=60.0)
    assert main(["predict", str(exported), str(video), "--start", "1", "--end", "60"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("karmma predict: error: no modality left to predict from: V: the video ends at 3.00 s")

    # 50 ms past the last frame is within the tolerance: cut at the last frame on both sides; the audio ends at 2 s
    for narration, present in (("P01_01_1", ["V", "F"]), ("P01_01_2", ["V", "F", "A"])):
        inputs, report = recognizer.file_inputs(video, start=segments[narration][0], end=segments[narration][1])
        assert sorted(inputs) == sorted(items[narration]["inputs"]) == sorted(present), narration
        difference = differences(inputs, items[narration])
        assert difference["V"][0] < TOLERANCE and difference["F"][0] < TOLERANCE, (narration, difference)
        assert ("ends at 2.0" in report.missing.get("A", "")) == ("A" not in present), report.missing
    prediction = recognizer.predict_file(video, start=1.0, end=3.05)
    assert prediction.segment == (1.0, 3.05) and "A not used (the audio ends at 2.0" in prediction.format_table()
