import pytest

from karmma.presets import get_preset
from karmma.train_config import PRESET_NAMES


def test_every_preset_name_builds_its_preset_and_no_other_name_does():
    assert [get_preset(name).name for name in PRESET_NAMES] == list(PRESET_NAMES)
    with pytest.raises(ValueError, match="unknown preset 'huge'; choose one of paper, tiny"):
        get_preset("huge")
