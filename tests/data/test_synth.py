"""SynthKitchen's annotation files: the EPIC CSVs and the latents beside them (no rendering)."""

import csv

import numpy as np
import pytest

from karmma.data.synth import (
    LATENTS_FILE,
    Action,
    SynthSize,
    participant_splits,
    read_latents,
    write_annotations,
)
from karmma.data.synth_world import noun_label_distribution, sample_action, verb_label_distribution

SIZE = SynthSize(participants=3, validation_participants=1, videos_per_participant=2, actions_per_video=40)


def _results(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    results = []
    for p in range(1, SIZE.participants + 1):
        for v in range(1, SIZE.videos_per_participant + 1):
            actions = [Action(sample_action(rng), 2.0 * k + 0.4, 2.0 * k + 1.6) for k in range(SIZE.actions_per_video)]
            results.append((f"P{p:02d}", f"P{p:02d}_1{v:02d}", actions, 2.0 * SIZE.actions_per_video, True))
    return results


def test_latents_name_every_segment_and_explain_its_label(tmp_path):
    results = _results()
    write_annotations(tmp_path, results, SIZE, participant_splits(SIZE))
    latents = read_latents(tmp_path / LATENTS_FILE)
    rows = []
    for split in ("train", "validation"):
        with open(tmp_path / f"EPIC_100_{split}.csv", newline="") as f:
            rows += list(csv.DictReader(f))
    assert len(rows) == len(latents) == 3 * 2 * 40
    expected = {f"{video}_{k}": a.latent.instance for _, video, actions, _, _ in results for k, a in enumerate(actions)}
    assert latents == expected
    relabelled = 0
    for row in rows:
        instance = latents[row["narration_id"]]
        # the annotated label is the true class or one an annotator may write instead of it
        assert int(row["verb_class"]) in verb_label_distribution(instance.verb)
        assert int(row["noun_class"]) in noun_label_distribution(instance.noun)
        relabelled += int(row["verb_class"]) != instance.verb or int(row["noun_class"]) != instance.noun
    assert 0 < relabelled < len(rows) / 2  # label noise is in the CSVs, not in the latents


def test_a_bad_latents_row_is_named_by_line(tmp_path):
    path = tmp_path / LATENTS_FILE
    path.write_text("narration_id,verb_class,noun_class,knock,rattle,masked\nP01_01_0,2,3,0,0,1\nP01_01_1,2,99,0,0,0\n")
    with pytest.raises(ValueError, match="line 3"):
        read_latents(path)
    path.write_text("id,verb\n")
    with pytest.raises(ValueError, match="expected the columns"):
        read_latents(path)
