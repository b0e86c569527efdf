"""Which model each stage builds: pre-trained initialisation, missing-modality strategy, clip geometry."""

from pathlib import Path

import pytest
import torch

from karmma.cli import main
from karmma.configs import config_path
from karmma.configuration import ConfigError, load_config
from karmma.models.weights import MissingWeightsError
from karmma.stages import build_stage_model
from karmma.train_config import TrainConfig, stage_names, stage_spec

HEADS = {"verb": 97, "noun": 300}
SMALL = ["clip.frames=4", "clip.size=32", "clip.audio_frames=64"]


@pytest.mark.parametrize("stage", stage_names())
def test_each_stage_builds_the_model_its_record_names(stage, tiny):
    """The stage table's ``model``: one trained extractor, the teacher (its extractors frozen) or the
    student architecture; its ``missing`` is the model's strategy when the config leaves it empty."""
    spec = stage_spec(stage)
    config = TrainConfig(stage=stage, preset="tiny", unimodal_modality="F", unimodal_size="student")
    # a teacher's frozen extractors must be pre-trained, unless it trains from the cache of their tokens
    config.cache.path = "cache"
    model = build_stage_model(config, {"verb": 5, "noun": 6})
    extractors = list(model.extractors.parameters())
    assert model.missing_strategy == spec.missing
    if spec.model == "extractor":
        assert model.modalities == ["F"] and all(p.requires_grad for p in extractors)
        assert sum(p.numel() for p in extractors) == sum(
            p.numel() for p in tiny.student["F"].build_extractor().parameters()
        )
    elif spec.model == "teacher":
        assert model.modalities == ["V", "F", "A"] and not any(p.requires_grad for p in extractors)
    else:
        assert model.modalities == ["V", "F", "A"] and all(p.requires_grad for p in extractors)


@pytest.fixture(scope="module")
def torchvision_cache(tmp_path_factory):
    """Random Swin3D-T / ResNet-18 weights where torchvision would cache the real ones."""
    from official_formats import write_torchvision_cache

    home = tmp_path_factory.mktemp("torch_home")
    return home, write_torchvision_cache(home)


def _paper_config(stage: str, *overrides: str) -> TrainConfig:
    return load_config(TrainConfig, config_path("epic100", stage), [*SMALL, *overrides])


@pytest.mark.e2e
@pytest.mark.parametrize("stage", ["student", "baseline", "baseline_masked", "baseline_delta"])
def test_every_student_sized_stage_starts_from_the_pretrained_extractors(stage, torchvision_cache, monkeypatch):
    home, files = torchvision_cache
    monkeypatch.setenv("TORCH_HOME", str(home))
    swin = torch.load(files["swin3d_t"], weights_only=True)["patch_embed.proj.weight"]  # [96, 3, 2, 4, 4]
    resnet = torch.load(files["resnet18"], weights_only=True)["conv1.weight"]  # [64, 3, 7, 7]
    model = build_stage_model(_paper_config(stage), HEADS)
    assert torch.equal(model.extractors["V"].swin.patch_embed.proj.weight, swin)
    # flow and audio: the RGB filters averaged over the new input channels (TSN's cross-modality init)
    flow = model.extractors["F"].swin.patch_embed.proj.weight
    assert flow.shape[1] == 2 and torch.allclose(flow, swin.mean(1, keepdim=True).expand_as(flow))
    audio = model.extractors["A"].conv1.weight
    assert audio.shape[1] == 1 and torch.allclose(audio, resnet.mean(1, keepdim=True))
    # restoring a checkpoint reads no weights file
    monkeypatch.setenv("TORCH_HOME", str(home / "elsewhere"))
    build_stage_model(_paper_config(stage), HEADS, restore=True)
    build_stage_model(
        _paper_config(stage, "pretrained.V=/no/such.pth", "pretrained.F=/no/such.ckpt"), HEADS, restore=True
    )


