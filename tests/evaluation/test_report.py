import json
import re

import pytest

from karmma.cli import main
from karmma.evaluation.report import claims_table, full_set_table, subset_table, wilson_half_width, write_report
from one_seed_results import one_seed_results, with_per_class


def test_table_marks_the_best_student_sized_model():
    table = subset_table(one_seed_results(1.0))
    row = next(line for line in table.splitlines() if line.startswith("| V+F+A "))
    cells = [
        f"{v} ± {wilson_half_width(float(v.strip('*')), 10):.1f}" for v in ("34.00", "40.00", "41.00", "**42.00**")
    ]
    assert row == "| V+F+A | 10 | " + " | ".join(cells) + " |"  # clips scored, then each model ± its interval


def test_report_is_written_from_the_files(tmp_path):
    results = one_seed_results(1.0)
    (tmp_path / "results.json").write_text(json.dumps(results))
    runs = tmp_path / "runs" / "student"
    runs.mkdir(parents=True)
    (runs / "metrics.json").write_text(
        json.dumps(
            [
                {"epoch": 0, "train/loss": 2.0, "val/action_top1": 10.0},
                {"epoch": 1, "train/loss": 1.5, "val/action_top1": 12.5},
            ]
        )
    )
    report = write_report(tmp_path).read_text()
    assert "**holds**" in report and "does not hold" not in report
    assert "42.00" in report and "12.50" in report  # from results.json and metrics.json
    for figure in ("sweep.png", "training.png"):
        assert (tmp_path / figure).stat().st_size > 1000
        assert f"]({figure})" in report


def test_wilson_half_width():
    assert wilson_half_width(50, 100) == pytest.approx(9.62, abs=0.01)  # the textbook 95 % interval 40.4 - 59.6
    assert 0 < wilson_half_width(0, 32) < wilson_half_width(50, 32)  # not zero at 0 %: one clip more is plausible
    assert wilson_half_width(50, 10_000) < 1


def test_report_explains_models_chance_noise_and_classes(tmp_path):
    results = with_per_class(one_seed_results(1.0))
    results["models"]["baseline_masked"] = results["models"]["baseline"]
    results["models"]["my_model"] = results["models"]["baseline"]  # a name the report has no description of
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = write_report(tmp_path).read_text()
    assert "| KARMMA_S | `student` | the light **student**" in report
    assert "| Masked Baseline (ours) | `baseline_masked` |" in report
    assert "| my_model | `my_model` | a model evaluated under the name `my_model` (no description known)" in report
    assert "| action top1 | 5 verbs × 6 nouns = 30 | 3.33 | 70.00 |" in report
    assert "With 10 clips, one clip is 10.0 points" in report
    assert "### Verb top-1" in report and "### Noun top-1" in report
    assert "| take | 6 |" in report and "| put | 4 |" in report and "| cup | 7 |" in report
    take = next(line for line in report.splitlines() if line.startswith("| take | 6 |"))
    assert take.endswith("| 100 | – | – |")  # student 6 of 6; models without confusion counts show –
    assert "docs/method.md" in report and "KARMMA.md" not in report
    assert (tmp_path / "per_class.png").stat().st_size > 10_000


def test_training_curves_are_found_through_the_models_sources(tmp_path):
    """Run folders anywhere (named by results.json), a one-epoch run, and loss terms of several kinds."""
    results = one_seed_results(1.0)
    elsewhere = tmp_path / "elsewhere" / "runs"
    for name, history in {
        "student": [
            {"epoch": 0, "train/ce": 2.0, "train/kd": 0.3, "train/loss": 2.1, "val/ce": 2.2, "val/action_top1": 10.0},
            {"epoch": 1, "train/ce": 1.5, "train/kd": 0.2, "train/loss": 1.6, "val/ce": 2.0, "val/action_top1": 12.5},
        ],
        "teacher": [
            {
                "epoch": 0,
                "train/ce": 1.9,
                "train/info_nce": 1.2,
                "train/loss": 2.0,
                "val/ce": 2.1,
                "val/action_top1": 37.5,
            }
        ],
    }.items():
        (elsewhere / name / "checkpoints").mkdir(parents=True)
        (elsewhere / name / "metrics.json").write_text(json.dumps(history))
    results["models"]["student"]["source"] = str(elsewhere / "student" / "checkpoints" / "best.ckpt")  # absolute
    results["models"]["teacher"]["source"] = "elsewhere/runs/teacher"  # relative to the results folder
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = write_report(tmp_path).read_text()
    assert "| KARMMA_S | 2 | 12.50 (1) | 12.50 |" in report
    assert "| KARMMA_T | 1 | 37.50 (0) | 37.50 |" in report
    assert (tmp_path / "training.png").stat().st_size > 10_000


