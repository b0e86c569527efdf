import json

from karmma.evaluation.report import check_claims, subset_table, write_report

SUBSETS = ["V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"]


def _model(subset_acc: dict, sweep: list[float]) -> dict:
    return {
        "split": "validation", "clips": 10, "views": 1,
        "subsets": {s: {"action_top1": a, "verb_top1": a, "noun_top1": a, "samples": 10} for s, a in subset_acc.items()},
        "sweep": {f"{i / 10:.1f}": {"action_top1": v, "std": 0.5} for i, v in enumerate(sweep)},
    }


def _results(student_bonus: float) -> dict:
    base = dict(zip(SUBSETS, [40, 36, 37, 5, 32, 3, 2]))
    delta = dict(zip(SUBSETS, [41, 39, 39, 27, 37, 25, 6]))
    student = {s: v + student_bonus for s, v in delta.items()}
    decay = [1 - 0.07 * i for i in range(10)]
    return {"models": {
        "teacher": _model({"V+F+A": 34}, [34 * d for d in decay]),
        "baseline": _model(base, [40 * (1 - 0.1 * i) for i in range(10)]),
        "baseline_delta": _model(delta, [41 * d for d in decay]),
        "student": _model(student, [(41 + student_bonus) * (1 - 0.06 * i) for i in range(10)]),
    }, "settings": {"seeds": 3}}


def test_claims_hold_on_paper_like_numbers_and_fail_otherwise():
    verdicts = [holds for _, holds, _ in check_claims(_results(student_bonus=1.0))]
    assert verdicts == [True, True, True, True, True, True, None]
    verdicts = [holds for _, holds, _ in check_claims(_results(student_bonus=-3.0))]
    assert verdicts[0] is False and verdicts[1] is False and verdicts[2] is False


def test_table_marks_the_best_student_sized_model():
    table = subset_table(_results(1.0))
    row = next(line for line in table.splitlines() if line.startswith("| V+F+A "))
    assert row == "| V+F+A | 34.00 | 40.00 | 41.00 | **42.00** |"


def test_report_is_written_from_the_files(tmp_path):
    results = _results(1.0)
    (tmp_path / "results.json").write_text(json.dumps(results))
    runs = tmp_path / "runs" / "student"
    runs.mkdir(parents=True)
    (runs / "metrics.json").write_text(json.dumps([{"epoch": 0, "train/loss": 2.0, "val/action_top1": 10.0},
                                                   {"epoch": 1, "train/loss": 1.5, "val/action_top1": 12.5}]))
    report = write_report(tmp_path).read_text()
    assert "**holds**" in report and "does not hold" not in report
    assert "42.00" in report and "12.50" in report  # from results.json and metrics.json
    for figure in ("sweep.png", "training.png"):
        assert (tmp_path / figure).stat().st_size > 1000
        assert f"]({figure})" in report
