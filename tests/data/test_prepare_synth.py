import json
import shutil

import pytest

from karmma.data.prepare import PrepareSettings, prepare
from karmma.data.synth import SynthSize, synthesize

pytestmark = pytest.mark.e2e  # synthesises and prepares MP4 sets

TINY = SynthSize(participants=1, validation_participants=0, videos_per_participant=2, actions_per_video=2)


def test_synth_is_seeded(tmp_path):
    synthesize(tmp_path / "a", seed=5, size=TINY, progress=False)
    synthesize(tmp_path / "b", seed=5, size=TINY, progress=False)
    synthesize(tmp_path / "c", seed=6, size=TINY, progress=False)
    csv = "annotations/EPIC_100_train.csv"
    assert (tmp_path / "a" / csv).read_text() == (tmp_path / "b" / csv).read_text()
    assert (tmp_path / "a" / csv).read_text() != (tmp_path / "c" / csv).read_text()


def test_prepare_layout_flow_rule_and_resume(tmp_path):
    synthesize(tmp_path / "raw", seed=1, size=TINY, progress=False)
    settings = PrepareSettings(flow="dis", short_side=48)
    first = prepare(tmp_path / "raw", tmp_path / "out", settings, workers=1, progress=False)
    assert first["prepared"] == 2 and first["dominant_step"] in first["step_seconds"]
    out = tmp_path / "out"
    rgb_2018 = len(list((out / "P01" / "rgb_frames" / "P01_01").glob("*.jpg")))
    flow_2018 = len(list((out / "P01" / "flow_frames" / "P01_01" / "u").glob("*.jpg")))
    rgb_2020 = len(list((out / "P01" / "rgb_frames" / "P01_102").glob("*.jpg")))
    flow_2020 = len(list((out / "P01" / "flow_frames" / "P01_102" / "u").glob("*.jpg")))
    assert flow_2018 == (rgb_2018 - 1) // 2  # half-rate flow for 2018-style ids
    assert flow_2020 == rgb_2020 - 1
    # the marker records the recipe and the stride it gave each video
    markers = {v: json.loads((out / ".prepared" / f"{v}.json").read_text()) for v in ("P01_01", "P01_102")}
    assert all(m["settings"] == settings.to_record() for m in markers.values())
    assert [m["summary"]["flow_stride"] for m in markers.values()] == [2, 1]
    # a re-run skips finished videos, also those marked before the stride rule was recorded (the same recipe)
    older = {k: markers["P01_102"]["settings"][k] for k in ("flow", "fps", "short_side")} | {"jpeg_quality": 90}
    (out / ".prepared" / "P01_102.json").write_text(json.dumps({**markers["P01_102"], "settings": older}))
    again = prepare(tmp_path / "raw", out, settings, workers=1, progress=False)
    assert again["skipped"] == 2 and again["prepared"] == 0
    # a half-written video (no marker, leftover partial folder) is redone
    (out / ".prepared" / "P01_01.json").unlink()
    shutil.rmtree(out / "P01" / "flow_frames" / "P01_01")
    (out / "P01" / "rgb_frames" / "P01_01.partial").mkdir()
    third = prepare(tmp_path / "raw", out, settings, workers=1, progress=False)
    assert third["prepared"] == 1 and third["skipped"] == 1
    assert not (out / "P01" / "rgb_frames" / "P01_01.partial").exists()
    assert len(list((out / "P01" / "flow_frames" / "P01_01" / "u").glob("*.jpg"))) == flow_2018


def test_prepare_with_fps_rewrites_frame_numbers(tmp_path):
    synthesize(tmp_path / "raw", seed=2, size=TINY, progress=False)
    prepare(
        tmp_path / "raw",
        tmp_path / "out",
        PrepareSettings(flow="dis", short_side=32, fps=12),
        workers=1,
        progress=False,
    )
    from karmma.data.annotations import read_epic_segments
    from karmma.data.epic import read_video_info

    segments = read_epic_segments(tmp_path / "out" / "annotations" / "EPIC_100_train.csv")
    info = read_video_info(tmp_path / "out" / "annotations" / "EPIC_100_video_info.csv")
    for s in segments:
        assert info[s.video_id][1] == 12
        assert s.start_frame == int(s.start_time * 12) + 1
        frames = len(list((tmp_path / "out" / "P01" / "rgb_frames" / s.video_id).glob("*.jpg")))
        assert s.stop_frame <= frames + 1


