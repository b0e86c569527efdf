"""The Lightning module that trains every stage.

| stage | model | inputs | loss |
|---|---|---|---|
| ``unimodal`` | one extractor (``unimodal_size``: teacher or student) + fusion + heads, all trained | one modality | CE |
| ``teacher`` | frozen extractors (from unimodal checkpoints or pretrained weights) | all, dropout p | CE + w * InfoNCE |
| ``student`` | student, learned tokens; a frozen teacher | dropped-out inputs (teacher: all the sample has) | CE + w * KD |
| ``baseline`` | student architecture; a missing modality is a zero input (the paper's) | all | CE |
| ``baseline_masked`` | student architecture; a missing modality is masked out (ours) | all | CE |
| ``baseline_delta`` | student architecture, learned tokens | dropout p | CE |

``pretrained.<M>`` initialises modality M's extractor of the stage's model (the
student-sized one for student and baselines); docs/method.md lists every choice.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import lightning as L
import torch

from karmma.availability import modality_dropout
from karmma.configuration import ConfigError, from_dict
from karmma.data.config import dataset_heads
from karmma.losses import distillation_kl, info_nce, multihead_cross_entropy
from karmma.models.karmma import KARMMA
from karmma.presets import Preset, build_student, build_teacher, get_preset
from karmma.training.checkpoints import CheckpointError, expect_checkpoint, model_state, read_checkpoint
from karmma.training.config import DROPOUT_STAGES, TrainConfig
from karmma.training.data import item_seed, step_slot


def stage_modalities(config: TrainConfig, preset: Preset) -> list[str]:
    if config.stage == "unimodal":
        if not config.unimodal_modality:
            raise ValueError("the unimodal stage needs unimodal_modality (e.g. V)")
        return [config.unimodal_modality]
    modalities = list(config.modalities) or [k for k in config.data.modalities if k in preset.student]
    unknown = [k for k in modalities if k not in preset.student]
    if unknown:
        raise ValueError(f"modalities {unknown} are not in preset {preset.name!r}")
    return modalities


def stage_preset(config: TrainConfig) -> Preset:
    """The config's preset with its clip geometry (``clip.frames`` / ``size`` / ``audio_frames``)
    and fusion dropout applied."""
    clip = config.clip
    preset = get_preset(config.preset, clip.frames, clip.size, clip.audio_frames)
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


def build_stage_model(config: TrainConfig, heads: dict[str, int], restore: bool = False) -> KARMMA:
    """The stage's model, its extractors initialised from ``pretrained.<M>`` (and, for the
    teacher, ``extractors.<M>``). ``restore=True`` builds it to load a checkpoint into: no
    initial weights are read."""
    preset = stage_preset(config)
    modalities = stage_modalities(config, preset)
    unknown = sorted(set(config.pretrained) - set(modalities))
    if unknown:
        raise ConfigError(
            f"pretrained.{unknown[0]}: the {config.stage} stage has no modality {unknown[0]} "
            f"(its modalities: {', '.join(modalities)})"
        )
    pretrained = {} if restore else config.pretrained
    # The teacher (and the pre-training of its extractors) uses teacher-sized extractors; the rest the student's.
    teacher_sized = config.stage == "teacher" or (config.stage == "unimodal" and config.unimodal_size == "teacher")
    specs = _with_weights(preset.teacher if teacher_sized else preset.student, pretrained)
    preset = dataclasses.replace(preset, **{"teacher" if teacher_sized else "student": specs})
    strategy = config.missing_strategy
    if config.stage == "unimodal":
        key = modalities[0]
        spec = (preset.teacher if teacher_sized else preset.student)[key]
        model = KARMMA([spec], heads, preset.student_fusion, strategy, freeze_extractors=False)
    elif config.stage == "teacher":
        model = build_teacher(preset, heads, modalities, strategy)
    else:
        model = build_student(preset, heads, modalities, strategy)
    if restore:
        return model
    for key, path in pretrained.items():
        if path.endswith(".ckpt"):
            load_extractor(model, key, path)
    if config.stage == "teacher":
        for key, path in config.extractors.items():
            load_unimodal_extractor(model, key, path, config.preset)
        missing = [k for k in modalities if k not in config.extractors and k not in config.pretrained]
        if missing and not config.cache.path:
            raise ValueError(
                f"the teacher's extractors must be pre-trained: give extractors.{missing[0]}=<unimodal checkpoint> "
                f"or pretrained.{missing[0]}=<weights> for {missing}"
            )
    return model


def load_extractor(model: KARMMA, key: str, path: str) -> None:
    """Initialise ``model``'s ``key`` extractor from any karmma checkpoint that has one of the same size."""
    _load_extractor_state(model, key, read_checkpoint(path), path)


def load_unimodal_extractor(model: KARMMA, key: str, path: str, preset: str) -> None:
    checkpoint, source = expect_checkpoint(path, "unimodal", preset)
    if source.get("unimodal_modality") != key:
        raise CheckpointError(f"{path}: a unimodal checkpoint of {source.get('unimodal_modality')!r}, not of {key!r}")
    if source.get("unimodal_size", "teacher") != "teacher":
        raise CheckpointError(f"{path}: pre-trains a student-sized extractor; the teacher needs unimodal_size=teacher")
    _load_extractor_state(model, key, checkpoint, path)


