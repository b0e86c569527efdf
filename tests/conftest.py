import os
from pathlib import Path

import pytest
import torch

from karmma.configuration import load_config
from karmma.presets import tiny_preset
from karmma.training.config import TrainConfig


# The real annotation files live in shared/ beside the checkout (as in CI);
# KARMMA_SHARED_DATA points elsewhere.
SHARED = Path(os.environ.get("KARMMA_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared annotation files are expected at {SHARED} (set KARMMA_SHARED_DATA)")
    return SHARED


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    return tiny_preset()


def synthesize_and_prepare(tmp_path_factory, name: str, seed: int, videos_per_participant: int) -> tuple[Path, Path]:
    """``(raw, prepared)``: a tiny SynthKitchen set (2 participants, 3 actions per video) in the EPIC layout."""
    from karmma.data.prepare import PrepareSettings, prepare
    from karmma.data.synth import SynthSize, synthesize

    raw = tmp_path_factory.mktemp(f"{name}_raw")
    size = SynthSize(participants=2, validation_participants=1, videos_per_participant=videos_per_participant, actions_per_video=3)
    synthesize(raw, seed=seed, size=size, workers=2, progress=False)
    prepared = tmp_path_factory.mktemp(f"{name}_prepared")
    summary = prepare(raw, prepared, PrepareSettings(flow="dis", short_side=64), workers=2, progress=False)
    assert summary["prepared"] == 2 * videos_per_participant and not summary["failed"], summary
    return raw, prepared


@pytest.fixture(scope="session")
def make_synth_set(tmp_path_factory):
    """``make_synth_set(name, seed, videos_per_participant) -> (raw, prepared)``."""
    return lambda *args, **kwargs: synthesize_and_prepare(tmp_path_factory, *args, **kwargs)


@pytest.fixture(scope="session")
def synth_prepared(make_synth_set) -> Path:
    """A tiny SynthKitchen recording set, prepared into the EPIC layout (4 videos, 12 segments)."""
    return make_synth_set("synth", seed=3, videos_per_participant=2)[1]


@pytest.fixture
def prepared_copy(synth_prepared, tmp_path) -> Path:
    """A private copy of the prepared tree, for tests that damage files."""
    import shutil

    return Path(shutil.copytree(synth_prepared, tmp_path / "prepared"))


CONFIGS = Path(__file__).resolve().parents[1] / "src" / "karmma" / "configs" / "synthkitchen"


def tiny_config(stage: str, root: Path, runs: Path, *overrides: str) -> TrainConfig:
    """A SynthKitchen config of ``stage`` shrunk for tests: 2 epochs, small batches, no workers."""
    return load_config(
        TrainConfig,
        CONFIGS / f"{stage}.yaml",
        [f"data.root={root}", f"trainer.runs={runs}", "optim.epochs=2", "optim.batch_size=4",
         "trainer.workers=0", "trainer.progress=false", *overrides],
    )


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def trained_runs(synth_prepared, tmp_path_factory):
    """unimodal V/F/A -> teacher -> student, each 2 short epochs on the tiny SynthKitchen set."""
    from karmma.training.run import train

    runs = tmp_path_factory.mktemp("runs")
    results = {}
    for key in ("V", "F", "A"):
        results[f"unimodal_{key}"] = train(tiny_config("unimodal", synth_prepared, runs, f"unimodal_modality={key}", f"trainer.name=unimodal_{key}"))
    extractors = [f"extractors.{k}={results[f'unimodal_{k}']['best']}" for k in ("V", "F", "A")]
    results["teacher"] = train(tiny_config("teacher", synth_prepared, runs, *extractors))
    results["student"] = train(tiny_config("student", synth_prepared, runs, f"teacher={results['teacher']['best']}"))
    return runs, results
