import json
from pathlib import Path

import pytest

from karmma.cli import main
from karmma.evaluation.dropout_study_report import plot_dropout_study, study_table
from karmma.experiments.dropout_study import run_dropout_study

TEACHER_CONFIG = Path(__file__).resolve().parents[2] / "src" / "karmma" / "configs" / "synthkitchen" / "teacher.yaml"


def test_a_bad_checkpoint_choice_is_refused_before_any_teacher_trains(make_config, tmp_path):
    config = make_config("teacher", tmp_path / "no-data", tmp_path / "runs")
    with pytest.raises(ValueError, match="checkpoint must be best or last, got 'first'"):
        run_dropout_study(config, [0.0], tmp_path / "study", checkpoint="first")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "study").exists()
    with pytest.raises(SystemExit):  # the command line offers only the two
        main(["dropout-study", str(TEACHER_CONFIG), "--out", str(tmp_path / "study"), "--checkpoint", "first"])


@pytest.mark.e2e  # trains the teacher at two dropout rates
def test_dropout_study_command_scores_the_checkpoint_it_is_asked_for(
    trained_runs, synth_prepared, tmp_path, monkeypatch
):
    """`karmma dropout-study --checkpoint last` scores each teacher's last.ckpt, the default its best.ckpt."""
    from karmma.experiments import dropout_study as experiment

    scored = []
    load = experiment.load_for_evaluation

    def recording_load(*args, **kwargs):
        evaluated = load(*args, **kwargs)
        scored.append(Path(evaluated.source).relative_to(tmp_path / "runs").as_posix())
        return evaluated

    monkeypatch.setattr(experiment, "load_for_evaluation", recording_load)
    _, results = trained_runs
    command = [
        "dropout-study",
        str(TEACHER_CONFIG),
        f"data.root={synth_prepared}",
        f"trainer.runs={tmp_path / 'runs'}",
        *(f"extractors.{k}={results[f'unimodal_{k}']['best']}" for k in ("V", "F", "A")),
        "optim.epochs=2",
        "optim.batch_size=4",
        "trainer.workers=0",
        "trainer.progress=false",
        "--rates",
        "0,0.5",
        "--out",
        str(tmp_path / "study"),
    ]
    assert main([*command, "--checkpoint", "last"]) == 0
    assert scored == ["teacher_dropout0/checkpoints/last.ckpt", "teacher_dropout0.5/checkpoints/last.ckpt"]
    last = json.loads((tmp_path / "study" / "dropout_study.json").read_text())
    assert last["checkpoint"] == "last" and list(last["rates"]) == ["0", "0.5"]
    assert (tmp_path / "study" / "dropout_study.png").is_file()

    scored.clear()
    assert main(command) == 0  # the runs have ended: nothing trains again, the best checkpoints are scored
    assert scored == ["teacher_dropout0/checkpoints/best.ckpt", "teacher_dropout0.5/checkpoints/best.ckpt"]
    assert json.loads((tmp_path / "study" / "dropout_study.json").read_text())["checkpoint"] == "best"


@pytest.mark.e2e  # trains the teacher at several dropout rates
def test_dropout_study_trains_one_teacher_per_rate(trained_runs, synth_prepared, make_config, tmp_path):
    _, results = trained_runs
    extractors = [f"extractors.{k}={results[f'unimodal_{k}']['best']}" for k in ("V", "F", "A")]
    config = make_config("teacher", synth_prepared, tmp_path / "runs", *extractors, "optim.epochs=1")
    study = run_dropout_study(config, [0.0, 0.5], tmp_path / "study")
    assert list(study["rates"]) == ["0", "0.5"]
    for entry in study["rates"].values():
        assert len(entry["subsets"]) == 7 and (tmp_path / "runs").is_dir()
    saved = json.loads((tmp_path / "study" / "dropout_study.json").read_text())
    assert saved == json.loads(json.dumps(study))
    table = study_table(study).splitlines()
    assert len(table) == 2 + 1 + 2  # header, the clips each subset scored, one row per training rate
    assert table[2].startswith("| *clips scored* | 6 |") and [row.split(" | ")[0] for row in table[3:]] == [
        "| 0",
        "| 0.5",
    ]
    plot_dropout_study(study, tmp_path / "study.png")
    assert (tmp_path / "study.png").stat().st_size > 1000
