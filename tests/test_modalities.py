import pytest

from karmma.modalities import all_subsets, order_keys, parse_subset, subset_name


def test_subset_names_follow_canonical_order():
    assert subset_name({"A", "V"}) == "V+A"
    assert subset_name(["D", "F", "V", "A"]) == "V+F+A+D"
    assert subset_name(["I", "V"]) == "V+I"  # unknown keys go last
    assert parse_subset("V+A") == ["V", "A"]
    assert parse_subset("V,F") == ["V", "F"]


def test_all_subsets_counts():
    assert len(all_subsets(["V", "F", "A"])) == 7
    assert len(all_subsets(["V", "F", "A", "D"])) == 15
    assert all_subsets(["V", "F"])[0] == ("V", "F")
    assert order_keys(["A", "V", "A"]) == ["V", "A"]


def test_empty_subset_rejected():
    with pytest.raises(ValueError):
        subset_name([])
    with pytest.raises(ValueError):
        parse_subset("+")
