"""The end-to-end dry run: every stage of the shipped real-data configs, with the paper's
architecture (Swin3D-B teacher, Swin3D-T / ResNet-18 student) at a small clip geometry, on
media written in the official EPIC-KITCHENS-100 and Something-Something v2 layouts.

extract -> teacher -> cached logits -> student -> the three baselines -> evaluate (every
subset, sweep, tail / unseen) -> report -> export -> predict, all through ``karmma``'s CLI,
for EPIC-100 and SSv2. Epic-Kitchens*'s configs differ from EPIC-100's only in their data
section (its own split of the training set, the official validation set as test), so its run
takes one model of its own split through every step: the Baseline (no teacher needed).
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from karmma.cli import main
from karmma.configs import config_path
from karmma.modalities import all_subsets, subset_name
from official_formats import (
    EPIC_VIDEOS,
    write_epic_release,
    write_epic_video,
    write_ssv2_release,
    write_teacher_weights,
    write_torchvision_cache,
)

pytestmark = pytest.mark.e2e  # every stage of every real-data config

FRAMES = 4
GEOMETRY = [f"clip.frames={FRAMES}", "clip.size=32", "clip.audio_frames=64"]
MODELS = ["teacher", "student", "baseline", "baseline_masked", "baseline_delta"]
#: the models each dataset trains (see the module docstring for Epic-Kitchens*)
TRAINED = {"epic100": MODELS, "epic_star": ["baseline"], "ssv2": MODELS}
STRATEGIES = {
    "teacher": "learned",
    "student": "learned",
    "baseline": "zeros",
    "baseline_masked": "mask",
    "baseline_delta": "learned",
}


def karmma(*argv) -> None:
    start = time.perf_counter()
    assert main([str(a) for a in argv]) == 0, argv
    print(f"[{time.perf_counter() - start:6.1f} s] karmma {argv[0]} {argv[1] if len(argv) > 1 else ''}")


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("torch_home")
    write_torchvision_cache(home)
    return home


@pytest.fixture(autouse=True)
def _torchvision_cache(torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))


@pytest.fixture(scope="module")
def epic(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("epic100")
    return root, write_epic_release(root, shared_data)


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory, shared_data):
    raw = tmp_path_factory.mktemp("ssv2_raw")
    ids = write_ssv2_release(raw, shared_data)
    prepared = tmp_path_factory.mktemp("ssv2_prepared")
    karmma("prepare", raw, prepared, "--flow", "dis", "--short-side", "48", "--workers", "1")
    return prepared, {**ids, "raw": raw}


@pytest.mark.parametrize("dataset", ["epic100", "epic_star", "ssv2"])
def test_every_stage_on_the_official_layout(dataset, request, tmp_path):
    root, ids = request.getfixturevalue("ssv2" if dataset == "ssv2" else "epic")
    runs, cache, results = tmp_path / "runs", tmp_path / "cache", tmp_path / "results"
    common = [
        f"data.root={root}",
        f"trainer.runs={runs}",
        *GEOMETRY,
        "optim.epochs=1",
        "optim.batch_size=4",
        "trainer.workers=0",
        "trainer.progress=false",
        "trainer.precision=32-true",
        "clip.num_clips=1",
        "clip.num_crops=1",
    ]  # one view: the multi-view protocol has its own tests
    modalities = ("V", "F", "D") if dataset == "ssv2" else ("V", "F", "A")
    config = {stage: config_path(dataset, stage) for stage in MODELS}
    deployed = "student" if "student" in TRAINED[dataset] else TRAINED[dataset][0]  # the model exported and run
    try:
        if "teacher" in TRAINED[dataset]:
            teacher_weights = [
                "extractors={}",  # the EPIC-100 teacher names its unimodal runs' checkpoints: local files instead
                *(
                    f"pretrained.{k}={p}"
                    for k, p in write_teacher_weights(tmp_path / "weights", modalities, FRAMES).items()
                ),
            ]
            karmma("extract", config["teacher"], *common, f"cache.path={cache}", *teacher_weights, "--batch-size", 4)
            karmma("train", config["teacher"], *common, f"cache.path={cache}", *teacher_weights)
            teacher = runs / f"{dataset}_teacher" / "checkpoints" / "best.ckpt"
            karmma("extract", config["teacher"], *common, f"cache.path={cache}", *teacher_weights, "--logits", teacher)
            karmma("train", config["student"], *common, f"cache.path={cache}", f"teacher={teacher}")
        for stage in (m for m in TRAINED[dataset] if m.startswith("baseline")):
            karmma("train", config[stage], *common)

        karmma(
            "evaluate",
            *(runs / f"{dataset}_{m}" for m in TRAINED[dataset]),
            "--names",
            ",".join(TRAINED[dataset]),
            "--out",
            results / "results.json",
            "--workers",
            0,
            "--device",
            "cpu",
            "--seeds",
            2,
        )
        evaluated = json.loads((results / "results.json").read_text())["models"]
        assert set(evaluated) == set(TRAINED[dataset])
        subsets = {subset_name(s) for s in all_subsets(modalities)}
        for name, result in evaluated.items():
            assert result["missing_modality"] == STRATEGIES[name]
            assert set(result["subsets"]) == subsets and len(result["sweep"]) == 10
            if dataset == "epic_star":  # Epic-Kitchens*: scored on the official validation set
                assert result["split"] == "test" and result["clips"] == len(ids["validation"])
            else:
                assert result["split"] == "validation"
        if dataset == "ssv2":  # one validation video has no boxes: D rows cover the others only
            boxed = len([v for v in ids["validation"] if v in ids["boxed"]])
            assert boxed < len(ids["validation"])
            assert evaluated["student"]["subsets"]["D"]["samples"] == boxed
            assert evaluated["student"]["subsets"]["V+F+D"]["samples"] == boxed
            assert evaluated["student"]["subsets"]["V+F"]["samples"] == len(ids["validation"])
        else:
            assert "tail" in evaluated[deployed] and "unseen" in evaluated[deployed]  # P18 is unseen

        karmma("report", results)
        report = (results / "report.md").read_text()
        assert dataset == "epic_star" or "baseline_masked" in report or "Masked Baseline" in report

        export = tmp_path / "export"
        karmma("export", runs / f"{dataset}_{deployed}", "--safetensors", export / "student.safetensors")
        video = (
            ids["raw"] / "videos" / f"{ids['validation'][0]}.webm"
            if dataset == "ssv2"
            else write_epic_video(tmp_path / f"{next(iter(EPIC_VIDEOS))}.MP4")
        )
        karmma("predict", export / "student.safetensors", video, "--json", "--top-k", 3)
    finally:  # the teacher checkpoints hold three Swin3D-B: do not keep gigabytes in pytest's tmp
        shutil.rmtree(runs, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
