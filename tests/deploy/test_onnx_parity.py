"""ONNX Runtime against eager PyTorch on every modality subset, both export forms."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

from karmma.artifacts import ModelInfo, load_model
from karmma.availability import availability_for_subset
from karmma.data.recipe import PrepareSettings
from karmma.data.synth_world import VERB_NAMES
from karmma.deploy.onnx_export import export_onnx, export_split_onnx
from karmma.deploy.runtime import OnnxRunner, SplitOnnxRunner, TorchRunner
from karmma.modalities import all_subsets, subset_name
from karmma.presets import SSV2_HEADS, build_student, tiny_preset
from karmma.train_config import TrainConfig

TOLERANCE = 1e-4


def _max_difference(runner, model, subset, batch=2, seed=0) -> float:
    torch.manual_seed(seed)
    inputs = model.example_inputs(batch)
    mask = availability_for_subset(subset, model.modalities, batch)
    with torch.no_grad():
        expected = model(inputs, mask).logits
    # missing modalities: zeros (the ONNX graph must ignore them) -- eager never sees them
    given = {k: (v if k in subset else torch.zeros_like(v)) for k, v in inputs.items()}
    got = runner.logits(given, mask)
    return max(float(np.abs(got[h] - expected[h].numpy()).max()) for h in model.heads)


def test_every_sample_extract_gives_the_same_logits(tiny):
    model = build_student(tiny, {"verb": 5, "noun": 6}).eval()
    inputs = model.example_inputs(3)
    mask = torch.tensor([[True, False, True], [False, True, False], [True, True, True]])
    with torch.no_grad():
        expected = model(inputs, mask).logits
        dense = model.fuse(model.extract(inputs, mask, every_sample=True), mask).logits
    for head in expected:
        torch.testing.assert_close(dense[head], expected[head], rtol=0, atol=1e-6)


@pytest.mark.parametrize("subset", all_subsets(["V", "F", "A"]), ids=subset_name)
def test_onnx_matches_pytorch_epic(onnx_student, student_file, subset):
    model, _ = load_model(student_file)
    runner = OnnxRunner(onnx_student)
    assert _max_difference(runner, model, subset) < TOLERANCE


def test_onnx_mixed_availability_batch(onnx_student, student_file):
    model, _ = load_model(student_file)
    inputs = model.example_inputs(3)
    mask = torch.tensor([[True, False, False], [False, True, True], [True, False, True]])
    with torch.no_grad():
        expected = model(inputs, mask).logits
    got = OnnxRunner(onnx_student).logits(inputs, mask)
    assert max(float(np.abs(got[h] - expected[h].numpy()).max()) for h in model.heads) < TOLERANCE


def test_fully_missing_mask_is_refused(onnx_student, student_file):
    model, _ = load_model(student_file)
    mask = torch.tensor([[True, True, True], [False, False, False]])
    for runner in (OnnxRunner(onnx_student), TorchRunner(model, OnnxRunner(onnx_student).info)):
        with pytest.raises(ValueError, match=r"no modality for sample\(s\) \[1\]"):
            runner.logits(model.example_inputs(2), mask)


def test_onnx_metadata_describes_the_student(onnx_student):
    info = OnnxRunner(onnx_student).info
    assert info.modalities == ["V", "F", "A"]
    assert info.classes["verb"] == list(VERB_NAMES) and len(info.classes["noun"]) == info.heads["noun"]
    assert info.preparation == PrepareSettings(flow="dis", short_side=64)  # the frame recipe of the training data


@pytest.fixture(scope="module")
def ssv2_student(tmp_path_factory):
    """V/F/D student (the SSv2 set) with random weights, exported to one ONNX graph."""
    torch.manual_seed(1)
    model = build_student(tiny_preset(), SSV2_HEADS, ["V", "F", "D"]).eval()
    config = asdict(TrainConfig(preset="tiny", modalities=["V", "F", "D"]))
    info = ModelInfo(config, SSV2_HEADS, {k: tuple(model.specs[k].input_shape) for k in model.modalities})
    path = export_onnx(model, info, tmp_path_factory.mktemp("ssv2") / "student.onnx")
    return model, OnnxRunner(path)


@pytest.mark.e2e
@pytest.mark.parametrize("subset", all_subsets(["V", "F", "D"]), ids=subset_name)
def test_onnx_matches_pytorch_ssv2_with_boxes(ssv2_student, subset):
    model, runner = ssv2_student
    assert _max_difference(runner, model, subset) < TOLERANCE


@pytest.mark.e2e
def test_split_onnx_matches_pytorch(student_file, tmp_path):
    model, info = load_model(student_file)
    runner = SplitOnnxRunner(export_split_onnx(model, info, tmp_path / "split"))
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == [
        "extractor_A.onnx",
        "extractor_F.onnx",
        "extractor_V.onnx",
        "fusion.onnx",
        "manifest.json",
    ]
    for subset in all_subsets(model.modalities):
        assert _max_difference(runner, model, subset, seed=len(subset)) < TOLERANCE, subset
