"""The stage -> model factory: the model a training stage trains, built from its config.

Which model is the stage's :attr:`~karmma.train_config.StageSpec.model` (the table
:data:`~karmma.train_config.STAGE_SPECS`):

| model | built | stages |
|---|---|---|
| ``extractor`` | one extractor (``unimodal_size``: teacher or student) + fusion + heads | ``unimodal`` |
| ``teacher`` | teacher-sized extractors of every modality, frozen (from unimodal checkpoints or pretrained weights) | ``teacher`` |
| ``student`` | the student architecture | ``student``, ``baseline``, ``baseline_masked``, ``baseline_delta``: they differ in training and in ``missing_modality`` |

``pretrained.<M>`` initialises modality M's extractor of the stage's model (the
student-sized one for student and baselines); docs/method.md lists every choice.
No Lightning here: evaluation and deployment rebuild models through this module.
"""

from __future__ import annotations

import dataclasses

from karmma.checkpoints import CHECKPOINT_RECIPE, CheckpointError, expect_checkpoint, model_state, read_checkpoint
from karmma.configuration import ConfigError
from karmma.data.recipe import check_same_recipe, recorded_recipe
from karmma.modalities import ModalitySpec
from karmma.models.karmma import KARMMA
from karmma.presets import Preset, build_student, build_teacher, get_preset
from karmma.train_config import TrainConfig, stage_names, stage_spec


def stage_modalities(config: TrainConfig, preset: Preset) -> list[str]:
    if stage_spec(config.stage).model == "extractor":
        if not config.unimodal_modality:
            raise ValueError(f"the {config.stage} stage needs unimodal_modality (e.g. V)")
        return [config.unimodal_modality]
    modalities = list(config.modalities) or [k for k in config.data.modalities if k in preset.student]
    unknown = [k for k in modalities if k not in preset.student]
    if unknown:
        raise ValueError(f"modalities {unknown} are not in preset {preset.name!r}")
    return modalities


def stage_preset(config: TrainConfig) -> Preset:
    """The config's preset with its clip geometry (``clip.frames`` / ``size`` / ``audio_frames``),
    token pooling and fusion dropout applied."""
    clip = config.clip
    preset = get_preset(config.preset, clip.frames, clip.size, clip.audio_frames, config.token_pooling or None)
    if config.fusion_dropout is not None:
        preset = dataclasses.replace(
            preset,
            teacher_fusion=dataclasses.replace(preset.teacher_fusion, dropout=config.fusion_dropout),
            student_fusion=dataclasses.replace(preset.student_fusion, dropout=config.fusion_dropout),
        )
    return preset


def _with_weights(specs: dict, pretrained: dict[str, str]) -> dict:
    """``specs`` with ``weights`` set on the extractor configs named in ``pretrained``
    (local files and torchvision names; karmma checkpoints are loaded after building)."""
    specs = dict(specs)
    for key, weights in pretrained.items():
        if weights.endswith(".ckpt"):
            continue
        spec = specs[key]
        if not any(f.name == "weights" for f in dataclasses.fields(spec.extractor)):
            raise ConfigError(
                f"pretrained.{key}: the {type(spec.extractor).__name__} extractor takes no weights file; "
                f"give a karmma checkpoint (.ckpt) with a trained {key} extractor instead"
            )
        specs[key] = dataclasses.replace(spec, extractor=dataclasses.replace(spec.extractor, weights=weights))
    return specs


def _teacher_sized(config: TrainConfig) -> bool:
    """The teacher (and the pre-training of its extractors) uses teacher-sized extractors; the rest the student's."""
    model = stage_spec(config.stage).model
    return model == "teacher" or (model == "extractor" and config.unimodal_size == "teacher")


def _stage_specs(config: TrainConfig, pretrained: dict[str, str]) -> tuple[Preset, list[str], dict]:
    """The stage's preset, modalities and modality specs of its size, ``weights`` set on the
    extractors that ``pretrained`` names (a key the stage lacks is an error)."""
    preset = stage_preset(config)
    modalities = stage_modalities(config, preset)
    unknown = sorted(set(config.pretrained) - set(modalities))
    if unknown:
        raise ConfigError(
            f"pretrained.{unknown[0]}: the {config.stage} stage has no modality {unknown[0]} "
            f"(its modalities: {', '.join(modalities)})"
        )
    specs = _with_weights(preset.teacher if _teacher_sized(config) else preset.student, pretrained)
    return preset, modalities, specs


