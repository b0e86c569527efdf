import pytest
import torch

from karmma.losses import distillation_kl, info_nce, multihead_cross_entropy

KEYS = ["V", "F", "A"]


def test_distillation_zero_for_equal_logits_and_positive_otherwise():
    logits = {"verb": torch.randn(8, 97), "noun": torch.randn(8, 300)}
    assert distillation_kl(logits, logits, temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)
    other = {k: v + torch.randn_like(v) for k, v in logits.items()}
    assert distillation_kl(other, logits, temperature=4.0).item() > 1e-3


def test_distillation_scales_with_temperature_squared():
    student, teacher = {"a": torch.randn(4, 10)}, {"a": torch.randn(4, 10)}
    manual = torch.nn.functional.kl_div(
        torch.log_softmax(student["a"] / 2, -1), torch.softmax(teacher["a"] / 2, -1), reduction="batchmean"
    )
    assert distillation_kl(student, teacher, temperature=2.0).item() == pytest.approx(4 * manual.item(), rel=1e-5)


def test_distillation_does_not_train_the_teacher():
    student = {"a": torch.randn(4, 10, requires_grad=True)}
    teacher = {"a": torch.randn(4, 10, requires_grad=True)}
    distillation_kl(student, teacher).backward()
    assert student["a"].grad is not None and teacher["a"].grad is None


def test_multihead_cross_entropy_sums_heads():
    logits = {"verb": torch.randn(4, 5), "noun": torch.randn(4, 7)}
    targets = {"verb": torch.tensor([0, 1, 2, 3]), "noun": torch.tensor([6, 5, 4, 3])}
    expected = sum(torch.nn.functional.cross_entropy(logits[h], targets[h]) for h in logits)
    assert multihead_cross_entropy(logits, targets).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="noun"):
        multihead_cross_entropy(logits, {"verb": targets["verb"]})


def test_info_nce_lower_for_aligned_than_shuffled():
    base = torch.randn(16, 32)
    aligned = {"V": base, "F": base + 0.1 * torch.randn(16, 32)}
    shuffled = {"V": base, "F": aligned["F"][torch.randperm(16)]}
    availability = torch.ones(16, 3, dtype=torch.bool)
    assert info_nce(aligned, availability, KEYS) < info_nce(shuffled, availability, KEYS)


def test_info_nce_only_counts_pairs_where_both_are_present():
    base = torch.randn(8, 16)
    features = {"V": base.clone(), "F": base.clone()}
    availability = torch.ones(8, 3, dtype=torch.bool)
    availability[4:, 1] = False  # F missing for the last 4 samples
    aligned = info_nce(features, availability, KEYS)
    features["F"][4:] = torch.randn(4, 16) * 100  # garbage where F is missing: must not matter
    assert info_nce(features, availability, KEYS).item() == pytest.approx(aligned.item())
    # no sample has both: nothing to align
    availability[:, 1] = False
    assert info_nce(features, availability, KEYS).item() == 0.0