def test_ceilings_shown_beside_the_models_and_a_model_above_one_is_flagged():
    from karmma.data.synth_world import information_ceilings
    from karmma.evaluation.report import ceiling_violations

    results = one_seed_results(student_bonus=1.0)
    results["ceilings"] = information_ceilings()
    table = subset_table(results)
    assert table.splitlines()[0].endswith("| ceiling |")
    assert f"| {results['ceilings']['V+F+A']['action_top1']:.2f} |" in table.splitlines()[2]
    assert ceiling_violations(results) == []
    # the A ceiling is 14.7 % action; 10 clips give a wide interval, so a violation must be far above it
    results["models"]["student"]["subsets"]["A"]["action_top1"] = 95.0
    assert ceiling_violations(results) == ["student action_top1 on A: 95.0 > ceiling 14.7 (10 clips)"]
    results["models"]["student"]["subsets"]["A"]["action_top1"] = 30.0  # above the ceiling, within the noise
    assert ceiling_violations(results) == []
    # the full-set table gives the ceilings of each model's full set too
    full = full_set_table(results).splitlines()
    c = results["ceilings"]["V+F+A"]
    assert full[0].endswith("| ceiling (verb / noun / action) |")
    assert full[2].endswith(f"| {c['verb_top1']:.2f} / {c['noun_top1']:.2f} / {c['action_top1']:.2f} |")


def test_a_pre_trained_extractor_above_its_modalitys_ceiling_is_flagged_in_every_seed():
    from karmma.data.synth_world import information_ceilings
    from karmma.evaluation.report import ceiling_violations

    def extractors(flow_verb: float) -> dict:
        return {"student": {"F": {"verb_top1": flow_verb, "noun_top1": 1.0, "action_top1": 1.0, "samples": 600}}}

    results = one_seed_results(student_bonus=1.0)
    results["ceilings"] = information_ceilings()
    verb = results["ceilings"]["F"]["verb_top1"]
    results["extractors"] = extractors(verb)  # at the ceiling: fine
    assert ceiling_violations(results) == []
    results["extractors"] = extractors(verb + 10)  # 10 points above on 600 clips: beyond twice the noise
    assert ceiling_violations(results) == [
        f"F extractor, student-sized verb_top1 on F: {verb + 10:.1f} > ceiling {verb:.1f} (600 clips)"
    ]
    over_seeds = {
        "models": {},
        "ceilings": results["ceilings"],
        "seeds": {"0": {"extractors": extractors(verb)}, "1": results},
    }
    assert ceiling_violations(over_seeds) == [
        f"F extractor, student-sized (seed 1) verb_top1 on F: {verb + 10:.1f} > ceiling {verb:.1f} (600 clips)"
    ]


def test_the_report_shows_the_teacher_logits_the_student_distils(tmp_path):
    from karmma.evaluation.report import teacher_logits_section

    row = {
        "views": 960,
        "verb_top1": 80.0,
        "noun_top1": 70.0,
        "action_top1": 60.0,
        "temperature": 4.0,
        "entropy": {"verb": 0.5, "noun": 1.25},
        "uniform_entropy": {"verb": 2.197, "noun": 2.708},
    }
    results = one_seed_results(student_bonus=1.0)
    assert teacher_logits_section(results) == []  # nothing cached: no section
    results["teacher_logits"] = {"train": row, "validation": {**row, "views": 120}}
    lines = teacher_logits_section(results)
    assert "T = 4" in lines[2] and "verb 2.20" in lines[2]
    assert lines[-3] == "| - | train | 960 | 60.0 | 80.0 | 70.0 | 0.50 | 1.25 |"
    over_seeds = {"models": results["models"], "seeds": {"0": results, "1": results}}
    assert sum(line.startswith("| 1 | validation | 120 |") for line in teacher_logits_section(over_seeds)) == 1


