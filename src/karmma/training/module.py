"""The Lightning module that trains every stage; what each stage adds to the cross-entropy and
whether it drops modalities are its record in :data:`karmma.train_config.STAGE_SPECS`:

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

import math

import lightning as L
import torch

from karmma.accuracy import every_head_correct, topk_correct
from karmma.artifacts import load_model
from karmma.availability import modality_dropout
from karmma.checkpoints import CHECKPOINT_RECIPE, CheckpointError
from karmma.configuration import to_dict
from karmma.data.config import dataset_heads, dataset_recipe
from karmma.data.loader import item_seed, step_slot
from karmma.data.recipe import check_same_recipe
from karmma.data.transforms import finish_inputs
from karmma.losses import distillation_kl, info_nce, multihead_cross_entropy
from karmma.models.karmma import KARMMA
from karmma.stages import build_stage_model
from karmma.train_config import TrainConfig, stage_names, stage_spec


def load_teacher(path: str, config: TrainConfig, heads: dict[str, int]) -> KARMMA:
    """The frozen teacher a student of ``config`` distils from (same preset and heads, trained
    on frames of the same recipe as ``config``'s data)."""
    teacher, info = load_model(path, stages=stage_names("teacher"), heads=heads)
    if info.config.get("preset") != config.preset:
        raise CheckpointError(
            f"{path}: trained with preset {info.config.get('preset')!r}, this run uses {config.preset!r}"
        )
    check_same_recipe(
        info.preparation, dataset_recipe(config.data), f"teacher {path}", f"the training data ({config.data.root})"
    )
    return teacher.requires_grad_(False)


def view_averaged_log_probabilities(logits: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """``[R, C]`` logits of views, ``clips`` ``[R]`` the clip of each view -> ``[B, C]`` log of each
    clip's mean softmax over its views (the multi-view protocol of ``karmma evaluate``); as logits
    they give the averaged prediction's top-k and cross-entropy."""
    count = int(clips.max()) + 1 if len(clips) else 0
    sums = logits.new_zeros((count, logits.shape[1]), dtype=torch.float32)
    sums.index_add_(0, clips, logits.float().softmax(dim=1))
    views = torch.bincount(clips, minlength=count).clamp_min(1)
    # a probability that underflowed to 0 stays finite as a logit
    return (sums / views[:, None]).clamp_min(torch.finfo(torch.float32).tiny).log()


class KarmmaModule(L.LightningModule):
    def __init__(self, config: TrainConfig):
        super().__init__()
        self.save_hyperparameters({"config": to_dict(config)})  # plain data: checkpoints hold no pickled classes
        self.config = config
        self.heads = dataset_heads(self.config.data)
        self.model = build_stage_model(self.config, self.heads)
        self.modalities = self.model.modalities
        self.recipe = dataset_recipe(self.config.data)  # how the training frames were made: goes into checkpoints
        self.spec = stage_spec(self.config.stage)
        teacher = None
        if self.spec.distillation and self.config.teacher_logits == "live":
            if not self.config.teacher:
                raise ValueError(f"the {self.config.stage} stage needs teacher=<teacher checkpoint>")
            teacher = load_teacher(self.config.teacher, self.config, self.heads)
        # Kept outside the module tree: not in checkpoints, not in DDP, never trained.
        self.__dict__["teacher"] = teacher

    # -- optimisation ---------------------------------------------------------
    def configure_optimizers(self):
        optim = self.config.optim
        trained = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        extractors = [p for name, p in trained if name.startswith("extractors.")]
        rest = [p for name, p in trained if not name.startswith("extractors.")]
        groups = [{"params": rest, "lr": optim.lr}]
        if extractors:
            groups.append({"params": extractors, "lr": optim.lr * optim.extractor_lr_scale})
        # foreach: one fused update over all tensors, also on CPU (several times faster for many small tensors)
        optimizer = torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay, foreach=True)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, int(round(optim.warmup_epochs * total / max(1, self.trainer.max_epochs))))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * progress)) if optim.schedule == "cosine" else max(0.0, 1 - progress)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the frame recipe travels with the weights (None: the data's recipe is unknown)
        checkpoint[CHECKPOINT_RECIPE] = self.recipe.to_record() if self.recipe else None

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Layer dropout / stochastic depth draw from the global RNG: reseed per step so
        # a resumed run makes the same draws as an uninterrupted one.
        torch.manual_seed(
            item_seed(self.config.trainer.seed, self.current_epoch, step_slot(batch_idx, self.global_rank))
        )

    # -- steps ------------------------------------------------------------------
    def _columns(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Availability and dropout noise of the model's modalities: the dataset lists them
        first, then any extra ``key:teacher`` inputs (see ``run.input_shapes``)."""
        m = len(self.modalities)
        return batch["availability"][:, :m], batch["noise"][:, :, :m]

    def training_step(self, batch, batch_idx: int):
        availability, noise = self._columns(batch)
        loss_config = self.config.loss
        logs = {}
        dropped = availability
        if self.spec.modality_dropout:
            dropped = modality_dropout(availability, loss_config.modality_dropout, noise=noise)
        # the loader's uint8 V/F finished where the batch is (Lightning moved it to the model's device)
        finished = finish_inputs(batch)
        inputs = {k: v for k, v in finished.items() if k in self.modalities}
        if "tokens" in batch:  # teacher from the feature cache
            out = self.model.fuse(batch["tokens"], dropped)
        else:
            out = self.model(inputs, dropped)
        ce = multihead_cross_entropy(out.logits, batch["labels"], loss_config.label_smoothing)
        loss = ce
        logs["train/ce"] = ce
        if self.spec.info_nce and loss_config.info_nce_weight > 0:
            nce = info_nce(out.modality_features, dropped, self.modalities, loss_config.info_nce_temperature)
            loss = loss + loss_config.info_nce_weight * nce
            logs["train/info_nce"] = nce
        if self.spec.distillation:
            if "teacher_logits" in batch:
                teacher_logits = batch["teacher_logits"]
            else:
                teacher_inputs = {k: finished.get(f"{k}:teacher", v) for k, v in inputs.items()}
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
        if "tokens" in batch:  # the feature cache: every evaluation view of each clip, averaged as karmma evaluate does
            views = self.model.fuse(batch["tokens"], availability).logits
            clip_logits = {h: view_averaged_log_probabilities(v, batch["clips"]) for h, v in views.items()}
        else:
            clip_logits = self.model(finish_inputs(batch, keys=self.modalities), availability).logits
        batch_size = len(next(iter(batch["labels"].values())))
        metrics = {"val/ce": multihead_cross_entropy(clip_logits, batch["labels"])}
        for head, logits in clip_logits.items():
            metrics[f"val/{head}_top1"] = topk_correct(logits, batch["labels"][head], 1).float().mean() * 100
        metrics["val/action_top1"] = every_head_correct(clip_logits, batch["labels"]).float().mean() * 100
        self.log_dict(metrics, on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=True)
