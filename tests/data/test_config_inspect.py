import json
import re
import shutil

import pytest
import torch
import yaml

from karmma.cli import main
from karmma.data.annotations import AnnotationError
from karmma.data.config import DatasetConfig, dataset_heads, detect_dataset, load_split
from karmma.data.dataset import ClipDataset, collate_clips
from karmma.data.inspect import inspect_dataset, load_dataset_config
from karmma.data.manifest import read_manifest
from karmma.data.synth_world import NOUN_NAMES, VERB_NAMES

SYNTH_HEADS = {"verb": len(VERB_NAMES), "noun": len(NOUN_NAMES)}


def test_detect_and_load_epic(synth_prepared):
    config = detect_dataset(synth_prepared)
    assert config.format == "epic" and dataset_heads(config) == SYNTH_HEADS
    train, validation = load_split(config, "train"), load_split(config, "validation")
    assert len(train) == 6 and len(validation) == 6
    with pytest.raises(FileNotFoundError, match="test split"):
        load_split(config, "test")


def test_epic_star_uses_official_validation_as_test(synth_prepared):
    config = DatasetConfig(format="epic_star", root=str(synth_prepared), validation_fraction=0.5)
    train, validation, test = (load_split(config, s) for s in ("train", "validation", "test"))
    assert len(train) + len(validation) == 6 and len(validation) == 3
    assert {s.id for s in test} == {s.id for s in load_split(detect_dataset(synth_prepared), "validation")}


def test_inspect_reports_sizes_and_availability(synth_prepared, capsys):
    result = inspect_dataset(detect_dataset(synth_prepared), deep=True, workers=0)
    train = result["splits"]["train"]
    assert train["clips"] == 6 and train["availability"]["modalities"]["V"]["present"] == 6
    assert main(["data", "inspect", str(synth_prepared), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["heads"] == SYNTH_HEADS
    assert printed["classes"]["verb"] == list(VERB_NAMES) and printed["classes"]["noun"] == list(NOUN_NAMES)
    assert main(["data", "inspect", str(synth_prepared)]) == 0
    out = capsys.readouterr().out
    assert "[validation] 6 clips" in out
    verb, count = train["most_common"]["verb"][0]
    assert f"most common {printed['classes']['verb'][verb]} ({count} clips)" in out  # names, not class indices


def test_inspect_from_yaml_and_unknown_key(synth_prepared, tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({"data": {"format": "epic", "root": str(synth_prepared)}}))
    assert load_dataset_config(path).format == "epic"
    path.write_text(yaml.safe_dump({"data": {"format": "epic", "rooot": "x"}}))
    with pytest.raises(ValueError, match=r"data.yaml.data: unknown key\(s\) \['rooot'\]"):
        load_dataset_config(path)
    path.write_text(yaml.safe_dump({"data": {"format": "kinetics", "root": "x"}}))
    with pytest.raises(
        ValueError, match="data.yaml.data.format must be one of epic, epic_star, ssv2, manifest, got 'kinetics'"
    ):
        load_dataset_config(path)


def test_inspect_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path)]) == 2
    assert "does not look like a prepared dataset" in capsys.readouterr().err


def _manifest(synth_prepared, tmp_path, rows):
    root = tmp_path / "robot"
    shutil.copytree(synth_prepared / "P01" / "rgb_frames" / "P01_102", root / "frames" / "c1")
    shutil.copytree(synth_prepared / "P01" / "flow_frames" / "P01_102", root / "flow" / "c1")
    (root / "boxes").mkdir()
    (root / "boxes" / "c1.json").write_text(
        json.dumps({"width": 85, "height": 64, "frames": {str(n): [[1, 2, 30, 40, 0]] for n in range(1, 40)}})
    )
    (root / "train.csv").write_text("clip_id,grasp,V,F,A,D,start,stop,fps\n" + rows)
    return root