def test_prepare_with_fps_names_the_line_and_column_of_a_bad_timestamp(tmp_path):
    import pytest

    from karmma.data.annotations import AnnotationError
    from karmma.data.prepare import copy_annotations

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "EPIC_100_train.csv").write_text(
        "narration_id,start_timestamp,stop_timestamp,start_frame,stop_frame\n"
        "P01_01_0,00:00:01.00,00:00:02.00,1,50\nP01_01_1,00:00:inf,00:00:04.00,60,90\n"
    )
    with pytest.raises(AnnotationError, match=r"EPIC_100_train.csv:3: start_timestamp '00:00:inf' is not a timestamp"):
        copy_annotations(tmp_path / "raw", tmp_path / "out", PrepareSettings(fps=12), [])


def test_prepare_vfr_rotated_and_truncated_videos(media, tmp_path):
    """VFR frames are placed by time, phone video comes out upright, a truncated file fails
    (with its reason) instead of passing as a shorter video, and nothing half-written stays."""
    import numpy as np
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    times = media.write_vfr_video(src / "vfr.mp4", [10] * 40 + [40] * 20)
    portrait = np.zeros((96, 64, 3), np.uint8)
    portrait[:48] = 255
    media.write_video(src / "phone.mp4", np.stack([np.rot90(portrait, -1)] * 10), rotation=90, audio_seconds=0.4)
    full = media.write_video(tmp_path / "full.mp4", media.noise(100), audio_seconds=4.0)
    media.cut_at_packet(full, src / "cut.mp4")
    out = tmp_path / "out"
    summary = prepare(src, out, PrepareSettings(flow="dis", fps=25.0, short_side=48), workers=1, progress=False)
    assert summary["prepared"] == 2 and list(summary["failed"]) == ["cut"]
    assert "truncated" in summary["failed"]["cut"]
    assert not (out / "rgb_frames" / "cut").exists() and not list(out.rglob("*.partial"))

    frames = sorted((out / "rgb_frames" / "vfr").glob("*.jpg"))
    for number, path in enumerate(frames, start=1):
        shown = media.shown_ms(np.asarray(Image.open(path).convert("L"), dtype=float), times) / 1000
        assert abs(shown - (number - 1) / 25.0) < 1 / 25.0, (number, shown)

    upright = np.asarray(Image.open(out / "rgb_frames" / "phone" / "frame_0000000001.jpg"))
    assert upright.shape[:2] == (72, 48)  # portrait, short side 48
    assert upright[:30].mean() > 200 and upright[42:].mean() < 50
    info = (out / "video_info.csv").read_text()
    assert "phone," in info and "64x96" in info  # the upright source size


def test_participants_split_into_train_validation_and_test(tmp_path):
    import csv

    from karmma.data.synth import participant_splits, synthesize

    size = SynthSize(
        participants=4, validation_participants=1, test_participants=2, videos_per_participant=1, actions_per_video=2
    )
    assert participant_splits(size) == {"P01": "train", "P02": "validation", "P03": "test", "P04": "test"}
    synthesize(tmp_path, seed=0, size=size, workers=1, progress=False)
    seen = {}
    for split in ("train", "validation", "test"):
        with (tmp_path / "annotations" / f"EPIC_100_{split}.csv").open() as f:
            rows = list(csv.DictReader(f))
        seen[split] = {r["participant_id"] for r in rows}
        assert rows and all(r["verb_class"] and r["noun_class"] for r in rows)  # the test split is labelled
    assert seen == {"train": {"P01"}, "validation": {"P02"}, "test": {"P03", "P04"}}
