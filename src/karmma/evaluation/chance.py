"""What a model that learned nothing scores on a ``results.json`` (``karmma evaluate``), and the
clips each of its numbers was counted on.

The claims (:mod:`karmma.evaluation.claims`) give no verdict where the models compared are at
chance; the report (:mod:`karmma.evaluation.report`) prints the levels and the noise.
"""

from __future__ import annotations


def result_heads(results: dict) -> dict[str, int]:
    """Classes per head of the results' models (``{}`` when none records them)."""
    for model in results["models"].values():
        if model.get("heads"):
            return dict(model["heads"])
        if model.get("classes"):
            return {h: len(names) for h, names in model["classes"].items()}
    return {}


def row_clips(row: dict, model: dict) -> int:
    """The clips one row of results scored: its ``samples``, else every clip of the model."""
    return row.get("samples") or model["clips"]


def counted_model(results: dict) -> dict:
    """The first model with confusion counts (every model saw the same clips); {} when none has them."""
    return next((m for m in results["models"].values() if m.get("confusion")), {})


def counted_clips(results: dict) -> int:
    """The clips the confusion counts cover (0 without them): what the most-frequent-class rate is counted on."""
    confusion = counted_model(results).get("confusion", {})
    return sum(count for _, _, count in next(iter(confusion.values()), []))


def class_totals(model: dict, head: str) -> dict[int, int]:
    """Clips per true class of ``head``, from the stored confusion counts."""
    totals: dict[int, int] = {}
    for true, _, count in model.get("confusion", {}).get(head, []):
        totals[true] = totals.get(true, 0) + count
    return totals


def chance_levels(results: dict) -> dict[str, tuple[float, float | None]]:
    """``{"verb_top1": (uniform guess %, always-the-most-frequent-class %), ...}`` for top-1 and top-5."""
    heads = result_heads(results)
    if not heads:
        return {}
    classes = dict(heads)
    if "verb" in heads and "noun" in heads:
        classes["action"] = heads["verb"] * heads["noun"]
    elif len(heads) == 1:
        classes["action"] = next(iter(heads.values()))
    counted = counted_model(results)
    levels = {}
    for head, n in classes.items():
        key = (
            head if head in counted.get("confusion", {}) or head != "action" else next(iter(heads))
        )  # single head: it is the action
        ranked = sorted(class_totals(counted, key).values(), reverse=True)
        clips = sum(ranked)
        levels[f"{head}_top1"] = (100 / n, 100 * ranked[0] / clips if clips else None)
        levels[f"{head}_top5"] = (100 * min(5, n) / n, 100 * sum(ranked[:5]) / clips if clips else None)
    return levels


def chance_rate(results: dict, metric: str = "action_top1") -> float | None:
    """What a model that learned nothing scores on ``metric`` at best (%): the larger of the uniform
    guess and always answering the split's most frequent class; None when the heads are unknown."""
    levels = chance_levels(results).get(metric)
    return max(v for v in levels if v is not None) if levels else None