def test_manifest_with_any_subset_per_clip(synth_prepared, tmp_path):
    rows = "c1,2,frames/c1,flow/c1,,boxes/c1.json,0.0,1.0,24\nc2,0,,flow/c1,,,,,24\nc3,1,frames/c1,,audio/none.wav,,0.5,1.5,24\n"
    root = _manifest(synth_prepared, tmp_path, rows)
    samples, heads = read_manifest(root / "train.csv")
    assert heads == ["grasp"] and [s.labels["grasp"] for s in samples] == [2, 0, 1]
    assert set(samples[0].sources) == {"V", "F", "D"} and set(samples[1].sources) == {"F"}
    shapes = {"V": (4, 3, 32, 32), "F": (4, 2, 32, 32), "A": (1, 64, 100), "D": (4, 4, 6)}
    dataset = ClipDataset(samples, shapes, train=True)
    counts = dataset.report.as_dict()["modalities"]
    assert counts["A"] == {"present": 0, "missing": 3, "unreadable": 0}  # the WAV does not exist
    batch = collate_clips([dataset[i] for i in range(3)])
    assert batch["availability"].tolist() == [
        [True, True, False, True],
        [False, True, False, False],
        [True, False, False, False],
    ]
    assert torch.isfinite(batch["inputs"]["D"]).all() and batch["inputs"]["D"][0, :, 0, 4].max() == 1.0
    config = detect_dataset(root)
    assert config.format == "manifest" and dataset_heads(config) == {"grasp": 3}


@pytest.mark.parametrize(
    "rows,message",
    [
        ("c1,x,frames/c1,,,,,,24\n", r"train.csv:2: label grasp='x' is not an integer"),
        (
            "c1,1,frames/c1,,,,,,24\nc1,1,frames/c1,,,,,,24\n",
            r"train.csv:3: duplicated clip_id 'c1' \(first on line 2\)",
        ),
        ("c1,1,frames/c1,,,,2.0,1.0,24\n", r"train.csv:2: stop 1.0 is before start 2.0"),
        ("c1,1,frames/c1,,,,inf,,24\n", r"train.csv:2: column start: 'inf' is not a finite number"),
        ("c1,1,frames/c1,,,,0.0,1.0,nan\n", r"train.csv:2: column fps: 'nan' is not a finite number"),
        ("c1,1,frames/c1,,,,0.0,,0\n", r"train.csv:2: column fps: 0.0 must be > 0"),
        ("c1,1,frames/c1,,,,0.0,1.0,-24\n", r"train.csv:2: column fps: -24.0 must be > 0"),
        ("c1,1,frames/c1,,,,-1.0,1.0,24\n", r"train.csv:2: column start: -1.0 must be >= 0"),
        ("c1,1,frames/c1,,,,x,1.0,24\n", r"train.csv:2: column start: 'x' is not a finite number"),
        ("c1,1,frames/c1,,,,1e308,,24\n", r"train.csv:2: columns start/stop: 1e\+308 s at 24.0 fps is past any frame"),
    ],
)
def test_bad_manifest_rows(synth_prepared, tmp_path, rows, message):
    root = _manifest(synth_prepared, tmp_path, rows)
    with pytest.raises(AnnotationError, match=message):
        read_manifest(root / "train.csv")


@pytest.mark.parametrize(
    "frames,message", [("2.5", "'2.5' is not a whole number of frames"), ("-1", "-1.0 must be >= 0")]
)
def test_bad_frame_count(tmp_path, frames, message):
    (tmp_path / "train.csv").write_text(f"clip_id,grasp,V,frames\nc1,0,frames/c1,{frames}\n")
    with pytest.raises(AnnotationError, match=f"train.csv:2: column frames: {message}"):
        read_manifest(tmp_path / "train.csv")


def test_label_beyond_data_heads_is_refused_and_inspect_reports_it(synth_prepared, tmp_path, capsys):
    root = _manifest(synth_prepared, tmp_path, "c1,2,frames/c1,,,,,,24\nc2,7,frames/c1,,,,,,24\n")
    config = DatasetConfig(format="manifest", root=str(root), annotations=str(root), train="train.csv")
    config.heads = {"grasp": 3}
    message = r"train.csv:3: column grasp: class 7 is outside the head's 3 classes \(0..2, data.heads\)"
    with pytest.raises(AnnotationError, match=message):
        load_split(config, "train")
    assert any(re.search(message, p) for p in inspect_dataset(config, workers=0)["problems"])
    (root / "data.yaml").write_text(yaml.safe_dump({"data": {**vars(config), "root": "."}}))
    assert main(["data", "inspect", str(root / "data.yaml")]) == 0
    problems = capsys.readouterr().out.split("problems:")[1]
    assert re.search(message, problems)
    config.heads = {"grasp": 3, "place": 4}
    with pytest.raises(AnnotationError, match=r"train.csv:1: data.heads names head 'place', not a column"):
        load_split(config, "train")
    with pytest.raises(ValueError, match=r"data.heads.grasp must be >= 1 \(classes of the head\), got 0"):
        DatasetConfig(format="manifest", heads={"grasp": 0})