def test_a_missing_weights_file_stops_the_stage_naming_it(capsys, shared_data, tmp_path):
    with pytest.raises(MissingWeightsError, match="/no/such.pth"):
        build_stage_model(_paper_config("student", "pretrained.V=/no/such.pth"), HEADS)
    assert (
        main(
            [
                "train",
                str(config_path("epic100", "student")),
                f"data.root={tmp_path}",
                f"data.annotations={shared_data / 'epic-kitchens-100'}",
                f"trainer.runs={tmp_path / 'runs'}",
                *SMALL,
                "pretrained.V=/no/such.pth",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "/no/such.pth" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_torchvision_names_are_looked_up_on_disk_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"KINETICS400_V1 not found at .*swin3d_t.*never downloads"):
        build_stage_model(_paper_config("baseline"), HEADS)


def test_pretrained_key_for_a_modality_the_stage_lacks(tmp_path):
    with pytest.raises(ConfigError, match="pretrained.D: the student stage has no modality D"):
        build_stage_model(_paper_config("student", "pretrained={}", "pretrained.D=/x.pth"), HEADS)


@pytest.mark.e2e
def test_pretrained_from_a_karmma_checkpoint(trained_runs, synth_prepared, make_config):
    """A student-sized extractor from any karmma run with one (e.g. a Baseline trained before)."""
    from karmma.checkpoints import read_checkpoint

    _, results = trained_runs
    config = make_config("baseline", synth_prepared, Path("unused"), f"pretrained.V={results['student']['best']}")
    model = build_stage_model(config, {"verb": 5, "noun": 6})
    state = read_checkpoint(results["student"]["best"])["state_dict"]
    for name, value in model.extractors["V"].state_dict().items():
        assert torch.equal(value, state[f"model.extractors.V.{name}"]), name
    teacher_sized = make_config(
        "baseline", synth_prepared, Path("unused"), f"pretrained.V={results['unimodal_V']['best']}"
    )
    with pytest.raises(ValueError, match="does not match this model's"):
        build_stage_model(teacher_sized, {"verb": 5, "noun": 6})


@pytest.mark.parametrize(
    "stage,strategy",
    [
        ("teacher", "learned"),
        ("student", "learned"),
        ("baseline", "zeros"),
        ("baseline_masked", "mask"),
        ("baseline_delta", "learned"),
    ],
)
def test_every_shipped_config_states_its_missing_modality_strategy(stage, strategy):
    import yaml

    for dataset in ("synthkitchen", "epic100", "epic_star", "ssv2"):
        raw = yaml.safe_load(config_path(dataset, stage).read_text())
        assert raw["missing_modality"] == strategy, (dataset, stage)
        with torch.device("meta"):
            model = build_stage_model(
                load_config(TrainConfig, config_path(dataset, stage), ["pretrained={}", *SMALL]),
                {"action": 174} if dataset == "ssv2" else HEADS,
                restore=True,
            )
        assert model.missing_strategy == strategy


def test_clip_geometry_keeps_the_architecture():
    with torch.device("meta"):
        small = build_stage_model(_paper_config("student"), HEADS, restore=True)
        full = build_stage_model(load_config(TrainConfig, config_path("epic100", "student")), HEADS, restore=True)
    assert small.specs["V"].input_shape == (4, 3, 32, 32) and full.specs["V"].input_shape == (32, 3, 224, 224)
    assert small.specs["A"].input_shape == (1, 128, 64)
    assert {k: v.shape for k, v in small.state_dict().items() if "position_tokens" not in k} == {
        k: v.shape for k, v in full.state_dict().items() if "position_tokens" not in k
    }
    with pytest.raises(ValueError, match="clip.size must be a positive integer"):
        build_stage_model(_paper_config("student", "clip.size=0"), HEADS, restore=True)


def test_training_and_validation_steps_finish_the_loaders_uint8_inputs(synth_prepared, make_config, tmp_path):
    """A batch as the loader hands it over (uint8 V/F and their maps) trains and validates exactly as
    the same batch with the float inputs made beforehand; the model itself never sees uint8."""
    from karmma.data.dataset import collate_clips
    from karmma.data.transforms import finish_inputs
    from karmma.training.module import KarmmaModule
    from karmma.training.run import clip_dataset

    module = KarmmaModule(make_config("baseline_delta", synth_prepared, tmp_path)).eval()
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    module.log_dict = lambda values, **kwargs: logged.update(values)
    dataset = clip_dataset(module.config, module, "train")
    batch = collate_clips(dataset.__getitems__([(i, 100 + i) for i in range(4)]))
    assert batch["inputs"]["V"].dtype == torch.uint8
    finished = dict(batch, inputs=finish_inputs(batch), affine={})
    seen = []
    module.model.register_forward_pre_hook(lambda _, args: seen.append({k: v.dtype for k, v in args[0].items()}))
    torch.testing.assert_close(module.training_step(batch, 0), module.training_step(finished, 0), rtol=0, atol=0)
    module.validation_step(batch, 0)
    from_uint8 = dict(logged)
    module.validation_step(finished, 0)
    assert from_uint8["val/ce"] == logged["val/ce"]
    assert seen and all(dtype == torch.float32 for dtypes in seen for dtype in dtypes.values())
    # validation scores as karmma evaluate does (karmma.accuracy)
    from karmma.evaluation.metrics import classification_metrics

    with torch.no_grad():
        logits = module.model(finished["inputs"], finished["availability"]).logits
    evaluated = classification_metrics({h: v.softmax(dim=1) for h, v in logits.items()}, batch["labels"])
    for name in [f"{h}_top1" for h in logits] + ["action_top1"]:
        assert logged[f"val/{name}"].item() == pytest.approx(evaluated[name]), name


def test_extractor_lr_scale_gives_the_extractors_their_own_learning_rate(synth_prepared, make_config, tmp_path):
    from types import SimpleNamespace

    from karmma.data.dataset import collate_clips
    from karmma.training.module import KarmmaModule
    from karmma.training.run import clip_dataset

    config = make_config("baseline_delta", synth_prepared, tmp_path, "optim.lr=0.002", "optim.extractor_lr_scale=0")
    module = KarmmaModule(config)
    module._trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=2)
    optimizer = module.configure_optimizers()["optimizer"]
    rest, extractors = optimizer.param_groups
    assert (rest["initial_lr"], extractors["initial_lr"]) == (0.002, 0.0)  # before the warm-up factor
    assert {id(p) for p in extractors["params"]} == {id(p) for p in module.model.extractors.parameters()}
    assert len(rest["params"]) + len(extractors["params"]) == len(list(module.model.parameters()))

    # one step: the fusion moves, the extractors (lr 0) keep their pre-trained weights
    module.log = module.log_dict = lambda *args, **kwargs: None
    dataset = clip_dataset(module.config, module, "train")
    batch = collate_clips(dataset.__getitems__([(i, 100 + i) for i in range(4)]))
    before = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    module.training_step(batch, 0).backward()
    optimizer.step()
    moved = {name for name, p in module.model.named_parameters() if not torch.equal(p, before[name])}
    assert moved and not any(name.startswith("extractors.") for name in moved)
    assert any(name.startswith("blocks.") for name in moved)

    with pytest.raises(ValueError, match="optim.extractor_lr_scale"):
        make_config("baseline_delta", synth_prepared, tmp_path, "optim.extractor_lr_scale=-1")
