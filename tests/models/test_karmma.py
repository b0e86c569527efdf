import pytest
import torch

from karmma.availability import availability_for_subset
from karmma.modalities import all_subsets
from karmma.presets import EPIC_HEADS, build_baseline, build_student, build_teacher

ALL = ("V", "F", "A", "D")
# name -> builder; Baseline w/ δ is the student architecture trained differently
MODELS = {
    "teacher": build_teacher,
    "student": build_student,
    "baseline": build_baseline,  # the paper's: a missing modality is a zero input
    "baseline_masked": lambda preset, heads, keys: build_student(preset, heads, keys, missing_strategy="mask"),
    "baseline_delta": build_student,
}


@pytest.fixture(scope="module")
def models(tiny):
    torch.manual_seed(0)
    return {name: build(tiny, EPIC_HEADS, ALL) for name, build in MODELS.items()}


@pytest.mark.parametrize("name", MODELS)
def test_every_subset_runs(models, name):
    model = models[name].eval()
    inputs = model.example_inputs(2)
    subsets = all_subsets(ALL)
    assert len(subsets) == 15
    for present in subsets:
        availability = availability_for_subset(present, model.modalities, batch=2)
        with torch.no_grad():
            out = model({k: v for k, v in inputs.items() if k in present}, availability)
        assert out.logits["verb"].shape == (2, 97) and out.logits["noun"].shape == (2, 300)
        assert all(torch.isfinite(v).all() for v in out.logits.values()), present


def _extractor_grads(model, present):
    model.train()
    model.zero_grad()
    inputs = model.example_inputs(3)
    availability = availability_for_subset(present, model.modalities, batch=3)
    out = model(inputs, availability)
    sum(v.sum() for v in out.logits.values()).backward()
    reached = {}
    for key in model.modalities:
        grads = [p.grad for p in model.extractors[key].parameters()]
        reached[key] = any(g is not None and g.abs().sum() > 0 for g in grads)
    return reached


@pytest.mark.parametrize("name", ["student", "baseline_masked", "baseline_delta"])
@pytest.mark.parametrize("present", [("V",), ("F", "A"), ("V", "F", "A", "D"), ("A", "D")])
def test_gradients_reach_exactly_present_extractors(models, name, present):
    reached = _extractor_grads(models[name], present)
    assert reached == {k: k in present for k in ALL}


def test_training_zeros_baseline_runs_every_extractor_on_the_whole_batch(models):
    """The paper's Baseline in training: a missing modality is a zero row in its extractor's batch."""
    model = models["baseline"].train()
    seen = {}
    handles = [
        e.register_forward_pre_hook(lambda m, args, key=key: seen.setdefault(key, args[0].clone()))
        for key, e in model.extractors.items()
    ]
    inputs = model.example_inputs(3)
    availability = torch.tensor([[True, False, True, True], [True, True, False, True], [True, True, True, False]])
    try:
        model({k: v for k, v in inputs.items() if k != "A"} | {"A": inputs["A"]}, availability)
    finally:
        for handle in handles:
            handle.remove()
    for j, key in enumerate(model.modalities):
        assert seen[key].shape[0] == 3, key
        for row in range(3):
            expected = inputs[key][row] if availability[row, j] else torch.zeros_like(inputs[key][row])
            assert torch.equal(seen[key][row], expected), (key, row)


def test_teacher_extractors_are_frozen(models):
    teacher = models["teacher"]
    assert _extractor_grads(teacher, ALL) == {k: False for k in ALL}
    teacher.train()
    assert not teacher.extractors.training and teacher.blocks.training
    # embeddings of present modalities still learn
    assert teacher.embed["V"].weight.grad.abs().sum() > 0


def _logits(model, inputs, availability):
    with torch.no_grad():
        return torch.cat(list(model.eval()(inputs, availability).logits.values()), dim=1)


@pytest.mark.parametrize("name", ["student", "teacher", "baseline", "baseline_masked"])
def test_missing_modality_input_is_ignored(models, name):
    model = models[name]
    inputs = model.example_inputs(2)
    availability = availability_for_subset(["V", "A"], model.modalities, batch=2)
    changed = dict(inputs, F=torch.randn_like(inputs["F"]) * 10, D=model.specs["D"].example_input(2))
    assert torch.allclose(_logits(model, inputs, availability), _logits(model, changed, availability))
    changed = dict(inputs, V=torch.randn_like(inputs["V"]))
    assert not torch.allclose(_logits(model, inputs, availability), _logits(model, changed, availability))


@pytest.mark.parametrize("name,learned", [("student", True), ("baseline_masked", False)])
def test_learned_tokens_stand_in_exactly_for_missing_modalities(models, name, learned):
    model = models[name]
    inputs = model.example_inputs(2)
    # F is missing for sample 0 only; A is missing for both
    availability = torch.tensor([[True, False, False, True], [True, True, False, True]])
    before = _logits(model, inputs, availability)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.position_tokens["A"].add_(torch.randn_like(model.position_tokens["A"]))
        model.modality_tokens["F"].add_(torch.randn_like(model.modality_tokens["F"]))
    after = _logits(model, inputs, availability)
    model.load_state_dict(saved)  # the model is shared by the module's tests
    # Learned tokens: both samples see the learned A tokens, so both change.
    # Mask (Baseline): A is left out entirely; F's tokens only matter for sample 1, where F is present.
    assert (not torch.allclose(before[0], after[0])) == learned
    assert not torch.allclose(before[1], after[1])


