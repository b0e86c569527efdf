import numpy as np
import pytest

from karmma.evaluation.claims import (
    AT_CHANCE,
    NO_VERDICT,
    aggregate_seeds,
    check_claims,
    claims_at_chance,
    decide_claims,
)
from one_seed_results import one_seed_results

SUBSETS = ("V+A", "V", "A")


def _model(rng, accuracy: float, clips: int, sweep_accuracy: dict) -> dict:
    def codes(acc):
        return "".join("1" if r < acc else "0" for r in rng.random(clips))

    subsets = {s: codes(a) for s, a in zip(SUBSETS, (accuracy, accuracy - 0.1, accuracy - 0.2))}
    sweep = {"0.0": [subsets["V+A"]], **{p: [codes(a), codes(a)] for p, a in sweep_accuracy.items()}}
    return {
        "stage": "x",
        "split": "test",
        "clips": clips,
        "subsets": {s: {"action_top1": 100 * c.count("1") / clips, "samples": clips} for s, c in subsets.items()},
        "sweep": {p: {"action_top1": 100 * np.mean([r.count("1") / clips for r in runs])} for p, runs in sweep.items()},
        "per_clip": {"ids": [f"c{i}" for i in range(clips)], "subsets": subsets, "sweep": sweep},
    }


def _seed(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "models": {
            "teacher": _model(rng, 0.5, 600, {"0.5": 0.4}),
            "baseline": _model(rng, 0.5, 600, {"0.3": 0.3, "0.5": 0.2}),  # collapses under dropouts
            "baseline_delta": _model(rng, 0.5, 600, {"0.3": 0.45, "0.5": 0.4}),
            "student": _model(rng, 0.7, 600, {"0.3": 0.65, "0.5": 0.6}),
        },
        "settings": {"seeds": 2},
    }


def test_claims_decided_over_seeds():
    aggregated = aggregate_seeds({s: _seed(s) for s in (0, 1, 2)})
    claims = {c["claim"]: c for c in aggregated["claims"]}
    assert claims["KARMMA_S more accurate than Baseline on V+A"]["verdict"] == "holds"
    assert claims["KARMMA_S more accurate than Baseline on V+A"]["effect"] == pytest.approx(20, abs=4)
    # equal models: no verdict either way
    assert claims["Baseline w/ δ more accurate than Baseline on V"]["verdict"] == "inconclusive"
    # the Baseline falls from 50 to 20 % at p = 0.5, the student from 70 to 60 %
    assert (
        claims["KARMMA_S loses less accuracy than the Baseline when sensors drop out with p = 0.5"]["verdict"]
        == "holds"
    )
    teacher = claims["KARMMA_S more accurate than its teacher KARMMA_T on V+A"]
    assert teacher["verdict"] == "holds" and teacher["clips"] == 1800 and teacher["seeds"] == 3
    assert "does not hold" not in {c["verdict"] for c in aggregated["claims"]}


def test_aggregated_results_keep_the_layout():
    per_seed = {s: _seed(s) for s in (0, 1)}
    aggregated = aggregate_seeds(per_seed)
    student = aggregated["models"]["student"]
    values = [per_seed[s]["models"]["student"]["subsets"]["V"]["action_top1"] for s in (0, 1)]
    assert student["subsets"]["V"]["action_top1"] == pytest.approx(np.mean(values))
    assert student["subsets"]["V"]["action_top1_ci95"] == pytest.approx(12.706 * np.std(values, ddof=1) / np.sqrt(2))
    assert student["clips"] == 1200 and student["split"] == "test"
    # the clips a row scored add up over seeds like the model's (a report's clips column), not a mean of them
    assert student["subsets"]["V"]["samples"] == 1200 and "samples_ci95" not in student["subsets"]["V"]
    assert set(aggregated["seeds"]) == {"0", "1"} and "0.5" in student["sweep"]


def test_the_opposite_effect_does_not_hold():
    per_seed = {}
    for s in (0, 1, 2):
        result = _seed(s)
        result["models"]["student"], result["models"]["baseline"] = (
            result["models"]["baseline"],
            result["models"]["student"],
        )
        per_seed[s] = result
    claims = {c["claim"]: c for c in decide_claims(list(per_seed.values()))}
    assert claims["KARMMA_S more accurate than Baseline on V+A"]["verdict"] == "does not hold"


