import json
import re
import warnings

import pytest
import torch

from karmma.checkpoints import CHECKPOINT_RECIPE, CheckpointError, read_checkpoint
from karmma.data.recipe import PrepareSettings
from karmma.evaluation.evaluate import load_for_evaluation
from karmma.training.run import QUIET_WARNINGS, ProgressBar, RunFolderError, best_epoch, checkpoint_monitor, train

pytestmark = pytest.mark.e2e  # trains every stage


def test_every_stage_writes_a_complete_run_folder(trained_runs, synth_prepared, make_config):
    runs, results = trained_runs
    for name in ("unimodal_V", "teacher", "student"):
        folder = runs / name
        for item in (
            "config.yaml",
            "git.txt",
            "checkpoints/best.ckpt",
            "checkpoints/last.ckpt",
            "csv/metrics.csv",
            "metrics.json",
            "curves.png",
            "result.json",
        ):
            assert (folder / item).exists(), f"{name}: {item}"
        history = json.loads((folder / "metrics.json").read_text())
        assert [h["epoch"] for h in history] == [0, 1]
        assert "val/action_top1" in history[-1] and "train/loss" in history[-1]
        # result.json names the epoch best.ckpt holds and the last epoch, each with its metrics
        result = json.loads((folder / "result.json").read_text())
        best = read_checkpoint(folder / "checkpoints" / "best.ckpt")
        assert result["best_checkpoint"]["epoch"] == best["epoch"]
        assert result["best_checkpoint"]["metrics"]["val/action_top1"] == max(h["val/action_top1"] for h in history)
        assert result["last_epoch"]["epoch"] == 1
    for stage in ("baseline", "baseline_masked", "baseline_delta"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train(make_config(stage, synth_prepared, runs))
        metrics = result["last_epoch"]["metrics"]  # an action is right only when its verb and its noun are
        assert 0 <= metrics["val/action_top1"] <= min(metrics["val/verb_top1"], metrics["val/noun_top1"])
        noise = [str(w.message) for w in caught if any(re.search(m, str(w.message)) for m in QUIET_WARNINGS)]
        assert not noise, noise


def test_progress_bar_hides_the_logger_version(monkeypatch):
    from lightning.pytorch.callbacks import TQDMProgressBar

    monkeypatch.setattr(TQDMProgressBar, "get_metrics", lambda self, trainer, module: {"v_num": "oard", "loss": 1.5})
    assert ProgressBar().get_metrics(None, None) == {"loss": 1.5}


def test_best_epoch_is_the_first_highest():
    history = [
        {"epoch": 0, "val/action_top1": 5.0},
        {"epoch": 1, "val/action_top1": 9.0},
        {"epoch": 2, "val/action_top1": 9.0},
    ]
    assert best_epoch(history)["epoch"] == 1
    assert best_epoch([{"epoch": 0}]) is None


def test_an_extractor_is_chosen_by_its_cross_entropy_a_fusion_model_by_action_top1():
    # flow's action top-1 is noise (it tells no nouns): epoch 0 has the best action top-1, epoch 2 the best CE
    history = [
        {"epoch": 0, "val/action_top1": 13.3, "val/ce": 2.9},
        {"epoch": 1, "val/action_top1": 10.0, "val/ce": 2.0},
        {"epoch": 2, "val/action_top1": 10.0, "val/ce": 1.9},
    ]
    assert best_epoch(history, *checkpoint_monitor("unimodal"))["epoch"] == 2
    assert best_epoch(history, *checkpoint_monitor("student"))["epoch"] == 0


def test_checkpoints_load_without_unpickling(trained_runs):
    _, results = trained_runs
    checkpoint = torch.load(results["student"]["best"], weights_only=True)
    assert checkpoint["hyper_parameters"]["config"]["stage"] == "student"
    # the frozen teacher is not part of the student's checkpoint
    assert all(k.startswith("model.") for k in checkpoint["state_dict"])


def test_teacher_extractors_come_from_unimodal_runs(trained_runs):
    _, results = trained_runs
    teacher = read_checkpoint(results["teacher"]["best"])["state_dict"]
    unimodal = read_checkpoint(results["unimodal_F"]["best"])["state_dict"]
    key = next(k for k in unimodal if k.startswith("model.extractors.F."))
    assert torch.equal(teacher[key], unimodal[key])


def test_corrupt_and_truncated_checkpoints(trained_runs, tmp_path, synth_prepared, make_config):
    _, results = trained_runs
    data = open(results["teacher"]["best"], "rb").read()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=path.name):
            read_checkpoint(path)
        with pytest.raises(CheckpointError, match=path.name):
            train(make_config("student", synth_prepared, tmp_path / "runs", f"teacher={path}"))


def test_wrong_stage_and_preset(trained_runs, synth_prepared, tmp_path, make_config):
    _, results = trained_runs
    with pytest.raises(CheckpointError, match="a 'unimodal' checkpoint, but a 'teacher' checkpoint is needed"):
        train(make_config("student", synth_prepared, tmp_path, f"teacher={results['unimodal_V']['best']}"))
    with pytest.raises(CheckpointError, match="unimodal checkpoint of 'V', not of 'F'"):
        train(make_config("teacher", synth_prepared, tmp_path, f"extractors={{F: {results['unimodal_V']['best']}}}"))
    with pytest.raises(CheckpointError, match="trained with preset 'tiny', this run uses 'paper'"):
        train(make_config("student", synth_prepared, tmp_path, "preset=paper", f"teacher={results['teacher']['best']}"))


