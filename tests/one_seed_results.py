"""One seed's results.json of the four compared models on seven subsets, for the tests of the
claims, the chance levels and the report (tests/evaluation/)."""

SUBSETS = ["V+F+A", "V+F", "V+A", "F+A", "V", "F", "A"]


def one_seed_model(subset_acc: dict, sweep: list[float]) -> dict:
    return {
        "split": "validation",
        "clips": 10,
        "views": 1,
        "heads": {"verb": 5, "noun": 6},
        "subsets": {
            s: {"action_top1": a, "verb_top1": a, "noun_top1": a, "samples": 10} for s, a in subset_acc.items()
        },
        "sweep": {f"{i / 10:.1f}": {"action_top1": v, "std": 0.5} for i, v in enumerate(sweep)},
    }


def one_seed_results(student_bonus: float) -> dict:
    base = dict(zip(SUBSETS, [40, 36, 37, 5, 32, 3, 2]))
    delta = dict(zip(SUBSETS, [41, 39, 39, 27, 37, 25, 6]))
    student = {s: v + student_bonus for s, v in delta.items()}
    decay = [1 - 0.07 * i for i in range(10)]
    return {
        "models": {
            "teacher": one_seed_model({"V+F+A": 34}, [34 * d for d in decay]),
            "baseline": one_seed_model(base, [40 * (1 - 0.1 * i) for i in range(10)]),
            "baseline_delta": one_seed_model(delta, [41 * d for d in decay]),
            "student": one_seed_model(student, [(41 + student_bonus) * (1 - 0.06 * i) for i in range(10)]),
        },
        "settings": {"seeds": 3},
    }


def with_per_class(results: dict) -> dict:
    """Ten clips: verbs 0 (x6) and 1 (x4), nouns 2 (x7) and 3 (x3); the student gets 8 verbs right."""
    student = results["models"]["student"]
    student["confusion"] = {
        "verb": [[0, 0, 6], [1, 0, 2], [1, 1, 2]],
        "noun": [[2, 2, 7], [3, 2, 3]],
        "action": [[2, 2, 7], [3, 2, 1], [8, 2, 2]],
    }
    student["classes"] = {"verb": ["take", "put", "v2", "v3", "v4"], "noun": ["n0", "n1", "cup", "plate", "n4", "n5"]}
    return results
