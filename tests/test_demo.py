"""The quick demo end to end (``quick_demo``, tests/conftest.py; tests/test_readme.py runs the README's
"After the demo" block on the same run), twice with one seed; and the checks of its arguments,
which fail before the first stage (fast)."""

import json
import re
import shutil
from pathlib import Path

import pytest

from karmma.demo import DEMO_MODELS, PLANS, DemoError, demo_stages, run_demo
from karmma.evaluation.report import ceiling_violations


@pytest.mark.e2e  # runs the quick demo
def test_quick_demo_writes_every_artefact(quick_demo):
    for name in (
        "results.json",
        "benchmark.json",
        "report.md",
        "student.safetensors",
        "sweep.png",
        "resources.png",
        "training.png",
    ):
        assert (quick_demo / name).is_file(), name
    assert list((quick_demo / "recordings" / "main").glob("P*/videos/*.MP4"))
    from karmma.artifacts import load_model

    _, info = load_model(quick_demo / "student.safetensors")  # the full format: class names and preparation too
    assert info.config["stage"] == "student" and info.classes and info.preparation.flow == "dis"
    results = json.loads((quick_demo / "results.json").read_text())
    assert list(results["models"]) == list(DEMO_MODELS)
    for name, model in results["models"].items():  # selected on validation, scored on the test participants
        assert model["split"] == "test" and "chosen on the validation split, scored on test" in model["selection"], name
    for model in ("baseline", "baseline_masked"):  # the paper's Baseline and ours, single modalities included
        assert {"V", "F", "A"} <= set(results["models"][model]["subsets"])
    for model in results["models"].values():
        assert "V+F+A" in model["subsets"] and len(model["subsets"]) == 7
        assert list(model["sweep"]) == [f"{i / 10:.1f}" for i in range(10)]
    # what the data allows at best travels with the results, and no model beats it beyond noise
    from karmma.data.synth_world import information_ceilings

    assert results["ceilings"] == information_ceilings()
    assert ceiling_violations(results) == []
    report = (quick_demo / "report.md").read_text()
    assert "| ceiling |" in report and "## What each part adds (ablation)" in report
    # what the student distils and what its extractors start from, each against what the data allows
    assert {"train", "validation"} <= set(results["teacher_logits"]) and set(results["extractors"]) == {
        "teacher",
        "student",
    }
    assert "## What the student distils: the teacher's logits" in report
    assert "## The pre-trained extractors against the data's ceilings" in report
    student_full = results["models"]["student"]["subsets"]["V+F+A"]["action_top1"]
    assert f"{student_full:.2f}" in report  # numbers in the report come from results.json


@pytest.mark.e2e  # runs the quick demo
def test_the_quick_demos_teacher_and_student_learn(quick_demo):
    """Teacher and student above chance with every sensor: their 95 % interval clears the most frequent
    action of the test clips (seed 0 measured 28.3 and 20.0 % on 60 clips, chance 6.25 %; the issue asks
    for three times chance, which the quick demo is timed and sized for, docs/evaluation.md)."""
    from karmma.evaluation.chance import chance_rate, row_clips
    from karmma.evaluation.statistics import at_chance

    results = json.loads((quick_demo / "results.json").read_text())
    chance = chance_rate(results)
    for name in ("teacher", "student"):
        model = results["models"][name]
        full = model["subsets"]["V+F+A"]
        assert not at_chance(full["action_top1"], row_clips(full, model), chance), (name, full["action_top1"], chance)


@pytest.mark.e2e  # runs the quick demo
def test_rerun_reuses_finished_stages_and_refuses_other_settings(quick_demo, capsys):
    """Every stage is recorded with its fingerprint; the same command again runs nothing."""
    stages = json.loads((quick_demo / "stages.json").read_text())
    assert all(set(entry) == {"seconds", "fingerprint"} for entry in stages.values())
    results = (quick_demo / "results.json").read_text()
    capsys.readouterr()
    run_demo(quick_demo, quick=True, seeds=(0,), progress=False)  # everything done: nothing reruns
    assert ran_stages(capsys.readouterr().err) == set()
    assert json.loads((quick_demo / "stages.json").read_text()) == stages
    assert (quick_demo / "results.json").read_text() == results
    with pytest.raises(DemoError, match=r"differs in seeds\); use another --out"):
        run_demo(quick_demo, quick=True, seeds=(1,), progress=False)


