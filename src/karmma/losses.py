"""KARMMA's losses: multi-head cross-entropy, cross-modal InfoNCE and distillation KL."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def multihead_cross_entropy(
    logits: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor], label_smoothing: float = 0.0
) -> torch.Tensor:
    """Sum over heads of the mean cross-entropy (EPIC: L_verb + L_noun).

    Args:
        logits: ``{head: [B, classes]}``.
        targets: ``{head: [B]}`` class indices.
    """
    missing = set(logits) - set(targets)
    if missing:
        raise ValueError(f"no targets for head(s) {sorted(missing)}")
    return sum(F.cross_entropy(logits[h], targets[h], label_smoothing=label_smoothing) for h in logits)


def info_nce(
    features: Mapping[str, torch.Tensor],
    availability: torch.Tensor,
    modalities: Sequence[str],
    temperature: float = 0.07,
) -> torch.Tensor:
    """Symmetric InfoNCE between the pooled representations of modality pairs.

    For each pair (m, n), the samples that have both modalities form the
    batch: positives are the same sample's two modalities, negatives the other
    samples' other modality. Pairs with fewer than two such samples are
    skipped. Returns the mean over counted pairs (0 when none counts).

    Args:
        features: ``{key: [B, D]}`` pooled representation per modality.
        availability: ``[B, M]`` bool mask over ``modalities``.
    """
    losses = []
    columns = {key: j for j, key in enumerate(modalities)}
    keys = [k for k in modalities if k in features]
    for m, n in itertools.combinations(keys, 2):
        both = (availability[:, columns[m]] & availability[:, columns[n]]).to(features[m].device)
        if int(both.sum()) < 2:
            continue
        a = F.normalize(features[m][both], dim=-1)
        b = F.normalize(features[n][both], dim=-1)
        similarity = a @ b.T / temperature
        labels = torch.arange(len(a), device=a.device)
        losses.append((F.cross_entropy(similarity, labels) + F.cross_entropy(similarity.T, labels)) / 2)
    if not losses:
        return next(iter(features.values())).sum() * 0.0  # keeps the graph for DDP
    return torch.stack(losses).mean()


def distillation_kl(
    student_logits: Mapping[str, torch.Tensor],
    teacher_logits: Mapping[str, torch.Tensor],
    temperature: float = 4.0,
) -> torch.Tensor:
    """Sum over heads of ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, batch mean.

    The T² factor (Hinton et al.) keeps the gradient scale independent of T.
    """
    missing = set(student_logits) - set(teacher_logits)
    if missing:
        raise ValueError(f"no teacher logits for head(s) {sorted(missing)}")
    total = 0.0
    for head, student in student_logits.items():
        teacher = teacher_logits[head].detach()
        kl = F.kl_div(
            F.log_softmax(student / temperature, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        total = total + kl * temperature**2
    return total
