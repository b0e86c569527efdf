"""``karmma dropout-study``: the teacher's training modality-dropout rate (paper Fig. 5).

Trains one teacher per rate (best from the feature cache: only the fusion
block trains) and evaluates each on every modality subset; the table and the
figure are :mod:`karmma.evaluation.dropout_study_report`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from karmma.evaluation.evaluate import EvaluationSettings, evaluate_model, load_for_evaluation
from karmma.io import write_json
from karmma.train_config import TrainConfig
from karmma.training.run import train


def run_dropout_study(config: TrainConfig, rates: list[float], out: str | Path, checkpoint: str = "best") -> dict:
    """Train ``config`` (a teacher config) at every rate and score each run's ``checkpoint``
    (``best``: chosen on validation; ``last``: the last epoch, for data whose scored split is also
    the selection split); returns and writes ``out/dropout_study.json``."""
    if config.stage != "teacher":
        raise ValueError(f"the dropout study trains teachers: the config's stage is {config.stage!r}")
    if checkpoint not in ("best", "last"):  # before the first teacher trains, not after it
        raise ValueError(f"checkpoint must be best or last, got {checkpoint!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = {"stage": config.stage, "checkpoint": checkpoint, "rates": {}}
    for rate in rates:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rates must be in [0, 1), got {rate}")
        name = f"{config.trainer.name or 'teacher'}_dropout{rate:g}"
        run = dataclasses.replace(
            config,
            loss=dataclasses.replace(config.loss, modality_dropout=rate),
            trainer=dataclasses.replace(config.trainer, name=name),
        )
        result = train(run)
        evaluated = evaluate_model(
            load_for_evaluation(result["run"], name, checkpoint=checkpoint),
            EvaluationSettings(probabilities=(0.0,), seeds=1, progress=False),
        )
        study["rates"][f"{rate:g}"] = {
            "run": result["run"],
            "split": evaluated["split"],
            "subsets": evaluated["subsets"],
        }
    write_json(out / "dropout_study.json", study)
    return study