def test_a_demo_folder_in_use_is_refused_and_a_refusal_frees_it(tmp_path):
    """Two `karmma demo` on one folder would interleave their stages: the second stops in one line,
    before writing; a demo that stops (here: a folder of other settings) leaves the folder free."""
    import os

    from karmma.training.run import RunLock

    out = tmp_path / "demo"
    held = RunLock(out, what="demo folder").acquire()
    try:
        with pytest.raises(DemoError, match=rf"demo folder {out} is in use by process {os.getpid()} .*another --out"):
            run_demo(out, quick=True, progress=False)
    finally:
        held.release()
    assert not (out / "demo.json").exists()

    (out / "demo.json").write_text(json.dumps({"version": 1, "flavour": "default", "seeds": [0], "plan": {}}))
    with pytest.raises(DemoError, match="holds a demo with other settings"):
        run_demo(out, quick=True, progress=False)
    RunLock(out).acquire().release()  # the refusing demo let go of the folder


def test_a_folder_of_another_plan_is_refused_with_what_differs():
    from karmma.demo import identity_differences

    plan = {"epochs": {"V": 32, "F": 8}, "short_side": 32}
    same = {"version": 12, "flavour": "quick", "seeds": [0], "plan": plan}
    older = {**same, "plan": {"epochs": {"V": 2, "F": 8}}}  # before short_side existed
    assert identity_differences(older, same) == ["plan.epochs.V", "plan.short_side"]
    assert identity_differences(same, same) == []
    assert identity_differences(older, same, shown=1) == ["plan.epochs.V", "1 more"]


def ran_stages(captured: str) -> set[str]:
    """The stages a ``run_demo(..., progress=False)`` ran, from its ``<stage>: <seconds> s`` lines."""
    return {line.rsplit(": ", 1)[0] for line in captured.splitlines() if re.fullmatch(r".+: [0-9.]+ s", line)}


@pytest.mark.e2e  # runs the quick demo
def test_a_stage_whose_settings_changed_runs_again_with_the_stages_that_read_it(
    quick_demo, tmp_path, monkeypatch, capsys
):
    from karmma import demo

    out = tmp_path / "demo"
    shutil.copytree(quick_demo, out)  # a copy: paths under it count relative to it, so nothing is stale yet
    shipped = demo._stage_config
    # as if configs/synthkitchen/baseline_delta.yaml had been edited after the demo ran
    monkeypatch.setattr(
        demo,
        "_stage_config",
        lambda name, overrides: shipped(name, [*overrides, *(["optim.lr=0.0007"] if name == "baseline_delta" else [])]),
    )
    capsys.readouterr()
    run_demo(out, quick=True, seeds=(0,), progress=False)
    printed = capsys.readouterr().err
    assert ran_stages(printed) == {"baseline_delta", "evaluate", "report"}
    assert "evaluate: settings changed since it ran, running it again" in printed
    assert "lr: 0.0007" in (out / "runs" / "baseline_delta" / "config.yaml").read_text()
    (earlier,) = (out / "replaced").glob("*/runs/baseline_delta")  # moved aside, not deleted
    assert "lr: 0.0007" not in (earlier / "config.yaml").read_text()
    (earlier_results,) = (out / "replaced").glob("*/results.json")  # the evaluation's too
    assert earlier_results.read_bytes() == (quick_demo / "results.json").read_bytes()


def test_stage_fingerprints_follow_settings_and_inputs_not_the_folder(tmp_path):
    from karmma.demo import Stage, stage_fingerprint

    here, there = tmp_path / "a", tmp_path / "b"
    assert stage_fingerprint({"root": str(here / "prepared")}, [], here) == stage_fingerprint(
        {"root": str(there / "prepared")}, [], there
    )
    assert stage_fingerprint({"lr": 0.001}, [], here) != stage_fingerprint({"lr": 0.002}, [], here)
    one, other = (Stage("prepare", 1, lambda: None, fingerprint=f) for f in ("1", "2"))
    assert stage_fingerprint({"lr": 0.001}, [one], here) != stage_fingerprint({"lr": 0.001}, [other], here)


