import ast
from pathlib import Path

import pytest

import karmma
from karmma.modalities import (
    FRAME_MODALITIES,
    IMAGE_MODALITIES,
    MODALITY_ORDER,
    VIDEO_MODALITIES,
    all_subsets,
    largest_subset,
    order_keys,
    parse_subset,
    subset_name,
)


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


def test_the_largest_subset_is_the_full_set():
    assert largest_subset(["V", "V+F+A", "F+A"]) == "V+F+A"


def test_the_named_groups_are_built_in_keys_in_canonical_order():
    for group in (VIDEO_MODALITIES, FRAME_MODALITIES, IMAGE_MODALITIES):
        assert list(group) == order_keys(group) and set(group) <= set(MODALITY_ORDER)


def _spelled_key_lists(path: Path) -> list[str]:
    """Where ``path`` spells a list of modality keys: a tuple, list or set of two or more of
    "V", "F", "A", "D", or a string of them such as "VFA"."""
    keys = set(MODALITY_ORDER)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            spelled = len(values) >= 2 and all(v in keys for v in values)
        else:
            spelled = isinstance(node, ast.Constant) and isinstance(node.value, str)
            spelled = spelled and len(node.value) >= 2 and set(node.value) <= keys
        if spelled:
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_modality_key_lists_are_spelled_only_in_modalities_py():
    package = Path(karmma.__file__).parent
    found = [
        w for path in sorted(package.rglob("*.py")) if path.name != "modalities.py" for w in _spelled_key_lists(path)
    ]
    assert not found, f"use the named groups of karmma/modalities.py: {found}"
    assert len(_spelled_key_lists(package / "modalities.py")) == 4  # the check sees them
