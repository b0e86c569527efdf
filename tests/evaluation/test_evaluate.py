import json

import pytest
import torch

from karmma.availability import availability_for_subset
from karmma.checkpoints import CheckpointError, resolve_checkpoint
from karmma.evaluation.evaluate import (
    ClipScores,
    EvaluatedModel,
    EvaluationSettings,
    evaluate_model,
    evaluate_models,
    load_for_evaluation,
)
from karmma.modalities import all_subsets, subset_name
from karmma.presets import build_baseline, build_student, build_teacher


@pytest.mark.parametrize("build", [build_student, build_baseline, build_teacher])
def test_fusing_cached_tokens_equals_running_on_reduced_inputs(tiny, build):
    """Evaluation extracts once with every modality and fuses per subset: that must equal
    running the model on only the subset's inputs."""
    model = build(tiny, {"verb": 5, "noun": 6}, ["V", "F", "A"]).eval()
    inputs = model.example_inputs(3)
    full = torch.ones(3, 3, dtype=torch.bool)
    with torch.no_grad():
        tokens = model.extract(inputs, full)
        for subset in all_subsets(model.modalities):
            mask = availability_for_subset(subset, model.modalities, batch=3)
            reduced = model({k: v for k, v in inputs.items() if k in subset}, mask).logits
            fused = model.fuse(tokens, mask).logits
            for head in reduced:
                torch.testing.assert_close(fused[head], reduced[head], atol=1e-5, rtol=1e-5, msg=subset_name(subset))


def test_evaluate_models_names_models_apart_and_writes_results_json(tmp_path, monkeypatch):
    """The one evaluation of several models behind `karmma evaluate` and the demo: the layout, the
    names, sources relative to a folder, the demo's extra entries, a line per model and file."""
    import karmma.evaluation.evaluate

    def scored(evaluated, settings):
        result = {"source": evaluated.source, "labelled": True, "modalities": ["V", "A"]}
        result["subsets"] = {"V+A": {"action_top1": 12.5 if evaluated.source.endswith("a.ckpt") else 25.0}}
        return result, ClipScores(settings.split, ("V", "A"), ["c1"], {}, [])

    monkeypatch.setattr(karmma.evaluation.evaluate, "evaluate_with_scores", scored)
    models = [EvaluatedModel("student", None, None, str(tmp_path / "runs" / name)) for name in ("a.ckpt", "b.ckpt")]
    lines = []
    out = tmp_path / "results.json"
    settings = EvaluationSettings(split="test", probabilities=(0.0, 0.5), seeds=1)
    results = evaluate_models(
        models, settings, out, extra={"ceilings": {"V": 90.0}}, relative_to=tmp_path, log=lines.append
    )
    assert json.loads(out.read_text()) == results
    assert list(results) == ["models", "settings", "ceilings"]
    assert results["settings"] == {"split": "test", "probabilities": [0.0, 0.5], "seeds": 1, "modalities": "all"}
    assert {name: r["source"] for name, r in results["models"].items()} == {
        "student": "runs/a.ckpt",
        "student_2": "runs/b.ckpt",
    }
    assert lines == [
        "student: action top-1 12.50 on the full set",
        "student_2: action top-1 25.00 on the full set",
        f"wrote {out}",
    ]


@pytest.fixture(scope="module")
def evaluated_student(trained_runs):
    runs, results = trained_runs
    settings = EvaluationSettings(probabilities=(0.0, 0.5, 0.9), seeds=2, batch_size=4, workers=0, progress=False)
    return evaluate_model(load_for_evaluation(results["student"]["run"]), settings), settings, results


