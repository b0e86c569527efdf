from pathlib import Path

import pytest
import torch

from karmma.presets import tiny_preset


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    return tiny_preset()


@pytest.fixture(scope="session")
def synth_prepared(tmp_path_factory) -> Path:
    """A tiny SynthKitchen recording set, prepared into the EPIC layout (4 videos, 12 segments)."""
    from karmma.data.prepare import PrepareSettings, prepare
    from karmma.data.synth import SynthSize, synthesize

    raw = tmp_path_factory.mktemp("synth_raw")
    size = SynthSize(participants=2, validation_participants=1, videos_per_participant=2, actions_per_video=3)
    synthesize(raw, seed=3, size=size, workers=2, progress=False)
    out = tmp_path_factory.mktemp("synth_prepared")
    summary = prepare(raw, out, PrepareSettings(flow="dis", short_side=64), workers=2, progress=False)
    assert summary["prepared"] == 4 and not summary["failed"], summary
    return out


@pytest.fixture
def prepared_copy(synth_prepared, tmp_path) -> Path:
    """A private copy of the prepared tree, for tests that damage files."""
    import shutil

    return Path(shutil.copytree(synth_prepared, tmp_path / "prepared"))