def _load_extractor_state(model: KARMMA, key: str, checkpoint: dict, path: str) -> None:
    state = model_state(checkpoint, f"model.extractors.{key}.")
    if not state:
        raise CheckpointError(f"{path}: holds no {key} extractor (pretrained.{key} needs a checkpoint of a model with {key})")
    try:
        model.extractors[key].load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: its {key} extractor does not match this model's (another preset or size?): {str(error)[:200]}"
        ) from None


def load_teacher(path: str, config: TrainConfig, heads: dict[str, int]) -> KARMMA:
    checkpoint, teacher_config = expect_checkpoint(path, "teacher", config.preset)
    teacher_train = from_dict(TrainConfig, teacher_config, str(path))
    teacher = build_stage_model(teacher_train, heads, restore=True)
    try:
        teacher.load_state_dict(model_state(checkpoint))
    except RuntimeError as error:
        raise CheckpointError(f"{path}: teacher does not match this run's heads/modalities ({str(error)[:200]})") from None
    return teacher.eval().requires_grad_(False)


def topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == target[:, None]).any(dim=1)


class KarmmaModule(L.LightningModule):
    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = from_dict(TrainConfig, config)
        self.heads = dataset_heads(self.config.data)
        self.model = build_stage_model(self.config, self.heads)
        self.modalities = self.model.modalities
        teacher = None
        if self.config.stage == "student" and self.config.teacher_logits == "live":
            if not self.config.teacher:
                raise ValueError("the student stage needs teacher=<teacher checkpoint>")
            teacher = load_teacher(self.config.teacher, self.config, self.heads)
        # Kept outside the module tree: not in checkpoints, not in DDP, never trained.
        self.__dict__["teacher"] = teacher

    # -- optimisation ---------------------------------------------------------
    def configure_optimizers(self):
        optim = self.config.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        # foreach: one fused update over all tensors, also on CPU (several times faster for many small tensors)
        optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, foreach=True)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, int(round(optim.warmup_epochs * total / max(1, self.trainer.max_epochs))))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * progress)) if optim.schedule == "cosine" else max(0.0, 1 - progress)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Layer dropout / stochastic depth draw from the global RNG: reseed per step so
        # a resumed run makes the same draws as an uninterrupted one.
        torch.manual_seed(item_seed(self.config.trainer.seed, self.current_epoch, step_slot(batch_idx, self.global_rank)))

    # -- steps ------------------------------------------------------------------
    def _columns(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Availability and dropout noise of the model's modalities: the dataset lists them
        first, then any extra ``key:teacher`` inputs (see ``run.input_shapes``)."""
        m = len(self.modalities)
        return batch["availability"][:, :m], batch["noise"][:, :, :m]

    def training_step(self, batch, batch_idx: int):
        availability, noise = self._columns(batch)
        loss_config = self.config.loss
        stage = self.config.stage
        logs = {}
        dropped = availability
        if stage in DROPOUT_STAGES:
            dropped = modality_dropout(availability, loss_config.modality_dropout, noise=noise)
        inputs = {k: v for k, v in batch["inputs"].items() if k in self.modalities}
        if "tokens" in batch:  # teacher from the feature cache
            out = self.model.fuse(batch["tokens"], dropped)
        else:
            out = self.model(inputs, dropped)
        ce = multihead_cross_entropy(out.logits, batch["labels"], loss_config.label_smoothing)
        loss = ce
        logs["train/ce"] = ce
        if stage == "teacher" and loss_config.info_nce_weight > 0:
            nce = info_nce(out.modality_features, dropped, self.modalities, loss_config.info_nce_temperature)
            loss = loss + loss_config.info_nce_weight * nce
            logs["train/info_nce"] = nce
        if stage == "student":
            if "teacher_logits" in batch:
                teacher_logits = batch["teacher_logits"]
            else:
                teacher_inputs = {k: batch["inputs"].get(f"{k}:teacher", v) for k, v in inputs.items()}
                with torch.no_grad():
                    teacher_logits = self.teacher(teacher_inputs, availability).logits
            kd = distillation_kl(out.logits, teacher_logits, loss_config.temperature)
            loss = loss + loss_config.distill_weight * kd
            logs["train/kd"] = kd
        logs["train/loss"] = loss
        batch_size = availability.shape[0]
        # sync_dist: the logged step loss is the global batch's mean under DDP
        self.log_dict(logs, on_step=True, on_epoch=True, prog_bar=False, batch_size=batch_size, sync_dist=True)
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)
        return loss

    def validation_step(self, batch, batch_idx: int):
        availability, _ = self._columns(batch)
        if "tokens" in batch:
            out = self.model.fuse(batch["tokens"], availability)
        else:
            inputs = {k: v for k, v in batch["inputs"].items() if k in self.modalities}
            out = self.model(inputs, availability)
        batch_size = availability.shape[0]
        all_correct = torch.ones(batch_size, dtype=torch.bool, device=availability.device)
        metrics = {"val/ce": multihead_cross_entropy(out.logits, batch["labels"])}
        for head, logits in out.logits.items():
            correct = topk_correct(logits, batch["labels"][head], 1)
            all_correct &= correct
            metrics[f"val/{head}_top1"] = correct.float().mean() * 100
        # EPIC action = (verb, noun): the product of the softmaxes is maximised by the two argmaxes,
        # so action top-1 is "every head right".
        metrics["val/action_top1"] = all_correct.float().mean() * 100
        self.log_dict(metrics, on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=True)
