import itertools

import pytest
import torch

from karmma.evaluation.metrics import (
    classification_metrics,
    confusion_counts,
    expected_calibration_error,
    pair_topk,
    tail_metrics,
    top_pairs,
    topk_accuracy,
)


def test_topk_accuracy():
    probs = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 1, 0])
    assert topk_accuracy(probs, target, 1) == pytest.approx(100 / 3)
    assert topk_accuracy(probs, target, 2) == pytest.approx(200 / 3)
    assert topk_accuracy(probs, target, 5) == 100.0  # k is capped at the number of classes


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    # 10 samples at confidence 0.8, 8 of them right: perfectly calibrated
    probs = torch.tensor([[0.8, 0.2]] * 10)
    target = torch.tensor([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, target) == pytest.approx(0.0, abs=1e-5)
    # confident (0.99) and always wrong
    wrong = expected_calibration_error(torch.tensor([[0.99, 0.01]] * 4), torch.tensor([1] * 4))
    assert wrong == pytest.approx(99.0, abs=1e-3)


def test_pair_topk_matches_brute_force():
    torch.manual_seed(1)
    verb, noun = torch.rand(37, 5).softmax(1), torch.rand(37, 7).softmax(1)
    tv, tn = torch.randint(0, 5, (37,)), torch.randint(0, 7, (37,))
    got = pair_topk(verb, noun, tv, tn, ks=(1, 5), chunk=8)
    for k in (1, 5):
        hits = 0
        for i in range(37):
            scores = {(a, b): verb[i, a] * noun[i, b] for a, b in itertools.product(range(5), range(7))}
            top = sorted(scores, key=scores.get, reverse=True)[:k]
            hits += (tv[i].item(), tn[i].item()) in top
        assert got[k] == pytest.approx(hits / 37 * 100)


def test_top_pairs_are_the_best_products_best_first():
    torch.manual_seed(2)
    verb, noun = torch.rand(11, 4).softmax(1), torch.rand(11, 6).softmax(1)
    first, second, score = top_pairs(verb, noun, 7, chunk=3)
    assert first.shape == second.shape == score.shape == (11, 7)
    for i in range(11):
        products = sorted(((verb[i, a] * noun[i, b]).item(), a, b) for a in range(4) for b in range(6))[::-1][:7]
        assert [(a, b) for _, a, b in products] == list(zip(first[i].tolist(), second[i].tolist()))
        torch.testing.assert_close(score[i], torch.tensor([p for p, _, _ in products]))
    assert top_pairs(verb, noun, 100)[0].shape == (11, 24)  # k is capped at the number of pairs


def test_action_uses_the_product_of_verb_and_noun_probabilities():
    # verb argmax right, noun argmax right -> action right; and a case where each head's
    # top-1 is right but a confident wrong pair outranks it at top-1 cannot happen (product of argmaxes).
    verb = torch.tensor([[0.6, 0.4], [0.9, 0.1]])
    noun = torch.tensor([[0.2, 0.8], [0.45, 0.55]])
    labels = {"verb": torch.tensor([0, 0]), "noun": torch.tensor([1, 0])}
    m = classification_metrics({"verb": verb, "noun": noun}, labels)
    assert m["verb_top1"] == 100.0 and m["noun_top1"] == 50.0
    assert m["action_top1"] == 50.0
    assert m["action_top5"] == 100.0  # only 4 pairs exist
    assert set(m) >= {"verb_ece", "noun_ece", "verb_top5", "noun_top5"}


def test_single_head_is_the_action():
    m = classification_metrics({"action": torch.tensor([[0.3, 0.7]])}, {"action": torch.tensor([1])})
    assert m["action_top1"] == 100.0 and m["action_top5"] == 100.0 and "action_ece" in m


def test_tail_metrics_select_tail_segments():
    verb = torch.eye(3)[[0, 1, 2, 2]]
    noun = torch.eye(3)[[0, 0, 1, 2]]
    labels = {"verb": torch.tensor([0, 1, 1, 2]), "noun": torch.tensor([0, 0, 1, 1])}
    m = tail_metrics({"verb": verb, "noun": noun}, labels, tail_verbs={1}, tail_nouns={1})
    # verb tail: rows 1, 2 (verb 1) -> row 1 right, row 2 wrong
    assert m["verb_top1"] == 50.0
    # noun tail: rows 2, 3 (noun 1) -> row 2 right, row 3 wrong
    assert m["noun_top1"] == 50.0
    # action tail: rows 1, 2, 3; right only on row 1
    assert m["samples"] == 3 and m["action_top1"] == pytest.approx(100 / 3)


def test_confusion_counts_are_sparse_top1_cells_and_match_accuracy():
    verb = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    noun = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    labels = {"verb": torch.tensor([0, 1, 1, 0]), "noun": torch.tensor([2, 0, 1, 1])}
    cells = confusion_counts({"verb": verb, "noun": noun}, labels)
    assert cells["verb"] == [[0, 0, 2], [1, 0, 1], [1, 1, 1]]  # (true, predicted, clips)
    assert cells["noun"] == [[0, 0, 1], [1, 1, 1], [1, 2, 1], [2, 2, 1]]
    right = sum(c for t, g, c in cells["action"] if t == g)  # action class = verb * 3 + noun
    metrics = classification_metrics({"verb": verb, "noun": noun}, labels)
    assert 100 * right / 4 == metrics["action_top1"]
    assert [2, 2, 1] in cells["action"] and [1, 2, 1] in cells[
        "action"
    ]  # (verb 0, noun 2) right; (0, 1) taken for (0, 2)