@pytest.mark.e2e  # runs the quick demo
def test_several_seeds_give_intervals_and_verdicts_and_the_same_seed_the_same_results(quick_demo, tmp_path):
    """Seed 0 of the two-seed run starts from a copy of the quick demo's own pipeline (its stages
    marked done) less one training run and the evaluation: those run again and must give the same
    numbers. Seed 1 runs from scratch. (Running seed 0 from scratch too would only repeat its
    other stages, the CI's largest cost.)"""
    seed_0 = tmp_path / "seed_0"
    shutil.copytree(quick_demo, seed_0)
    per_seed = [stage.name for stage in demo_stages(seed_0, PLANS["quick"], seed=0)]
    done = json.loads((quick_demo / "stages.json").read_text())
    again = ("baseline_delta", "evaluate")  # trained with seeded modality dropout, then every model scored
    (tmp_path / "stages.json").write_text(json.dumps({f"seed_0/{n}": done[n] for n in per_seed if n not in again}))
    shutil.rmtree(seed_0 / "runs" / "baseline_delta")
    (seed_0 / "results.json").unlink()
    run_demo(tmp_path, quick=True, seeds=(0, 1), progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    single = json.loads((quick_demo / "results.json").read_text())
    # seed 0 of the two-seed run is the single-seed demo, number for number
    for name, model in single["models"].items():
        again = results["seeds"]["0"]["models"][name]
        assert again["subsets"] == model["subsets"] and again["sweep"] == model["sweep"], name
    assert set(results["seeds"]) == {"0", "1"}
    student = results["models"]["student"]
    per_seed = [results["seeds"][s]["models"]["student"]["subsets"]["V+F+A"]["action_top1"] for s in ("0", "1")]
    assert student["subsets"]["V+F+A"]["action_top1"] == pytest.approx(sum(per_seed) / 2)
    assert "action_top1_ci95" in student["subsets"]["V+F+A"] and "action_top1_ci95" in student["sweep"]["0.5"]
    claims = results["claims"]
    assert claims and all(c["verdict"] in ("holds", "does not hold", "inconclusive") for c in claims)
    assert all(set(c) >= {"claim", "verdict", "effect", "ci"} for c in claims)
    assert results["ceilings"] == single["ceilings"] and ceiling_violations(results) == []  # every seed's models
    report = (tmp_path / "report.md").read_text()
    assert "decided over 2 seeds" in report and "95 % interval over 2 training seeds" in report


@pytest.mark.e2e  # runs the quick demo
def test_tuning_trains_one_run_per_value_on_validation_and_leaves_the_test_results_alone(quick_demo, capsys):
    from karmma.demo import parse_knob

    results = (quick_demo / "results.json").read_text()
    knobs = (parse_knob("loss.distill_weight=0,0.3"), parse_knob("teacher:loss.modality_dropout=0,0.3"))
    run_demo(quick_demo, quick=True, seeds=(0,), progress=False, tune=knobs)
    tuning = json.loads((quick_demo / "tuning.json").read_text())
    assert tuning["split"] == "validation" and tuning["seeds"] == [0]
    knob = tuning["knobs"]["student:loss.distill_weight=0,0.3"]
    assert set(knob["values"]) == {"0", "0.3"} and knob["chosen"] in ("0", "0.3")
    run = quick_demo / "runs" / "tune_student_loss.distill_weight=0"
    assert "distill_weight: 0.0" in (run / "config.yaml").read_text()
    assert 0 <= knob["values"]["0"]["val/action_top1"] <= 100
    # 0.3 is what the student trains with: its own run is scored, not trained again
    assert not (quick_demo / "runs" / "tune_student_loss.distill_weight=0.3").exists()
    own = json.loads((quick_demo / "runs" / "student" / "result.json").read_text())["best_checkpoint"]["metrics"]
    assert knob["values"]["0.3"]["val/action_top1"] == own["val/action_top1"]
    # the teacher trains again from its cached features; its 0.3 is its own run
    teacher = tuning["knobs"]["teacher:loss.modality_dropout=0,0.3"]["values"]
    assert (
        "modality_dropout: 0.0"
        in (quick_demo / "runs" / "tune_teacher_loss.modality_dropout=0" / "config.yaml").read_text()
    )
    own = json.loads((quick_demo / "runs" / "teacher" / "result.json").read_text())["best_checkpoint"]["metrics"]
    assert teacher["0.3"]["val/action_top1"] == pytest.approx(own["val/action_top1"], abs=0.005)  # rounded mean
    assert (quick_demo / "results.json").read_text() == results  # the reported (test) numbers are untouched
    assert "Knobs tuned on validation" in (quick_demo / "report.md").read_text()

    # scored again along the dropout sweep: only the scoring runs again, no tuning run is trained again
    capsys.readouterr()
    run_demo(quick_demo, quick=True, seeds=(0,), progress=False, tune=knobs, tune_by="sweep")
    assert ran_stages(capsys.readouterr().err) == {"tune", "report"}
    tuning = json.loads((quick_demo / "tuning.json").read_text())
    assert tuning["by"] == "sweep" and tuning["key"] == "val/sweep_action_top1"
    for knob in tuning["knobs"].values():
        assert all(0 <= scores["val/sweep_action_top1"] <= 100 for scores in knob["values"].values())
    assert "validation action top-1, mean over the sweep" in (quick_demo / "report.md").read_text()


@pytest.mark.parametrize(
    "text,message",
    [
        ("loss.distill_weight=0.3", "at least two distinct values"),
        ("unimodal_V:optim.lr=0.1,0.2", "the stage must be one of teacher, baseline"),
        ("baseline_delta:loss.temperature=1,4", "baseline_delta is trained without distillation, so loss.temperature"),
        ("teacher:clip.flip=true,false", "the teacher trains on its cached features"),
        ("loss.no_such_knob=0,1", "unknown key"),
        ("data.root=a/b,c/d", r"data.root is set by the demo itself \(data, run folders, seed, caches"),
        ("baseline:trainer.seed=1,2", "trainer.seed is set by the demo itself"),
        ("pretrained.V=a.pth,b.pth", "pretrained.V is set by the demo itself"),
        ("loss.distill_weight=0.3,0.30", "'0.3' and '0.30' are the same value of loss.distill_weight"),
        ("loss.temperature=4,4.0", "'4' and '4.0' are the same value of loss.temperature"),
    ],
)
def test_bad_tuning_knob_is_a_clear_error(text, message):
    from karmma.demo import parse_knob

    with pytest.raises(ValueError, match=rf"--tune '{re.escape(text)}': .*{message}"):
        parse_knob(text)


@pytest.mark.parametrize("flags,folder", [([], "karmma-demo"), (["--quick"], "karmma-demo-quick")])
def test_each_flavour_has_its_own_default_folder(tmp_path, monkeypatch, flags, folder):
    """`karmma demo --quick` must not write where `karmma demo` would: a folder holds one flavour."""
    from karmma import demo
    from karmma.cli import main

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **settings: calls.append((out, settings)) or Path(out) / "r.md")
    assert main(["demo", *flags]) == 0
    defaults = {"progress": True, "workers": 2, "tune": (), "tune_by": "best-epoch"}
    assert calls == [(folder, {"quick": bool(flags), "seeds": (0,), **defaults})]