def test_the_report_holds_each_extractor_against_its_modalitys_ceiling():
    from karmma.evaluation.report import extractors_section

    def row(verb, noun, action, samples=100):
        return {"verb_top1": verb, "noun_top1": noun, "action_top1": action, "samples": samples}

    ceilings = {"V": row(80.0, 80.0, 60.0), "F": row(90.0, 50.0, 40.0), "A": row(40.0, 20.0, 10.0)}
    seed = {
        "extractors": {
            "teacher": {"V": row(72.0, 70.0, 48.0), "F": row(80.0, 30.0, 20.0), "A": row(30.0, 15.0, 9.0)},
            "student": {"V": row(60.0, 60.0, 42.0), "F": row(70.0, 25.0, 32.0), "A": row(20.0, 10.0, 5.0)},
        }
    }
    assert extractors_section({"models": {}, "ceilings": ceilings}) == []  # no extractor scored: no section
    lines = extractors_section({"models": {}, "ceilings": ceilings, **seed})
    table = {line.split(" | ")[0]: line for line in lines if line.startswith("| ") and "-sized" in line}
    # 48 of a 60 ceiling is 0.80 of it; 20 of 40 is 0.50: below the target
    assert table["| V, teacher-sized"].endswith("| 0.80 | 0.90 | 0.88 |")
    assert table["| F, teacher-sized"].endswith("| 0.50 (below) | 0.89 | 0.60 (below) |")
    assert table["| A, student-sized"].endswith("| 0.50 (below) | 0.50 (below) | 0.50 (below) |")
    # over seeds: the mean of the seeds and their clips summed
    other = {
        "extractors": {**seed["extractors"], "student": {**seed["extractors"]["student"], "V": row(40.0, 60.0, 30.0)}}
    }
    lines = extractors_section({"models": {}, "ceilings": ceilings, "seeds": {"0": seed, "1": other}})
    student_v = next(line for line in lines if line.startswith("| V, student-sized"))
    assert student_v.startswith("| V, student-sized | 200 | 50.0 | 60.0 | 36.0 |") and "| 0.60 (below) |" in student_v


def _demo_marker(folder, flavour: str) -> None:
    (folder / "demo.json").write_text(json.dumps({"version": 7, "flavour": flavour, "seeds": [0]}))


def test_a_quick_run_says_so_and_gives_no_verdict_where_models_are_at_chance(tmp_path):
    """The quick demo's case: KARMMA_S, Baseline w/ δ and Baseline all at 3.12 % on 32 clips of 30 actions."""
    results = one_seed_results(1.0)
    for name in ("baseline", "baseline_delta", "student"):
        model = results["models"][name]
        model["clips"] = 32
        for row in (*model["subsets"].values(), *model["sweep"].values()):
            row.update(action_top1=3.12, samples=32)
    (tmp_path / "results.json").write_text(json.dumps(results))
    _demo_marker(tmp_path, "quick")
    report = write_report(tmp_path).read_text()
    assert report.splitlines()[2].startswith("> **A quick run** (`karmma demo --quick`)")
    claims = report.split("## The paper's claims on these results", 1)[1].split("\n## ", 1)[0]
    assert "**holds**" not in claims and "**does not hold**" not in claims
    assert "- KARMMA_S ≥ Baseline w/ δ ≥ Baseline on the full set (V+F+A): *no verdict* (at chance: 3.12" in claims

    _demo_marker(tmp_path, "default")
    assert "A quick run" not in write_report(tmp_path).read_text()


def test_one_interval_per_number_on_the_clips_its_row_scored(tmp_path):
    """600 clips, 500 with audio: the Noise paragraph and the tables give the V+F+A numbers the
    interval of their 500 clips, and the sweep says why its p = 0 is another population."""
    results = one_seed_results(1.0)
    for model in results["models"].values():
        model["clips"] = 600
        model["availability"] = {"V": 600, "F": 600, "A": 500}
        for subset, row in model["subsets"].items():
            row["samples"] = 500 if "A" in subset else 600
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = write_report(tmp_path).read_text()
    half = wilson_half_width(42.0, 500)
    assert f"{wilson_half_width(42.0, 600):.1f}" != f"{half:.1f}"  # the two clip counts give different intervals
    assert f"KARMMA_S 42.0 ± {half:.1f} (500 clips)" in report
    assert f"| KARMMA_S | V+F+A | 500 | 42.00 ± {half:.1f} |" in report
    assert f"| V+F+A | 500 | 34.00 ± {wilson_half_width(34.0, 500):.1f} |" in report
    assert f"| V+F | 600 | 34.00 ± {wilson_half_width(34.0, 600):.1f} |" not in report  # the teacher has V+F+A only
    assert f"| V+F | 600 | – | 36.00 ± {wilson_half_width(36.0, 600):.1f} |" in report
    assert "p = 0 is not the V+F+A row above: the sweep scores all 600 clips" in report and "100 lack A" in report
    assert "| 0.0 | 600 |" in report
    assert "SynthKitchen" not in report and "No column of the paper's numbers" in report


