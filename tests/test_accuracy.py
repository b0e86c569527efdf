import itertools

import torch

from karmma.accuracy import every_head_correct, topk_correct


def test_topk_correct_marks_the_rows_whose_target_is_among_the_k_highest_scores():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 1, 0])
    assert topk_correct(scores, target, 1).tolist() == [True, False, False]
    assert topk_correct(scores, target, 2).tolist() == [True, True, False]
    assert topk_correct(scores, target, 5).tolist() == [True, True, True]  # k is capped at the classes
    assert topk_correct(scores.log(), target, 2).tolist() == [True, True, False]  # logits rank alike


def test_the_action_is_right_where_every_head_is_right_which_is_the_product_rules_top_pair():
    torch.manual_seed(3)
    verb, noun = torch.rand(40, 3).softmax(1), torch.rand(40, 4).softmax(1)
    labels = {"verb": torch.randint(0, 3, (40,)), "noun": torch.randint(0, 4, (40,))}
    right = every_head_correct({"verb": verb, "noun": noun}, labels)
    for i in range(40):
        pairs = itertools.product(range(3), range(4))
        best = max(pairs, key=lambda pair: (verb[i, pair[0]] * noun[i, pair[1]]).item())
        assert right[i].item() == (best == (labels["verb"][i].item(), labels["noun"][i].item()))
    assert 0 < right.sum() < 40