@pytest.mark.e2e  # synthesises and prepares an SSv2-layout set
def test_ssv2_layout_with_boxes(tmp_path):
    from karmma.data.prepare import PrepareSettings, prepare
    from karmma.data.synth import SynthSize, synthesize_ssv2

    size = SynthSize(participants=2, validation_participants=1, videos_per_participant=1, actions_per_video=2)
    synthesize_ssv2(tmp_path / "raw", seed=0, size=size, progress=False)
    prepare(tmp_path / "raw", tmp_path / "out", PrepareSettings(flow="dis", short_side=48), workers=1, progress=False)
    config = detect_dataset(tmp_path / "out")
    assert config.format == "ssv2" and config.boxes == [f"bounding_box_smthsmth_part{i}.json" for i in range(1, 5)]
    assert dataset_heads(config) == {"action": len(VERB_NAMES)}
    samples = load_split(config, "train")
    assert len(samples) == 2 and set(samples[0].sources) == {"V", "F", "D"}
    dataset = ClipDataset(samples, {"V": (4, 3, 32, 32), "F": (4, 2, 32, 32), "D": (4, 4, 6)}, train=False)
    item = dataset[0]
    assert item["availability"].all()
    boxes = item["inputs"]["D"]
    assert (boxes[..., 4] > 0).any() and boxes[..., :4].min() >= 0 and boxes[..., :4].max() <= 1
    assert set(boxes[..., 5][boxes[..., 4] > 0].tolist()) <= {0.0, 1.0}  # hand and the object


def test_data_benchmark_command(synth_prepared, tmp_path):
    out = tmp_path / "bench.json"
    code = main(
        [
            "benchmark",
            "data",
            str(synth_prepared),
            "--batch-size",
            "2",
            "--batches",
            "2",
            "--steps",
            "1",
            "--workers",
            "0",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    loading, training = result["clips_per_s"]["V+F+A"]["0"], result["train_clips_per_s"]
    assert loading > 0 and training > 0
    assert result["input_bound"] == {"0": loading < training}  # the verdict follows the two measured rates
    assert result["input_shapes"]["V"] == [8, 3, 64, 64] and result["modalities"] == ["V", "F", "A"]


def test_data_benchmark_breakdown_and_bare_decoders(synth_prepared, tmp_path):
    out = tmp_path / "bench.json"
    code = main(
        [
            "benchmark",
            "data",
            str(synth_prepared),
            "--batch-size",
            "2",
            "--batches",
            "1",
            "--steps",
            "0",
            "--workers",
            "0,1",
            "--each",
            "--breakdown",
            "4",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["clips_per_s"]) == {"V", "F", "A", "V+F+A"}
    assert all(rate > 0 for rates in result["clips_per_s"].values() for rate in rates.values())
    assert set(result["clips_per_s"]["V"]) == {"0", "1"} and "train_clips_per_s" not in result
    assert all(rate > 0 for rates in result["clips_per_cpu_s"].values() for rate in rates.values())
    for column in ("wall", "cpu"):
        stages = result["breakdown_ms_per_clip"][column]
        assert {"V read+decode", "V crop/resize", "V copy to batch", "F copy to batch", "A log-mel", "collate"} <= set(
            stages
        )
        assert "V normalise" not in stages and "F de-quantise" not in stages  # on the model's device now
        assert sum(v for k, v in stages.items() if k != "total") == pytest.approx(stages["total"], abs=0.05)
    assert result["fresh_float_memory_ms_per_clip"]["cpu"] > 0 and result["fresh_memory_ms_per_clip"]["cpu"] > 0
    assert result["finish_ms_per_clip"]["cpu"] > 0  # the float pass, timed on this CPU
    assert set(result["bare_decode_ms_per_clip"]) == {"PIL", "OpenCV", "torchvision"}
    assert all(ms["V"]["cpu"] > 0 and ms["F"]["wall"] > 0 for ms in result["bare_decode_ms_per_clip"].values())


def test_data_benchmark_names_a_bad_worker_count(synth_prepared, capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "data", str(synth_prepared), "--workers", "0,x"])
    assert "argument --workers: expected worker counts like 0,1,2, got '0,x'" in capsys.readouterr().err
