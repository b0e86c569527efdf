import numpy as np
import pytest
import torch

from karmma.availability import availability_for_subset, check_availability, modality_dropout

KEYS = ["V", "F", "A"]


def test_check_availability_rejects_bad_masks():
    check_availability(torch.ones(2, 3, dtype=torch.bool), KEYS)
    with pytest.raises(ValueError, match=r"shape \[B, 3\]"):
        check_availability(torch.ones(2, 2, dtype=torch.bool), KEYS)
    with pytest.raises(ValueError, match="shape"):
        check_availability(torch.ones(3, dtype=torch.bool), KEYS)
    with pytest.raises(ValueError, match="bool"):
        check_availability(torch.ones(2, 3), KEYS)
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\]"):
        check_availability(torch.tensor([[True, False, False], [False, False, False]]), KEYS)


def test_check_availability_takes_numpy_masks_too():  # what the ONNX runners feed (no torch in the light install)
    check_availability(np.ones((2, 3), bool), KEYS)
    with pytest.raises(ValueError, match="bool"):
        check_availability(np.ones((2, 3)), KEYS)
    with pytest.raises(ValueError, match=r"sample\(s\) \[0\]"):
        check_availability(np.array([[False, False, False], [True, False, False]]), KEYS)
    with pytest.raises(ValueError, match="NumPy array"):
        check_availability([[True, True, True]], KEYS)


def test_availability_for_subset():
    mask = availability_for_subset(["A", "V"], KEYS, batch=2)
    assert mask.tolist() == [[True, False, True]] * 2
    with pytest.raises(ValueError, match="unknown"):
        availability_for_subset(["D"], KEYS)


def test_dropout_never_empties_and_never_restores():
    generator = torch.Generator().manual_seed(0)
    availability = torch.rand(5000, 4, generator=generator) > 0.4
    availability[availability.sum(1) == 0, 0] = True
    for p in (0.0, 0.3, 0.9, 1.0):
        dropped = modality_dropout(availability, p, generator)
        assert dropped.any(dim=1).all(), f"p={p} emptied a sample"
        assert not (dropped & ~availability).any(), f"p={p} brought back a missing modality"
    assert torch.equal(modality_dropout(availability, 0.0), availability)
    # p = 1 keeps exactly one present modality per sample
    assert (modality_dropout(availability, 1.0, generator).sum(1) == 1).all()


def test_dropout_rate_matches_p():
    generator = torch.Generator().manual_seed(1)
    availability = torch.ones(20000, 3, dtype=torch.bool)
    dropped = modality_dropout(availability, 0.3, generator)
    # independent drops, except the ~0.3^3 = 2.7 % rows that would be emptied keep one
    expected_kept = 0.7 * 3 + 0.3**3
    assert abs(dropped.sum(1).float().mean().item() - expected_kept) < 0.03


def test_dropout_rejects_bad_probability():
    with pytest.raises(ValueError):
        modality_dropout(torch.ones(1, 3, dtype=torch.bool), 1.5)
