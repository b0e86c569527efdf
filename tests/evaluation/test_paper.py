import json
import re
from dataclasses import asdict

import pytest
import torch

from karmma.evaluation.paper import match_paper, paper_results
from karmma.evaluation.report import write_report
from official_formats import write_epic_release

SPEC_COLUMNS = {"epic": 0, "epic_star": 1, "ssv2": 2}  # the columns of the specification's accuracy table
SPEC_MODELS = ("baseline", "baseline_delta", "student")


def _spec_rows(spec: str) -> list[list[str]]:
    """The accuracy table of KARMMA.md's "The paper's numbers": its rows' cells after 'method'."""
    section = spec.split("## The paper's numbers", 1)[1]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row] for row in rows[2:]]  # past the header and its rule


def test_the_paper_numbers_are_the_specification(shared_data):
    """Every number of paper_results.json against the specification's text (KARMMA.md beside shared/data)."""
    spec = (shared_data.parent / "KARMMA.md").read_text()
    datasets = paper_results()["datasets"]
    rows = _spec_rows(spec)
    assert rows[0][0] == "KARMMA_T" and len(rows) == 8
    checked = 0
    for key, column in SPEC_COLUMNS.items():
        table = datasets[key]["subsets"]
        other = "D" if key == "ssv2" else "A"
        full = f"V+F+{other}"
        assert table["models"]["teacher"] == {full: float(rows[0][2 + column])}
        for row in rows[1:]:
            subset = row[1].replace("[A/D]", other)
            for model, value in zip(SPEC_MODELS, row[2 + column].split(" / ")):
                assert table["models"][model][subset] == float(value), (key, model, subset)
                checked += 1
    assert checked == 3 * 7 * 3
    sweeps = {
        "epic": re.search(r"Baseline (\S+) → (\S+),\s+Baseline w/ δ (\S+) → (\S+), KARMMA_S (\S+) → (\S+)\.", spec),
        "ssv2": re.search(r"On SSv2: (\S+) → (\S+), (\S+) → (\S+),\s+(\S+) → (\S+)\.", spec),
    }
    for key, found in sweeps.items():
        numbers = [float(v) for v in found.groups()]
        sweep = datasets[key]["sweep"]["models"]
        assert [sweep[m][p] for m in SPEC_MODELS for p in ("0.0", "0.9")] == numbers, key
    flops = re.search(
        r"GFLOPs teacher A (\d+), V (\d+), V\+A (\d+),\s+V\+F (\d+), V\+F\+A (\d+); student A ≈ (\d+), V ≈ (\d+), V\+A ≈ (\d+), V\+F ≈ (\d+),\s+V\+F\+A ≈ (\d+)",
        spec,
    )
    memory = re.search(r"Memory \(GB\) teacher ([\d., ]+); student\s+([\d., ]+)\.", spec)
    resources = datasets["epic"]["resources"]["models"]
    subsets = ["A", "V", "V+A", "V+F", "V+F+A"]
    assert [resources[m][s]["gflops"] for m in ("teacher", "student") for s in subsets] == [
        float(v) for v in flops.groups()
    ]
    spec_memory = [float(v) for group in memory.groups() for v in group.replace(",", " ").split()]
    assert [resources[m][s]["memory_gb"] for m in ("teacher", "student") for s in subsets] == spec_memory


def test_every_paper_table_says_where_it_was_copied_from():
    for key, dataset in paper_results()["datasets"].items():
        for name in ("subsets", "sweep", "resources"):
            if name in dataset:
                assert "KARMMA.md" in dataset[name]["table"] and "paper" in dataset[name]["table"], (key, name)


def _results(heads: dict, data_format: str | None = None, **extra) -> dict:
    model = {"heads": heads, "subsets": {}, "sweep": {}, **({"data_format": data_format} if data_format else {})}
    return {"models": {"student": model}, **extra}


def test_a_run_is_matched_to_the_paper_data_set_by_format_and_heads():
    epic, ssv2 = {"verb": 97, "noun": 300}, {"action": 174}
    assert match_paper(_results(epic, "epic"), epic).key == "epic"
    assert match_paper(_results(epic, "epic_star"), epic).key == "epic_star"
    assert match_paper(_results(ssv2, "ssv2"), ssv2).key == "ssv2"
    unrecorded = match_paper(_results(epic), epic)
    assert unrecorded.key == "epic" and "matched by its heads" in unrecorded.note
    synth = match_paper(_results({"verb": 8, "noun": 12}, "epic", ceilings={"V": {}}), {"verb": 8, "noun": 12})
    assert synth.key is None and synth.note.startswith("SynthKitchen is this project's generated data set")
    other = match_paper(_results({"verb": 8, "noun": 12}, "manifest"), {"verb": 8, "noun": 12})
    assert other.key is None and "this run has 8 verb, 12 noun (data format manifest)" in other.note


@pytest.fixture(scope="module")
def epic_run(tmp_path_factory, shared_data):
    """results.json of three random-weight tiny student-sized models scored on the validation
    clips of the EPIC-KITCHENS-100 release fixture (real rows, 97 verbs and 300 nouns)."""
    from karmma.artifacts import describe_model, save_student
    from karmma.data.config import DatasetConfig, dataset_heads
    from karmma.evaluation.evaluate import EvaluationSettings, evaluate_models, load_for_evaluation
    from karmma.stages import build_stage_model
    from karmma.train_config import TrainConfig

    root = tmp_path_factory.mktemp("epic100")
    write_epic_release(root, shared_data)
    folder = tmp_path_factory.mktemp("epic_report")
    evaluated = []
    for stage in ("baseline", "baseline_delta", "student"):
        config = TrainConfig(stage=stage, preset="tiny", data=DatasetConfig(format="epic", root=str(root)))
        heads = dataset_heads(config.data)
        torch.manual_seed(0)
        model = build_stage_model(config, heads).eval()
        file = save_student(model, describe_model(model, asdict(config), heads), folder / f"{stage}.safetensors")
        evaluated.append(load_for_evaluation(file, stage))
    settings = EvaluationSettings(
        split="validation", probabilities=(0.0, 0.5, 0.9), seeds=1, batch_size=4, workers=0, progress=False
    )
    results = evaluate_models(evaluated, settings)
    (folder / "results.json").write_text(json.dumps(results))
    return folder, results


