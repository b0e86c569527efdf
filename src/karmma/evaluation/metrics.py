"""Classification metrics from averaged class probabilities (all accuracies in percent).

EPIC-KITCHENS convention: an action is a (verb, noun) pair scored by the
product of the verb and noun softmax probabilities; its top-k is taken over
all pairs. Single-head datasets (SSv2) report the head itself as the action.
Which clip is right (top-k of a head, every head right) is :mod:`karmma.accuracy`, shared with training.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from karmma.accuracy import every_head_correct, topk_correct

ECE_BINS = 15


def topk_accuracy(probs: torch.Tensor, target: torch.Tensor, k: int) -> float:
    """``probs [N, C]``, ``target [N]`` -> percent of rows whose target is in the top ``k``."""
    if len(target) == 0:
        return float("nan")
    return topk_correct(probs, target, k).float().mean().item() * 100


def expected_calibration_error(probs: torch.Tensor, target: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Top-1 ECE in percent: the confidence-weighted gap between confidence and accuracy over ``bins`` equal bins."""
    if len(target) == 0:
        return float("nan")
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == target).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.float().mean() * (confidence[in_bin].mean() - correct[in_bin].mean()).abs()
    return ece.item() * 100


def top_pairs(
    first: torch.Tensor, second: torch.Tensor, k: int, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best pairs per row, scored by ``first[i, a] * second[i, b]``.

    ``first [N, A]``, ``second [N, B]`` -> ``(a [N, k], b [N, k], score [N, k])``, best first
    (chunked over rows: EPIC has 97 x 300 pairs per clip).
    """
    k = min(k, first.shape[1] * second.shape[1])
    width = second.shape[1]
    firsts, seconds, scores = [], [], []
    for start in range(0, len(first), chunk):
        products = (first[start : start + chunk, :, None] * second[start : start + chunk, None, :]).flatten(1)
        top = products.topk(k, dim=1)
        firsts.append(top.indices // width)
        seconds.append(top.indices % width)
        scores.append(top.values)
    if not scores:
        empty = torch.zeros(0, k, dtype=torch.long)
        return empty, empty, torch.zeros(0, k, dtype=first.dtype)
    return torch.cat(firsts), torch.cat(seconds), torch.cat(scores)


def pair_topk(
    first: torch.Tensor,
    second: torch.Tensor,
    target_first: torch.Tensor,
    target_second: torch.Tensor,
    ks: tuple[int, ...] = (1, 5),
    chunk: int = 256,
) -> dict[int, float]:
    """Top-k of pairs scored by ``first[i, a] * second[i, b]`` (:func:`top_pairs`)."""
    if len(target_first) == 0:
        return {k: float("nan") for k in ks}
    best_first, best_second, _ = top_pairs(first, second, max(ks), chunk)
    hit = (best_first == target_first[:, None]) & (best_second == target_second[:, None])
    return {k: hit[:, :k].any(dim=1).float().mean().item() * 100 for k in ks}


def classification_metrics(probs: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per head ``{head}_top1/_top5/_ece``, plus ``action_top1/_top5``.

    The action is verb x noun by the product of probabilities when both heads
    exist, the head itself for a single head, and otherwise "every head right".
    """
    metrics: dict[str, float] = {}
    for head, p in probs.items():
        metrics[f"{head}_top1"] = topk_accuracy(p, labels[head], 1)
        metrics[f"{head}_top5"] = topk_accuracy(p, labels[head], 5)
        metrics[f"{head}_ece"] = expected_calibration_error(p, labels[head])
    if "verb" in probs and "noun" in probs:
        pairs = pair_topk(probs["verb"], probs["noun"], labels["verb"], labels["noun"])
        metrics["action_top1"], metrics["action_top5"] = pairs[1], pairs[5]
    elif len(probs) == 1:
        head = next(iter(probs))
        metrics["action_top1"], metrics["action_top5"] = metrics[f"{head}_top1"], metrics[f"{head}_top5"]
    else:
        right = every_head_correct(probs, labels)
        metrics["action_top1"] = right.float().mean().item() * 100 if len(right) else float("nan")
    return metrics


def tail_metrics(
    probs: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor], tail_verbs: set[int], tail_nouns: set[int]
) -> dict[str, float]:
    """EPIC tail classes: verb accuracy over tail-verb segments, noun over tail-noun
    segments, action over segments whose verb or noun is a tail class."""
    verb_tail = torch.tensor([v in tail_verbs for v in labels["verb"].tolist()], dtype=torch.bool)
    noun_tail = torch.tensor([n in tail_nouns for n in labels["noun"].tolist()], dtype=torch.bool)
    action_tail = verb_tail | noun_tail
    pairs = pair_topk(
        probs["verb"][action_tail], probs["noun"][action_tail], labels["verb"][action_tail], labels["noun"][action_tail]
    )
    return {
        "verb_top1": topk_accuracy(probs["verb"][verb_tail], labels["verb"][verb_tail], 1),
        "noun_top1": topk_accuracy(probs["noun"][noun_tail], labels["noun"][noun_tail], 1),
        "action_top1": pairs[1],
        "action_top5": pairs[5],
        "samples": int(action_tail.sum()),
    }


def confusion_counts(
    probs: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
) -> dict[str, list[list[int]]]:
    """Sparse confusion matrices of the top-1 predictions: ``{head: [[true, predicted, count], ...]}``.

    With verb and noun heads also ``"action"``, a class ``verb * nouns + noun``
    (the top-1 action under the product rule is the pair of per-head top-1s).
    Only non-zero cells are listed, so EPIC's 97 x 300 classes stay small.
    """
    predicted = {h: p.argmax(dim=1) for h, p in probs.items()}
    pairs = {h: (labels[h], predicted[h]) for h in probs}
    if "verb" in probs and "noun" in probs:
        nouns = probs["noun"].shape[1]
        pairs["action"] = (labels["verb"] * nouns + labels["noun"], predicted["verb"] * nouns + predicted["noun"])
    result = {}
    for head, (true, guess) in pairs.items():
        cells: dict[tuple[int, int], int] = {}
        for cell in zip(true.tolist(), guess.tolist()):
            cells[cell] = cells.get(cell, 0) + 1
        result[head] = [[t, g, c] for (t, g), c in sorted(cells.items())]
    return result