def test_report_of_aggregated_results_shows_intervals_and_verdicts(tmp_path):
    import json

    from karmma.evaluation.report import write_report

    aggregated = aggregate_seeds({s: _seed(s) for s in (0, 1, 2)})
    for model in aggregated["models"].values():
        model.update(modalities=["V", "A"], views=1)
    (tmp_path / "results.json").write_text(json.dumps(aggregated))
    report = write_report(tmp_path).read_text()
    assert (
        "decided over 3 seeds" in report
        and "| KARMMA_S more accurate than Baseline on V+A | paper | **holds** |" in report
    )
    student = aggregated["models"]["student"]["subsets"]["V+A"]
    assert f"{student['action_top1']:.2f}** ± {student['action_top1_ci95']:.1f}" in report
    assert "95 % interval over 3 training seeds" in report


def test_a_claim_between_two_models_at_chance_gets_no_verdict():
    per_seed = {}
    for s in (0, 1):
        result = _seed(s)
        rng = np.random.default_rng(10 + s)
        for name in ("student", "baseline"):  # 3 % with 30 actions (uniform 3.3 %): nothing learned
            result["models"][name] = _model(rng, 0.03, 600, {"0.3": 0.03, "0.5": 0.03})
        for model in result["models"].values():
            model["heads"] = {"verb": 5, "noun": 6}
        per_seed[s] = result
    claims = {c["claim"]: c for c in claims_at_chance(aggregate_seeds(per_seed))}
    no_verdict = "no verdict (both at chance)"
    assert claims["KARMMA_S more accurate than Baseline on V+A"]["verdict"] == no_verdict
    assert (
        claims["KARMMA_S loses less accuracy than the Baseline when sensors drop out with p = 0.5"]["verdict"]
        == no_verdict
    )
    # one model above chance: the comparison says something
    assert claims["KARMMA_S more accurate than Baseline w/ δ on V+A"]["verdict"] == "does not hold"
    assert claims["KARMMA_S more accurate than its teacher KARMMA_T on V+A"]["verdict"] == "does not hold"


def test_one_seeds_claims_hold_on_paper_like_numbers_and_fail_otherwise():
    verdicts = [claim["verdict"] for claim in check_claims(one_seed_results(student_bonus=1.0))]
    assert verdicts == ["holds"] * 6 + ["reported"]  # the teacher's accuracy is reported beside them
    verdicts = [claim["verdict"] for claim in check_claims(one_seed_results(student_bonus=-3.0))]
    assert verdicts[:3] == ["does not hold"] * 3


def test_one_seeds_claims_leave_out_numbers_where_every_compared_model_is_at_chance():
    results = one_seed_results(1.0)  # 10 clips, 30 actions: chance 3.3 %; on A all three score 2-7 %
    claims = {claim["claim"]: claim for claim in check_claims(results)}
    order = claims["the same order on at least 5 of the 6 subsets"]
    assert order["verdict"] == "holds" and "; A left out: every compared model at chance" in order["evidence"]
    singles = next(v for k, v in claims.items() if k.startswith("on every single-modality subset"))
    assert (singles["verdict"], singles["evidence"]) == ("holds", "V: 32.00 vs 37.00, F: 3.00 vs 25.00")
    # F: the Baseline alone is at chance
    for subset in ("V+A", "F+A", "A"):  # three of seven at chance: the label counts the four left
        for name in ("baseline", "baseline_delta", "student"):
            results["models"][name]["subsets"][subset]["action_top1"] = 3.0
    named = {claim["claim"] for claim in check_claims(results)}
    assert "the same order on at least 4 of the 4 subsets" in named  # never "at least 5 of the 4"


def test_one_seeds_claims_get_no_verdict_where_every_compared_model_is_at_chance():
    results = one_seed_results(1.0)
    for model in results["models"].values():
        for row in [*model["subsets"].values(), *model["sweep"].values()]:
            row["action_top1"] = 3.0  # 30 actions: a uniform guess scores 3.3 %
    claims = check_claims(results)
    assert {claim["verdict"] for claim in claims[:-1]} == {NO_VERDICT}
    assert all(claim["evidence"].startswith(AT_CHANCE) for claim in claims[:-1])
