"""``karmma evaluate --submission``: the EPIC-KITCHENS-100 action-recognition challenge file.

A random tiny student with EPIC's 97 verb and 300 noun heads is evaluated on a release in
the official layout (tests/official_formats.py) whose validation rows, stripped of their
labels, are also written as ``EPIC_100_test_timestamps.csv``. The zip is read back by
:func:`check_challenge_file`, written from the published format (epic-kitchens/C1-Action-
Recognition ``utils/challenge.py``; epic-kitchens-55-lib ``docs/source/submission_format.md``
for the ``action`` scores) and sharing no code with the exporter; the scores are compared with
the view-averaged softmax of the model run clip by clip, and with ``evaluate``'s own results.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import zipfile
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from karmma.artifacts import describe_model, load_model, save_student
from karmma.cli import main
from karmma.data.annotations import EPIC_TIMESTAMP_COLUMNS
from karmma.data.config import DatasetConfig, dataset_heads, load_split
from karmma.data.dataset import ClipDataset, collate_clips
from karmma.data.transforms import finish_inputs
from karmma.evaluation.submission import SupervisionLevels
from karmma.stages import build_stage_model
from karmma.train_config import ClipConfig, TrainConfig
from official_formats import write_epic_release

TEST_FILE = "EPIC_100_test_timestamps.csv"
VIEWS = 2  # temporal views per clip, averaged


def check_challenge_file(path: Path, narration_ids: list[str], levels: tuple[int, int, int]) -> dict:
    """Every rule of the published format; returns ``results`` (narration id -> entry)."""
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["test.json"]  # one flat file, no folder
        text = archive.read("test.json").decode("utf-8")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicated keys in {path}"
        return dict(pairs)

    def no_constant(name):
        raise AssertionError(f"{name} in {path}: not a finite number")

    submission = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    assert set(submission) == {"version", "challenge", "sls_pt", "sls_tl", "sls_td", "results"}
    assert submission["version"] == "0.2" and submission["challenge"] == "action_recognition"
    for key, level in zip(("sls_pt", "sls_tl", "sls_td"), levels):
        value = submission[key]
        assert type(value) is int and 0 <= value <= 5 and value == level, (key, value)
    results = submission["results"]
    assert sorted(results) == sorted(narration_ids) and len(narration_ids) == len(set(narration_ids))
    for narration_id, entry in results.items():
        assert set(entry) == {"verb", "noun", "action"}, narration_id
        assert list(entry["verb"]) == [str(c) for c in range(97)]
        assert list(entry["noun"]) == [str(c) for c in range(300)]
        assert len(entry["action"]) == 100
        scores = [*entry["verb"].values(), *entry["noun"].values(), *entry["action"].values()]
        assert all(type(s) is float and math.isfinite(s) and 0 <= s <= 1 for s in scores), narration_id
        # the softmax averaged over views: a distribution per head
        assert math.fsum(entry["verb"].values()) == pytest.approx(1, abs=1e-4)
        assert math.fsum(entry["noun"].values()) == pytest.approx(1, abs=1e-4)
        for key in entry["action"]:
            verb, noun = re.fullmatch(r"(\d+),(\d+)", key).groups()
            assert int(verb) < 97 and int(noun) < 300, key
        # the action scores are the 100 best products p(verb) p(noun), best first
        products = sorted(
            ((p * q, f"{v},{n}") for v, p in entry["verb"].items() for n, q in entry["noun"].items()), reverse=True
        )
        assert [score for score, _ in products[:100]] == pytest.approx(list(entry["action"].values()), rel=1e-5)
        assert min(entry["action"].values()) >= products[100][0] * (1 - 1e-5)
    return results


def reference_probabilities(model_file: Path, split: str, overrides: list[str], modalities: str = "VFA") -> dict:
    """``{narration id: {head: [classes]}}``: the model run clip by clip on each of its ``VIEWS``
    evaluation views (only ``modalities``), the softmax averaged over the views."""
    model, info = load_model(model_file, overrides=overrides)
    config = info.train_config()
    dataset = ClipDataset(
        load_split(config.data, split), info.input_shapes, False, replace(config.clip, num_clips=VIEWS)
    )
    keep = torch.tensor([k in modalities for k in model.modalities])
    batch = collate_clips([dataset[index] for index in range(len(dataset))])  # every view of every clip
    assert len(batch["ids"]) == VIEWS * len(set(batch["ids"]))
    inputs = finish_inputs(batch, keys=[k for k in model.modalities if k in modalities])
    with torch.no_grad():
        logits = model(inputs, batch["availability"] & keep).logits
    sums: dict[str, dict[str, torch.Tensor]] = {}
    for row, clip_id in enumerate(batch["ids"]):
        clip = sums.setdefault(clip_id, {head: 0 for head in logits})
        for head, value in logits.items():
            clip[head] = clip[head] + value[row].softmax(dim=0) / VIEWS
    return sums


@pytest.fixture(scope="module")
def release(tmp_path_factory, shared_data):
    """``(root, narration ids of the validation split)``; the test file is those rows without labels."""
    root = tmp_path_factory.mktemp("epic100")
    ids = write_epic_release(root, shared_data)
    annotations = root / "annotations"
    with (annotations / "EPIC_100_validation.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    with (annotations / TEST_FILE).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPIC_TIMESTAMP_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return root, ids["validation"]


def tiny_student(root: Path, out: Path, heads: dict[str, int] | None = None) -> Path:
    """A tiny V/F/A student with random weights on ``root``'s data, exported to safetensors."""
    config = TrainConfig(
        stage="student", preset="tiny", data=DatasetConfig(format="epic", root=str(root)), clip=ClipConfig(flip=False)
    )
    heads = heads or dataset_heads(config.data)
    torch.manual_seed(0)
    model = build_stage_model(config, heads).eval()
    return save_student(model, describe_model(model, asdict(config), heads), out)


