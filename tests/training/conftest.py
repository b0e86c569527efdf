from pathlib import Path

import pytest

from karmma.configuration import load_config
from karmma.training.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "synthkitchen"


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