def _captured_figure(monkeypatch, module) -> list:
    """Replace ``module``'s figure saving by a list that collects the figures it would save."""
    captured = []
    monkeypatch.setattr(module, "atomic_savefig", lambda fig, path, **kwargs: captured.append(fig))
    return captured


def test_training_curves_give_every_run_its_own_colour(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    from karmma.evaluation import report as report_module

    saved = _captured_figure(monkeypatch, report_module)
    history = [{"epoch": 0, "train/ce": 2.0, "val/ce": 2.1, "val/action_top1": 5.0}]
    report_module.plot_training({f"run{i}": history for i in range(11)}, tmp_path / "training.png")
    legend = saved[0].legends[0]
    colours = [to_hex(line.get_color()) for line in legend.get_lines()]
    assert len(colours) == 11 and len(set(colours)) == 11


def test_dropout_study_lines_stay_visible_and_the_title_names_the_split(tmp_path, monkeypatch):
    from karmma.evaluation import dropout_study_report as dropout_study

    saved = _captured_figure(monkeypatch, dropout_study)
    same = {"action_top1": 20.0, "samples": 120}  # V and F equal at every rate: one would hide the other
    study = {"rates": {r: {"split": "validation", "subsets": {"V": same, "F": same}} for r in ("0", "0.5")}}
    dropout_study.plot_dropout_study(study, tmp_path / "study.png")
    ax = saved[0].axes[0]
    v, f = (line for line in ax.get_lines() if line.get_label() in ("V", "F"))
    assert (v.get_marker(), v.get_linestyle()) != (f.get_marker(), f.get_linestyle())
    assert list(v.get_xdata()) != list(f.get_xdata())  # side by side at each rate
    assert ax.get_title() == "teacher accuracy per modality subset given, on the validation split (120 clips)"
    table = dropout_study.study_table(study)
    assert table.splitlines()[2] == "| *clips scored* | 120 | 120 |"


def test_resource_figure_has_plain_latency_labels(tmp_path, monkeypatch):
    from karmma import benchmark

    saved = _captured_figure(monkeypatch, benchmark)
    rows = {"A": (6.0, 5.8, 6.5), "V": (12.0, 11.0, 13.0), "V+A": (20.0, 19.0, 22.0)}  # within a decade
    model = {
        "subsets": {
            s: {"gflops": 1.0, "peak_mem_mb": 10.0, "latency_ms": m, "latency_ms_min": lo, "latency_ms_max": hi}
            for s, (m, lo, hi) in rows.items()
        }
    }
    benchmark.plot_benchmark(
        {"models": {"teacher": model, "student": model}, "preset": "tiny", "device": "cpu"}, "r.png"
    )
    latency = saved[0].axes[2]
    saved[0].canvas.draw()
    labels = [t.get_text() for t in (*latency.get_yticklabels(), *latency.get_yticklabels(minor=True)) if t.get_text()]
    assert labels and all(re.fullmatch(r"[\d,.]+", text) for text in labels), labels


def test_a_split_without_labels_has_no_report_and_says_why(tmp_path):
    from karmma.evaluation.report import write_report

    model = {"labelled": False, "split": "test", "clips": 3, "views": 1, "modalities": ["V"], "predictions": {}}
    (tmp_path / "results.json").write_text(json.dumps({"models": {"student": model}}))
    with pytest.raises(ValueError, match="student scored a split without labels"):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_the_claims_table_marks_decisions_bold_and_no_verdict_in_italics():
    claim = {"source": "paper", "effect": 1.0, "ci": [0.5, 1.5], "clips": 100, "seeds": 3}
    verdicts = ["holds", "does not hold", "inconclusive", "no verdict (both at chance)"]
    table = claims_table([{**claim, "claim": f"claim {i}", "verdict": v} for i, v in enumerate(verdicts)])
    cells = [line.split(" | ")[2] for line in table.splitlines()[2:]]
    assert cells == ["**holds**", "**does not hold**", "inconclusive", "*no verdict* (both at chance)"]


@pytest.mark.e2e  # writes the report and its figures
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