@pytest.fixture(scope="module")
def student(release, tmp_path_factory) -> Path:
    return tiny_student(release[0], tmp_path_factory.mktemp("student") / "student.safetensors")


def evaluate(*arguments) -> int:
    common = ["--clips", str(VIEWS), "--workers", "0", "--batch-size", "4", "--device", "cpu"]
    return main(["evaluate", *map(str, arguments), *common])


@pytest.mark.e2e
def test_an_unlabelled_test_split_is_predicted_and_submitted(release, student, tmp_path, capsys):
    root, narration_ids = release
    out, zip_path = tmp_path / "results.json", tmp_path / "test.zip"
    code = evaluate(
        student, "--split", "test", "--set", f"data.test={TEST_FILE}", "--out", out, "--submission", zip_path,
        "--sls-td", "4",
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "the test split has no labels: predictions only, no accuracy" in err and "action top-1" not in err

    result = json.loads(out.read_text())["models"]["student"]
    assert result["labelled"] is False and result["split"] == "test" and result["clips"] == len(narration_ids)
    assert not {"subsets", "sweep", "confusion", "tail", "unseen", "per_clip"} & set(result)  # no figures invented
    predictions = result["predictions"]
    assert predictions["modalities"] == "V+F+A" and predictions["unscored"] == []

    results = check_challenge_file(zip_path, narration_ids, (2, 3, 4))  # the defaults of pt and tl
    reference = reference_probabilities(student, "test", [f"data.test={TEST_FILE}"])
    assert sorted(reference) == sorted(narration_ids)
    for narration_id, entry in results.items():
        for head in ("verb", "noun"):
            scores = torch.tensor(list(entry[head].values()))
            torch.testing.assert_close(scores, reference[narration_id][head], atol=1e-5, rtol=1e-4)
            # evaluate's own top-1 (results.json) is the submission's argmax
            assert predictions["clips"][narration_id][head][0][0] == scores.argmax().item()
        best_action = next(iter(entry["action"]))
        verb, noun, _ = predictions["clips"][narration_id]["action"][0]
        assert best_action == f"{verb},{noun}"


@pytest.mark.e2e
def test_a_validation_submission_from_a_subset_scores_what_evaluate_scores(release, student, tmp_path, capsys):
    """``--split validation --modalities V+A``: the file's verb / noun / action top-1 against the labels
    are evaluate's V+A figures (every clip has V and A), and its scores are the model run on V+A."""
    root, narration_ids = release
    out, zip_path = tmp_path / "results.json", tmp_path / "validation.zip"
    code = evaluate(
        student, "--split", "validation", "--modalities", "V+A", "--p", "0", "--seeds", "1",
        "--out", out, "--submission", zip_path, "--sls-pt", "0", "--sls-tl", "5", "--sls-td", "4",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    results = check_challenge_file(zip_path, narration_ids, (0, 5, 4))
    evaluated = json.loads(out.read_text())["models"]["student"]
    row = evaluated["subsets"]["V+A"]
    assert evaluated["labelled"] is True and row["samples"] == len(narration_ids)

    with (root / "annotations" / "EPIC_100_validation.csv").open(newline="") as f:
        labels = {r["narration_id"]: (r["verb_class"], r["noun_class"]) for r in csv.DictReader(f)}

    def top1(entry: dict) -> str:
        return max(entry, key=entry.get)

    for head, column in (("verb", 0), ("noun", 1), ("action", None)):
        right = [
            top1(entry[head]) == (",".join(labels[i]) if column is None else labels[i][column])
            for i, entry in results.items()
        ]
        assert 100 * sum(right) / len(right) == pytest.approx(row[f"{head}_top1"]), head
    reference = reference_probabilities(student, "validation", [], modalities="VA")
    for narration_id, entry in results.items():
        scores = torch.tensor(list(entry["verb"].values()))
        torch.testing.assert_close(scores, reference[narration_id]["verb"], atol=1e-5, rtol=1e-4)


def test_a_clip_without_any_of_the_modalities_stops_the_submission(release, student, tmp_path, capsys):
    """Every narration id needs a score: a recording without audio, submitted from A alone, is refused."""
    root = Path(shutil.copytree(release[0], tmp_path / "epic100"))
    (root / "P01" / "audio" / "P01_11.wav").unlink()
    zip_path = tmp_path / "a.zip"
    code = evaluate(
        student, "--split", "test", "--set", f"data.test={TEST_FILE}", "--set", f"data.root={root}",
        "--modalities", "A", "--submission", zip_path,
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err, err
    assert re.search(r"error: --submission: 5 clip\(s\) of the test split have no score \(.*P01_11_", err), err
    assert not zip_path.exists() and not list(tmp_path.glob(".a.zip*"))  # nothing half-written


@pytest.mark.parametrize(
    "arguments, named",
    [
        (["--submission", "{tmp}/exists.zip"], "exists.zip exists: karmma does not overwrite a submission"),
        (["--submission", "{tmp}/out.json"], "--submission {tmp}/out.json: the challenge takes a .zip file"),
        (["{model}", "--submission", "{tmp}/a.zip"], "--submission writes one model's scores, got 2 models"),
        (["--out", "{tmp}/r.json", "--sls-td", "4"], "--sls-pt / --sls-tl / --sls-td describe a --submission"),
        ([], "nothing to write: give --out RESULTS.json and/or --submission OUT.zip"),
        (["--out", "{tmp}/r.json", "--modalities", "V+D"], "modalities V+D: the model has V+F+A (no D)"),
        (
            ["--out", "{tmp}/r.json", "--split", "test"],
            "no annotation file configured for the test split (data.test, e.g. data.test=EPIC_100_test_timestamps.csv)",
        ),
    ],
)
def test_bad_options_are_one_line_errors(arguments, named, student, tmp_path, capsys):
    (tmp_path / "exists.zip").write_bytes(b"an earlier submission")
    fill = {"tmp": tmp_path, "model": student}
    code = evaluate(student, *(a.format(**fill) for a in arguments))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err, err
    assert named.format(**fill) in err.splitlines()[-1], err
    assert (tmp_path / "exists.zip").read_bytes() == b"an earlier submission"


def test_heads_other_than_epics_are_refused_before_evaluating(release, tmp_path, capsys):
    model = tiny_student(release[0], tmp_path / "small.safetensors", heads={"verb": 4, "noun": 6})
    code = evaluate(model, "--submission", tmp_path / "s.zip")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "(verb 97, noun 300 classes); the model's heads are {'verb': 4, 'noun': 6}" in err, err


@pytest.mark.parametrize("level", [-1, 6])
def test_supervision_levels_out_of_range(level, student, tmp_path, capsys):
    with pytest.raises(ValueError, match=f"sls_tl must be an integer from 0 to 5, got {level}"):
        SupervisionLevels(tl=level)
    with pytest.raises(SystemExit) as exit_info:
        evaluate(student, "--submission", tmp_path / "s.zip", "--sls-tl", level)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--sls-tl" in err and "invalid choice" in err and "Traceback" not in err