def stage_extractor_specs(config: TrainConfig) -> dict[str, ModalitySpec]:
    """Modality key -> spec of each extractor the stage builds, with the ``weights`` a run loads
    into it (from ``pretrained.<M>``; karmma ``.ckpt`` files are read after building)."""
    _, modalities, specs = _stage_specs(config, config.pretrained)
    return {key: specs[key] for key in modalities}


def build_stage_model(config: TrainConfig, heads: dict[str, int], restore: bool = False) -> KARMMA:
    """The stage's model, its extractors initialised from ``pretrained.<M>`` (and, for the
    teacher, ``extractors.<M>``). ``restore=True`` builds it to load a checkpoint into: no
    initial weights are read."""
    preset, modalities, specs = _stage_specs(config, {} if restore else config.pretrained)
    teacher_sized = _teacher_sized(config)
    preset = dataclasses.replace(preset, **{"teacher" if teacher_sized else "student": specs})
    pretrained = {} if restore else config.pretrained
    strategy = config.missing_strategy
    stage = stage_spec(config.stage)
    if stage.model == "extractor":
        key = modalities[0]
        spec = (preset.teacher if teacher_sized else preset.student)[key]
        model = KARMMA([spec], heads, preset.student_fusion, strategy, freeze_extractors=False)
    elif stage.model == "teacher":
        model = build_teacher(preset, heads, modalities, strategy)
    else:
        model = build_student(preset, heads, modalities, strategy)
    if restore:
        return model
    for key, path in pretrained.items():
        if path.endswith(".ckpt"):
            load_extractor(model, key, path, config)
    if stage.frozen_extractors:
        for key, path in config.extractors.items():
            load_unimodal_extractor(model, key, path, config)
        if not config.cache.path:  # from the cache only the fusion runs: the cache's reader checks its extractors
            require_pretrained_teacher(config)
    return model


def require_pretrained_teacher(config: TrainConfig, alternative: str = "") -> None:
    """Refuse a teacher config that leaves a frozen extractor random (neither ``extractors.<M>``
    nor ``pretrained.<M>`` given): one line naming the keys; ``alternative`` is appended to it."""
    missing = teacher_modalities_without_weights(config)
    if missing:
        raise ValueError(
            f"the teacher's extractors must be pre-trained: give extractors.{missing[0]}=<unimodal checkpoint> "
            f"or pretrained.{missing[0]}=<weights> for each of {', '.join(missing)}{alternative}"
        )


def teacher_modalities_without_weights(config: TrainConfig) -> list[str]:
    """The teacher's modalities whose frozen extractor neither ``extractors.<M>`` nor
    ``pretrained.<M>`` initialises (it would stay random)."""
    modalities = stage_modalities(config, stage_preset(config))
    return [k for k in modalities if k not in config.extractors and k not in config.pretrained]


def load_extractor(model: KARMMA, key: str, path: str, config: TrainConfig) -> None:
    """Initialise ``model``'s ``key`` extractor from any karmma checkpoint that has one of the same size
    and was trained on frames of the same recipe as ``config``'s data."""
    checkpoint = read_checkpoint(path)
    check_checkpoint_recipe(checkpoint, path, config)
    _load_extractor_state(model, key, checkpoint, path)


def load_unimodal_extractor(model: KARMMA, key: str, path: str, config: TrainConfig) -> None:
    checkpoint, source = expect_checkpoint(path, stage_names("extractor"), config.preset)
    if source.get("unimodal_modality") != key:
        raise CheckpointError(f"{path}: a unimodal checkpoint of {source.get('unimodal_modality')!r}, not of {key!r}")
    if source.get("unimodal_size", "teacher") != "teacher":
        raise CheckpointError(f"{path}: pre-trains a student-sized extractor; the teacher needs unimodal_size=teacher")
    check_checkpoint_recipe(checkpoint, path, config)
    _load_extractor_state(model, key, checkpoint, path)


def check_checkpoint_recipe(checkpoint: dict, path: str, config: TrainConfig) -> None:
    """Refuse a checkpoint trained on frames of another recipe than ``config``'s data (one line)."""
    from karmma.data.config import dataset_recipe

    check_same_recipe(
        recorded_recipe(checkpoint.get(CHECKPOINT_RECIPE), path),
        dataset_recipe(config.data),
        f"checkpoint {path}",
        f"the training data ({config.data.root})",
    )


def _load_extractor_state(model: KARMMA, key: str, checkpoint: dict, path: str) -> None:
    state = model_state(checkpoint, f"model.extractors.{key}.")
    if not state:
        raise CheckpointError(
            f"{path}: holds no {key} extractor (pretrained.{key} needs a checkpoint of a model with {key})"
        )
    try:
        model.extractors[key].load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: its {key} extractor does not match this model's (another preset or size?): {str(error)[:200]}"
        ) from None