def test_learned_tokens_replace_the_embedding_of_a_missing_modality(tiny):
    model = build_student(tiny, EPIC_HEADS, ("V", "F")).eval()
    inputs = model.example_inputs(2)
    availability = torch.tensor([[True, False], [True, True]])
    tokens = model.extract(inputs, availability)
    assert torch.equal(tokens["F"][0], torch.zeros_like(tokens["F"][0]))  # never computed for sample 0
    # Changing F's embedding layer changes sample 1 only.
    before = _logits(model, inputs, availability)
    with torch.no_grad():
        model.embed["F"].bias.add_(1.0)
    after = _logits(model, inputs, availability)
    assert torch.allclose(before[0], after[0]) and not torch.allclose(before[1], after[1])


def test_zeros_baseline_sees_a_missing_modality_as_a_zero_input(models):
    """The paper's Baseline: "F missing" gives exactly the prediction of F = zeros, marked present."""
    model = models["baseline"].eval()
    inputs = model.example_inputs(2)
    availability = torch.tensor([[True, False, True, True], [True, True, False, True]])
    zeroed = dict(inputs, F=inputs["F"].clone(), A=inputs["A"].clone())
    zeroed["F"][0] = 0
    zeroed["A"][1] = 0
    missing = _logits(model, inputs, availability)
    as_zeros = _logits(model, zeroed, torch.ones_like(availability))
    assert torch.allclose(missing, as_zeros, atol=1e-5)
    # and a zero input is not what the masked Baseline does: leaving F out changes the prediction
    masked = models["baseline_masked"]
    masked.load_state_dict(model.state_dict())
    assert not torch.allclose(missing, _logits(masked, inputs, availability), atol=1e-3)


def test_zero_input_tokens_follow_the_weights(models):
    model = models["baseline"].eval()
    with torch.no_grad():
        before = model.zero_input_tokens("V").clone()
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        noisy = {
            k: v + torch.randn_like(v) if k.startswith("extractors.V.") and v.is_floating_point() else v
            for k, v in saved.items()
        }
        model.load_state_dict(noisy)
        after = model.zero_input_tokens("V")
        model.load_state_dict(saved)
    assert not torch.allclose(before, after)
    assert torch.allclose(model.zero_input_tokens("V"), before)


@pytest.mark.parametrize("name", ["student", "baseline", "baseline_masked"])
def test_partial_batch_equals_per_sample(models, name):
    """A sample's prediction does not depend on what else is in the batch."""
    model = models[name].eval()
    inputs = model.example_inputs(3)
    availability = torch.tensor([[True, False, True, False], [True, True, True, True], [False, True, False, False]])
    batched = _logits(model, inputs, availability)
    for i in range(3):
        single = _logits(model, {k: v[i : i + 1] for k, v in inputs.items()}, availability[i : i + 1])
        assert torch.allclose(batched[i], single[0], atol=1e-5), i


def test_missing_extractors_are_not_computed(tiny):
    model = build_student(tiny, EPIC_HEADS, ("V", "F", "A")).eval()
    seen = {k: [] for k in model.modalities}
    for key, extractor in model.extractors.items():
        extractor.register_forward_pre_hook(lambda m, args, key=key: seen[key].append(args[0].shape[0]))
    inputs = model.example_inputs(4)
    availability = torch.tensor([[True, False, False], [True, True, False], [True, False, False], [False, True, False]])
    with torch.no_grad():
        model(inputs, availability)
    assert seen == {"V": [3], "F": [2], "A": []}


def test_final_logits_average_cls_and_available_modalities(tiny):
    model = build_student(tiny, EPIC_HEADS, ("V", "F", "A")).eval()
    availability = torch.tensor([[True, False, True]])
    with torch.no_grad():
        out = model(model.example_inputs(1), availability)
    for head in out.logits:
        expected = (out.cls_logits[head] + out.modality_logits["V"][head] + out.modality_logits["A"][head]) / 3
        assert torch.allclose(out.logits[head], expected, atol=1e-6)


def test_bad_inputs_are_rejected(tiny):
    model = build_student(tiny, EPIC_HEADS, ("V", "F"))
    inputs = model.example_inputs(2)
    with pytest.raises(ValueError, match="no modality"):
        model(inputs, torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="shape"):
        model(inputs, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="modality F is marked available"):
        model({"V": inputs["V"]}, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="input for modality V must have shape"):
        model({"V": inputs["V"][:, :4]}, torch.tensor([[True, False]] * 2))


def test_custom_heads_and_new_modality(tiny):
    """A user's dataset: other heads, and a new modality added by a spec alone."""
    from dataclasses import dataclass

    from torch import nn

    from karmma.modalities import ModalitySpec
    from karmma.models.karmma import KARMMA

    @dataclass(frozen=True)
    class IMUConfig:
        token_dim: int = 16

        def num_tokens(self, input_shape):
            return input_shape[0] // 10

        def build(self, input_shape):
            return nn.Sequential(nn.Unflatten(1, (input_shape[0] // 10, 10)), nn.Flatten(2), nn.Linear(60, 16))

        def example_input(self, input_shape, batch):
            return torch.randn(batch, *input_shape)

    specs = [tiny.student["V"], ModalitySpec("I", (100, 6), IMUConfig())]
    model = KARMMA(specs, {"grasp": 5, "place": 3}, tiny.student_fusion)
    out = model(model.example_inputs(2), torch.tensor([[False, True], [True, True]]))
    assert out.logits["grasp"].shape == (2, 5) and out.logits["place"].shape == (2, 3)