@pytest.mark.e2e
def test_results_layout(evaluated_student):
    result, settings, _ = evaluated_student
    assert set(result["subsets"]) == {"V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"}
    for metrics in result["subsets"].values():
        assert {"action_top1", "action_top5", "verb_top1", "noun_top5", "verb_ece", "noun_ece", "samples"} <= set(
            metrics
        )
        # an action is right only when its verb and its noun are; top-1 is among the top-5
        assert 0 <= metrics["action_top1"] <= min(metrics["verb_top1"], metrics["noun_top1"]) <= 100
        assert metrics["action_top1"] <= metrics["action_top5"] and metrics["verb_top1"] <= metrics["verb_top5"]
    assert list(result["sweep"]) == ["0.0", "0.5", "0.9"]
    # p = 0 scores every clip with the modalities it has; the V+F+A row only clips that have all three
    assert result["subsets"]["V+F+A"]["samples"] == result["availability"]["A"] <= result["clips"]
    assert {"action_top1", "std", "noun_top1_std"} <= set(result["sweep"]["0.5"])
    # per-class view of every clip: confusion cells sum to the clips, class names from the class files
    assert result["heads"] == {"verb": len(result["classes"]["verb"]), "noun": len(result["classes"]["noun"])}
    for head in ("verb", "noun", "action"):
        assert sum(c for _, _, c in result["confusion"][head]) == result["clips"]
    right = sum(c for t, g, c in result["confusion"]["verb"] if t == g)
    assert 100 * right / result["clips"] == pytest.approx(result["sweep"]["0.0"]["verb_top1"])
    assert result["missing_modality"] == "learned"
    # per-clip correctness (for paired tests) agrees with the accuracies
    per_clip = result["per_clip"]
    assert len(per_clip["ids"]) == result["clips"]
    for name, codes in per_clip["subsets"].items():
        scored = [c for c in codes if c != "."]
        assert len(scored) == result["subsets"][name]["samples"]
        assert 100 * scored.count("1") / len(scored) == pytest.approx(result["subsets"][name]["action_top1"])
    for p, runs in per_clip["sweep"].items():
        mean = sum(100 * r.count("1") / len(r.replace(".", "")) for r in runs) / len(runs)
        assert mean == pytest.approx(result["sweep"][p]["action_top1"]), p
    json.dumps(result, allow_nan=False)  # strict JSON


@pytest.mark.e2e
def test_evaluation_is_deterministic_and_accepts_every_model_form(evaluated_student, tmp_path):
    result, settings, results = evaluated_student
    again = evaluate_model(load_for_evaluation(results["student"]["best"]), settings)
    assert again["subsets"] == result["subsets"] and again["sweep"] == result["sweep"]
    from karmma.artifacts import load_model, save_student

    exported = save_student(*load_model(results["student"]["best"]), tmp_path / "student.safetensors")
    from_export = evaluate_model(load_for_evaluation(exported), settings)
    assert from_export["subsets"] == result["subsets"]


@pytest.mark.e2e
def test_teacher_evaluates_live(trained_runs):
    _, results = trained_runs
    settings = EvaluationSettings(probabilities=(0.0,), seeds=1, batch_size=4, workers=0, progress=False)
    result = evaluate_model(load_for_evaluation(results["teacher"]["run"]), settings)
    assert result["stage"] == "teacher" and len(result["subsets"]) == 7


def test_bad_model_paths_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "nothing.ckpt")
    with pytest.raises(CheckpointError, match="not a karmma run folder"):
        resolve_checkpoint(tmp_path)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        load_for_evaluation(garbage)


@pytest.mark.e2e
def test_evaluate_cli(trained_runs, tmp_path):
    from karmma.cli import main

    _, results = trained_runs
    out = tmp_path / "results.json"
    code = main(
        [
            "evaluate",
            results["student"]["run"],
            results["student"]["best"],
            "--out",
            str(out),
            "--p",
            "0,0.5",
            "--seeds",
            "1",
            "--workers",
            "0",
            "--batch-size",
            "4",
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert list(data["models"]) == ["student", "student_2"]
    assert main(["evaluate", str(tmp_path / "missing"), "--out", str(out)]) == 2


@pytest.mark.e2e
def test_overrides_apply_before_the_model_is_built(trained_runs, synth_prepared, tmp_path):
    """A checkpoint whose data moved: ``--set data.root=NEW`` is what the heads are read from."""
    from karmma.checkpoints import read_checkpoint

    _, results = trained_runs
    checkpoint = read_checkpoint(results["student"]["best"])
    checkpoint["hyper_parameters"]["config"]["data"]["root"] = str(tmp_path / "moved-away")
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    with pytest.raises(FileNotFoundError, match="moved-away"):
        load_for_evaluation(moved)
    evaluated = load_for_evaluation(moved, overrides=[f"data.root={synth_prepared}"])
    assert evaluated.config.data.root == str(synth_prepared)


@pytest.mark.e2e
def test_a_subset_row_scores_only_clips_that_have_its_modalities(trained_runs, prepared_copy):
    _, results = trained_runs
    audio = sorted(prepared_copy.glob("P02/audio/*.wav"))  # P02: the validation participant, who is scored
    assert audio
    audio[0].unlink()  # one video loses its audio
    settings = EvaluationSettings(probabilities=(0.0,), seeds=1, batch_size=4, workers=0, progress=False)
    result = evaluate_model(
        load_for_evaluation(results["student"]["run"], overrides=[f"data.root={prepared_copy}"]), settings
    )
    rows = result["subsets"]
    with_audio = result["availability"]["A"]
    assert rows["V+F"]["samples"] == result["clips"] > with_audio
    assert rows["V+F+A"]["samples"] == rows["A"]["samples"] == rows["V+A"]["samples"] == with_audio
