"""Which predictions are right, per clip: top-k of one head, and the action (every head's top-1 right).

One rule for training's validation (:mod:`karmma.training.module`) and for ``karmma evaluate``
(:mod:`karmma.evaluation.metrics`, which turns these into percentages). ``scores`` are logits or
probabilities: both rank the classes alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def topk_correct(scores: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """``scores [N, C]``, ``target [N]`` -> ``[N]`` bool: the target is among the ``k`` highest
    scores (``k`` is capped at the number of classes)."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == target[:, None]).any(dim=1)


def every_head_correct(scores: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``[N]`` bool: every head's argmax is its label, i.e. the clip's top-1 action is right. For EPIC's
    verb and noun the action's score is the product of their probabilities, which is largest at the
    pair of their argmaxes."""
    return torch.stack([s.argmax(dim=1) == labels[head] for head, s in scores.items()]).all(dim=0)
