import json

import pytest

from karmma.cli import main
from karmma.evaluation.dropout_study import plot_dropout_study, study_table
from karmma.experiments.dropout_study import run_dropout_study

pytestmark = pytest.mark.e2e  # trains the teacher at several dropout rates


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
    assert len(study_table(study).splitlines()) == 2 + 2
    plot_dropout_study(study, tmp_path / "study.png")
    assert (tmp_path / "study.png").stat().st_size > 1000


def test_report_includes_the_study(tmp_path):
    study = {
        "stage": "teacher",
        "rates": {
            r: {"run": "x", "subsets": {"V+F": {"action_top1": a}, "V": {"action_top1": a / 2}}}
            for r, a in (("0", 20.0), ("0.5", 24.0))
        },
    }
    model = {
        "split": "validation",
        "clips": 4,
        "views": 1,
        "subsets": {"V+F": {"action_top1": 10.0}},
        "sweep": {"0.0": {"action_top1": 10.0, "std": 0.0}},
    }
    (tmp_path / "results.json").write_text(json.dumps({"models": {"student": model}}))
    (tmp_path / "dropout_study.json").write_text(json.dumps(study))
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| 0.5 | 24.00 | 12.00 |" in report and (tmp_path / "dropout_study.png").is_file()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