def test_models_and_data_of_other_frame_recipes_are_refused(trained_runs, prepared_copy, tmp_path, make_config):
    """A teacher, a pre-trained extractor or an evaluated model trained on frames of another recipe
    than the data given to it: a one-line error, not a silent difference."""
    _, results = trained_runs
    for stage in ("unimodal_F", "teacher", "student"):  # every checkpoint carries its data's recipe
        recorded = read_checkpoint(results[stage]["best"])[CHECKPOINT_RECIPE]
        assert PrepareSettings.from_record(recorded) == PrepareSettings(flow="dis", short_side=64), stage
    for marker in (prepared_copy / ".prepared").glob("*.json"):  # the same data, as if made with TV-L1 flow
        record = json.loads(marker.read_text())
        marker.write_text(json.dumps({**record, "settings": {**record["settings"], "flow": "tvl1"}}))
    different = re.escape(f"the training data ({prepared_copy}) have different frame recipes (flow dis vs tvl1)")
    with pytest.raises(ValueError, match=rf"^teacher \S+best.ckpt and {different}: prepare the data again"):
        train(make_config("student", prepared_copy, tmp_path, f"teacher={results['teacher']['best']}"))
    with pytest.raises(ValueError, match=rf"^checkpoint \S+unimodal_F\S+ and {different}"):
        train(make_config("teacher", prepared_copy, tmp_path, f"extractors={{F: {results['unimodal_F']['best']}}}"))
    with pytest.raises(
        ValueError, match=r"best.ckpt and the data \(.*\) have different frame recipes \(flow dis vs tvl1\)"
    ):
        load_for_evaluation(results["student"]["best"], overrides=[f"data.root={prepared_copy}"])


def test_resuming_into_another_stage_is_refused(trained_runs, synth_prepared, make_config):
    runs, _ = trained_runs
    with pytest.raises(RunFolderError, match="holds a run with another config .*stage: 'student' -> 'baseline'"):
        train(make_config("baseline", synth_prepared, runs, "trainer.name=student"))


def test_unknown_config_key_on_the_command_line(synth_prepared, tmp_path, capsys):
    from karmma.cli import main

    assert main(["train", "configs/synthkitchen/student.yaml", "optim.learning_rate=1"]) == 2
    assert "unknown key(s) ['learning_rate']" in capsys.readouterr().err


def test_a_stage_added_as_one_record_trains_evaluates_and_appears_in_the_report(
    synth_prepared, make_config, tmp_path, monkeypatch
):
    """Adding a stage is adding one record to the stage table: here a student-sized model trained
    without modality dropout, on cross-entropy alone, whose missing modalities arrive as zeros and
    whose checkpoint is chosen by validation cross-entropy."""
    from karmma import train_config
    from karmma.evaluation.evaluate import EvaluationSettings, evaluate_models
    from karmma.evaluation.report import write_report
    from karmma.train_config import StageSpec
    from karmma.training import module

    toy = StageSpec(
        "toy",
        model="student",
        missing="zeros",
        modality_dropout=False,
        info_nce=False,
        distillation=False,
        monitor="val/ce",
        demo=False,
        label="Toy zero-filler",
        description="a toy stage added by a test: the student's architecture, zeros for a missing modality.",
    )
    monkeypatch.setattr(train_config, "STAGE_SPECS", (*train_config.STAGE_SPECS, toy))
    dropped = []
    monkeypatch.setattr(module, "modality_dropout", lambda *args, **kwargs: dropped.append(1) or args[0])
    # the Baseline's shipped config as the recipe, the missing strategy left to the stage's default
    config = make_config(
        "baseline",
        synth_prepared,
        tmp_path / "runs",
        "stage=toy",
        "missing_modality=''",
        "trainer.name=toy",
        "optim.epochs=1",
    )
    assert config.missing_strategy == "zeros"
    result = train(config)
    assert not dropped  # no modality dropout in training
    history = json.loads((tmp_path / "runs" / "toy" / "metrics.json").read_text())
    assert "train/ce" in history[-1] and not {"train/kd", "train/info_nce"} & set(history[-1])
    callbacks = read_checkpoint(result["best"])["callbacks"]
    assert any("'monitor': 'val/ce'" in key and "'mode': 'min'" in key for key in callbacks), list(callbacks)

    settings = EvaluationSettings(probabilities=(0.0, 0.5), seeds=1, batch_size=4, workers=0, progress=False)
    results = evaluate_models([load_for_evaluation(result["run"])], settings)
    scored = results["models"]["toy"]  # evaluated under its stage's name
    assert scored["stage"] == "toy" and scored["missing_modality"] == "zeros"
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = write_report(tmp_path).read_text()
    assert f"| Toy zero-filler | `toy` | {toy.description} |" in report
