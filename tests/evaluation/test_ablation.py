"""The ablation: Baseline -> Baseline w/ delta -> KARMMA_S, each step a paired effect over clips and seeds."""

import numpy as np

from karmma.evaluation.claims import ablation
from karmma.evaluation.report import ablation_table


def _per_clip(correct: np.ndarray, sweep_correct: np.ndarray) -> dict:
    codes = "".join(str(int(c)) for c in correct)
    return {
        "ids": [f"c{i}" for i in range(len(correct))],
        "subsets": {"V+F": codes, "V": codes},
        "sweep": {"0.0": [codes], "0.5": ["".join(str(int(c)) for c in sweep_correct)]},
    }


def _seed(rng, rates: dict[str, float]) -> dict:
    models = {}
    for name, rate in rates.items():
        correct = rng.random(400) < rate
        models[name] = {
            "subsets": {"V+F": {}, "V": {}},
            "per_clip": _per_clip(correct, correct & (rng.random(400) < 0.5)),
        }
    return {"models": models}


def test_each_step_is_the_paired_difference_of_its_two_models():
    rng = np.random.default_rng(0)
    seeds = [_seed(rng, {"baseline": 0.3, "baseline_delta": 0.5, "student": 0.5}) for _ in range(3)]
    rows = ablation(seeds)
    steps = list(dict.fromkeys(r["step"] for r in rows))
    assert steps == [
        "Baseline → Baseline w/ δ (+ modality dropout and learned tokens)",
        "Baseline w/ δ → KARMMA_S (+ distillation)",
    ]
    first = {r["condition"]: r for r in rows if r["step"] == steps[0]}
    second = {r["condition"]: r for r in rows if r["step"] == steps[1]}
    assert set(first) == {"V+F", "V", "dropout p = 0.0", "dropout p = 0.5"}
    assert first["V+F"]["verdict"] == "holds" and 14 < first["V+F"]["effect"] < 26  # +20 points drawn
    assert second["V+F"]["verdict"] == "inconclusive"  # no difference drawn
    assert first["V+F"]["clips"] == 1200 and first["V+F"]["seeds"] == 3
    table = ablation_table(rows)
    assert table.splitlines()[2].startswith("| V+F | 1200 | +")


def test_the_table_shows_the_papers_difference_only_where_the_paper_has_both_models():
    from karmma.evaluation.report import paper_step_effect

    rng = np.random.default_rng(1)
    rows = ablation([_seed(rng, {"baseline": 0.3, "baseline_delta": 0.5, "student": 0.5})])
    subsets = {"models": {"baseline": {"V": 30.0}, "baseline_delta": {"V": 35.5}, "student": {"V": 36.0, "V+F": 1.0}}}
    sweep = {"models": {"baseline_delta": {"0.0": 40.0}, "student": {"0.0": 41.0}}}
    table = ablation_table(rows, subsets, sweep).splitlines()
    assert table[0].count("| paper |") == 2
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table[2:]}
    assert cells["V"][3] == "+5.50" and cells["V"][5] == "+0.50"
    assert cells["V+F"][3] == cells["V+F"][5] == ""  # the paper has no Baseline w/ δ on V+F here
    assert cells["dropout p = 0.0"][3] == "" and cells["dropout p = 0.0"][5] == "+1.00"
    assert paper_step_effect("no such step", "V", subsets, sweep) is None
    assert "paper" not in ablation_table(rows).splitlines()[0]  # no paper's table: our columns only