def _table(report: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading``: header row first, without the rule."""
    lines = report.split(heading, 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_the_report_of_an_epic_run_shows_the_paper_beside_it_and_every_row_its_clips(epic_run):
    folder, results = epic_run
    student = results["models"]["student"]
    assert student["data_format"] == "epic" and student["heads"] == {"verb": 97, "noun": 300}
    report = write_report(folder).read_text()
    assert "The run is on EPIC-KITCHENS-100: beside each of our numbers" in report
    paper = paper_results()["datasets"]["epic"]

    action = _table(report, "### Action top-1")
    assert action[0] == [
        "subset",
        "clips",
        "Baseline",
        "paper",
        "Δ",
        "Baseline w/ δ",
        "paper",
        "Δ",
        "KARMMA_S",
        "paper",
        "Δ",
    ]
    for row in action[1:]:
        subset = row[0]
        assert int(row[1]) == student["subsets"][subset]["samples"] > 0
        for at, name in ((2, "baseline"), (5, "baseline_delta"), (8, "student")):
            ours = results["models"][name]["subsets"][subset]["action_top1"]
            assert row[at].strip("*").startswith(f"{ours:.2f}")
            assert row[at + 1] == f"{paper['subsets']['models'][name][subset]:.2f}"
            assert row[at + 2] == f"{ours - paper['subsets']['models'][name][subset]:+.2f}"
    assert len(action) == 1 + 7

    full = _table(report, "## All modalities present")
    assert full[0][:4] == ["model", "modalities", "clips", "verb top1"] and full[0][5:8] == [
        "action top1",
        "paper",
        "Δ",
    ]
    assert [row[2] for row in full[1:]] == [str(m["subsets"]["V+F+A"]["samples"]) for m in results["models"].values()]
    assert full[-1][6] == "42.55"  # KARMMA_S, the paper's EPIC-KITCHENS V+F+A

    sweep = _table(report, "## Random sensor dropouts")
    assert sweep[0][:5] == ["p", "clips", "Baseline", "paper", "Δ"]
    assert [row[0] for row in sweep[1:]] == ["0.0", "0.5", "0.9"]
    assert all(row[1] == str(student["clips"]) for row in sweep[1:])
    assert [row[3] for row in sweep[1:]] == ["40.0", "–", "13.0"]  # the paper's Baseline end points

    # each ablation step beside the paper's difference between its two models, where the paper has both
    ablation = _table(report, "## What each part adds (ablation)")
    assert ablation[0] == [
        "condition",
        "clips",
        "Baseline → Baseline w/ δ (+ modality dropout and learned tokens)",
        "paper",
        "Baseline w/ δ → KARMMA_S (+ distillation)",
        "paper",
    ]
    rows = {row[0]: row for row in ablation[1:]}
    assert rows["V+F+A"][3] == "+1.49" and rows["V+F+A"][5] == "+1.06"  # 41.49 - 40.00, 42.55 - 41.49
    assert rows["F"][3] == "+23.06" and rows["F"][5] == "+3.03"
    assert rows["dropout p = 0.9"][3] == "+10.50" and rows["dropout p = 0.9"][5] == "+2.50"
    assert rows["dropout p = 0.5"][3] == rows["dropout p = 0.5"][5] == ""  # the paper's figure: end points only
    assert "not a paired effect, so compare it with our interval" in report

    for heading in ("### Verb top-1", "### Noun top-1"):
        table = _table(report, heading)
        assert table[0][:2] == ["subset", "clips"] and "paper" not in table[0]
        assert all(int(row[1]) > 0 for row in table[1:])
    assert "The paper reports action top-1 only" in report


def test_the_resource_table_shows_the_paper_only_for_its_preset():
    from karmma.evaluation.paper import PaperMatch, paper_resources, resource_paper_note
    from karmma.evaluation.report import resource_table

    row = {"gflops": 560.0, "peak_mem_mb": 2048.0, "latency_ms": 900.0}
    models = {"teacher": {"subsets": {"V+F+A": row, "F": row}}, "student": {"subsets": {"V+F+A": row, "F": row}}}
    benchmark = {"models": models, "preset": "paper", "device": "cpu"}
    epic = PaperMatch("epic", "")
    table = resource_table(benchmark, paper_resources(epic, benchmark)).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:8] == [
        "subset",
        "KARMMA_T GFLOPs",
        "paper",
        "Δ",
        "KARMMA_T peak MB",
        "KARMMA_T peak GB",
        "paper",
        "Δ",
    ]
    assert table[2].startswith("| V+F+A | 560.000 | 1700 | -1140 | 2048.0 | 2.00 | 2.50 | -0.50 | 900 |")
    assert table[3].startswith("| F | 560.000 | – | – | 2048.0 | 2.00 | – | – | 900 |")  # not in the paper's figure
    tiny = {**benchmark, "preset": "tiny"}
    assert paper_resources(epic, tiny) is None and "paper" not in resource_table(tiny, None)
    assert "this benchmark measured `tiny`" in resource_paper_note(epic, tiny)[0]
    assert resource_paper_note(PaperMatch("ssv2", ""), benchmark)[0].startswith("The paper gives resources for EPIC")