@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"seeds": (2**32,)}, r"seed 4294967296 is outside 0..4294967295"),
        ({"seeds": (0, -1)}, r"seed -1 is outside 0..4294967295"),
        ({"workers": 0}, r"--workers must be >= 1, got 0"),
        ({"tune_by": "last-epoch"}, r"--tune-by must be one of best-epoch, sweep, got 'last-epoch'"),
        ({"tune_by": "sweep"}, r"--tune-by sweep scores --tune's runs: give at least one --tune"),
        (
            {"tune": ("loss.distill_weight=0,1", "loss.distill_weight=0.5,2")},
            "--tune: student:loss.distill_weight is tuned twice",
        ),
    ],
)
def test_run_demo_checks_its_arguments_before_the_first_stage(tmp_path, monkeypatch, arguments, message):
    from karmma import demo

    def no_pipeline(*args, **kwargs):
        raise AssertionError("the pipeline was planned: the arguments were not checked first")

    monkeypatch.setattr(demo, "demo_stages", no_pipeline)
    if "tune" in arguments:
        arguments["tune"] = tuple(demo.parse_knob(text) for text in arguments["tune"])
    with pytest.raises(DemoError, match=message):
        run_demo(tmp_path / "demo", quick=True, progress=False, **arguments)
    assert not (tmp_path / "demo").exists()  # refused before anything was written


def test_an_interrupted_stage_resumes_only_under_the_same_settings(tmp_path, monkeypatch):
    """The run loop on stand-in stages: a stage started but not finished (``seconds`` None) resumes with
    its partial output when its fingerprint is unchanged; under other settings its output is moved aside."""
    from karmma import demo

    out, ran = tmp_path / "demo", []

    def stage(name: str) -> demo.Stage:
        def run():
            ran.append(name)
            (out / name).mkdir(exist_ok=True)

        return demo.Stage(name, 1, run, fingerprint="1", output=out / name, root=out)

    monkeypatch.setattr(demo, "demo_stages", lambda *args, **kwargs: [stage(name) for name in "abc"])
    monkeypatch.setattr(demo, "final_stages", lambda *args, **kwargs: [])
    run_demo(out, quick=True, progress=False)
    assert ran == ["a", "b", "c"]
    stages = json.loads((out / "stages.json").read_text())
    assert stages["a"] == {"seconds": stages["a"]["seconds"], "fingerprint": "1"} and stages["a"]["seconds"] >= 0
    stages["b"]["seconds"] = None  # interrupted under the same settings
    stages["c"] = {"seconds": None, "fingerprint": "0"}  # interrupted under older settings
    (out / "stages.json").write_text(json.dumps(stages))
    ran.clear()
    run_demo(out, quick=True, progress=False)
    assert ran == ["b", "c"]
    assert (out / "b").is_dir() and not list((out / "replaced").glob("*/b"))  # resumed where it was
    assert len(list((out / "replaced").glob("*/c"))) == 1  # moved aside, not deleted
