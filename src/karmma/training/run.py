"""``karmma train``: one command per stage, from a laptop CPU to many GPUs.

A run folder ``<trainer.runs>/<trainer.name or stage>/`` holds the resolved
``config.yaml``, ``git.txt`` (commit), ``checkpoints/{best,last}.ckpt``,
``metrics.csv`` (per step and epoch), ``metrics.json`` (per epoch),
``tensorboard/`` logs and ``curves.png``. Running the same command again
resumes from ``checkpoints/last.ckpt`` (saved after every epoch): all
randomness is derived from (seed, epoch, item / step), so the resumed run ends
where an uninterrupted one would.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from karmma.configuration import save_config, to_dict
from karmma.data.config import load_split
from karmma.data.dataset import ClipDataset, collate_clips
from karmma.presets import get_preset
from karmma.training.cache import CachedFeatures, CachedTeacherViews, collate_features, collate_with_teacher_logits
from karmma.training.checkpoints import CheckpointError, SafeCheckpointIO, checkpoint_config, read_checkpoint
from karmma.training.config import TrainConfig
from karmma.training.data import make_loader
from karmma.training.module import KarmmaModule


def run_dir(config: TrainConfig) -> Path:
    return Path(config.trainer.runs) / (config.trainer.name or config.stage)


def input_shapes(module: KarmmaModule) -> dict[str, tuple[int, ...]]:
    """What the dataset must produce: the model's inputs, plus ``key:teacher`` where a live
    teacher needs another form of a modality (the paper teacher's audio images)."""
    shapes = {k: module.model.specs[k].input_shape for k in module.modalities}
    if module.teacher is not None:
        for key, spec in module.teacher.specs.items():
            if key in shapes and spec.input_shape != shapes[key]:
                shapes[f"{key}:teacher"] = spec.input_shape
    return shapes



def clip_dataset(config: TrainConfig, module: KarmmaModule, split: str) -> ClipDataset:
    """The media clips of ``split`` in the shapes the module needs (training sampling for ``train``)."""
    return ClipDataset(load_split(config.data, split), input_shapes(module), train=split == "train", config=config.clip,
                       missing=config.data.missing)

# Library messages that say nothing to a karmma user (frozen extractors are in eval mode on purpose).
QUIET_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Found \d+ module\(s\) in eval mode at the start of training",
)


class ProgressBar(TQDMProgressBar):
    """Lightning's bar without ``v_num`` (the logger version, "oard" of "tensorboard" here)."""

    def get_metrics(self, trainer, module):
        items = super().get_metrics(trainer, module)
        items.pop("v_num", None)
        return items


def best_epoch(history: list[dict], monitor: str = "val/action_top1") -> dict | None:
    """The ``metrics.json`` entry that ``best.ckpt`` holds: the first epoch with the highest ``monitor``
    (ModelCheckpoint replaces best.ckpt only on a strict improvement)."""
    scored = [h for h in history if h.get(monitor) is not None]
    return max(scored, key=lambda h: h[monitor], default=None)  # max keeps the first of equal values


class EpochMetrics(Callback):
    """Writes ``metrics.json`` (one entry per epoch) and ``curves.png`` into the run folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_train_epoch_end(self, trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        path = self.folder / "metrics.json"
        history = json.loads(path.read_text()) if path.is_file() else []
        history = [h for h in history if h["epoch"] < trainer.current_epoch]
        metrics = {
            k.removesuffix("_epoch"): round(float(v), 4)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val/") or (k.startswith("train/") and k.endswith("_epoch"))
        }
        history.append({"epoch": trainer.current_epoch, **metrics})
        path.write_text(json.dumps(history, indent=1))
        plot_curves(history, self.folder / "curves.png")


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ce_ax, other_ax, acc_ax) = plt.subplots(1, 3, figsize=(14, 3.5))
    # cross-entropy and the other loss terms (distillation KL, InfoNCE) have different scales: separate axes;
    # markers, so that a one-epoch run shows as points
    panels = {ce_ax: ("train/ce", "val/ce"), other_ax: ("train/kd", "train/info_nce"),
              acc_ax: sorted({k for h in history for k in h if k.startswith("val/") and k.endswith("top1")})}
    for ax, keys in panels.items():
        for key in keys:
            if any(key in h for h in history):
                ax.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", markersize=4, label=key)
    ce_ax.set_title("cross-entropy"), other_ax.set_title("other loss terms (unweighted)"), acc_ax.set_title("validation top-1 (%)")
    for ax in (ce_ax, other_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_resumable(last: Path, config: TrainConfig) -> None:
    previous = checkpoint_config(read_checkpoint(last), last)
    for key in ("stage", "preset"):
        if previous.get(key) != getattr(config, key):
            raise CheckpointError(
                f"{last}: the run folder holds a {key}={previous.get(key)!r} run, this config says {getattr(config, key)!r}; "
                "use another trainer.name"
            )


def train(config: TrainConfig) -> dict:
    """Train one stage; returns the final validation metrics and where things are."""
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    folder = run_dir(config)
    checkpoints = folder / "checkpoints"
    last = checkpoints / "last.ckpt"
    resume = last if last.is_file() else None
    if resume:
        check_resumable(resume, config)
        print(f"resuming from {resume}")
    module = KarmmaModule(to_dict(config))
    folder.mkdir(parents=True, exist_ok=True)
    save_config(config, folder / "config.yaml")
    (folder / "git.txt").write_text(_git_commit() + "\n")

    collate = collate_clips
    val_collate = collate_clips
    if config.stage == "student" and config.teacher_logits == "cache":
        if not config.cache.path:
            raise ValueError("teacher_logits=cache needs cache.path (written by karmma extract --logits)")
        train_set = CachedTeacherViews(clip_dataset(config, module, "train"), config.cache.path, in_memory=config.cache.in_memory)
        val_set = clip_dataset(config, module, "validation")
        collate = collate_with_teacher_logits
        print(f"train: {len(train_set)} clips with cached teacher logits ({config.cache.path}), validation: {len(val_set)} clips")
    elif config.stage == "teacher" and config.cache.path:
        train_set = CachedFeatures(config.cache.path, "train", module.modalities, config.cache.in_memory)
        val_set = CachedFeatures(config.cache.path, "validation", module.modalities, config.cache.in_memory)
        collate = val_collate = collate_features
        print(f"train: {len(train_set)} clips, validation: {len(val_set)} clips (teacher feature cache {config.cache.path})")
    else:
        train_set = clip_dataset(config, module, "train")
        val_set = clip_dataset(config, module, "validation")
        print(f"train: {len(train_set)} clips\n{train_set.report}\nvalidation: {len(val_set)} clips\n{val_set.report}")

    precision = config.trainer.precision
    if precision == "auto":
        precision = "bf16-mixed" if torch.cuda.is_available() and config.trainer.accelerator != "cpu" else "32-true"
    strategy = config.trainer.strategy
    if strategy == "ddp":
        # A modality absent from a rank's whole batch leaves its extractor unused in that
        # step (it is never computed): DDP must not wait for those gradients.
        strategy = "ddp_find_unused_parameters_true"
    trainer = L.Trainer(
        accelerator=config.trainer.accelerator,
        devices=config.trainer.devices,
        num_nodes=config.trainer.num_nodes,
        strategy=strategy,
        precision=precision,
        max_epochs=config.optim.epochs,
        gradient_clip_val=config.optim.grad_clip or None,
        check_val_every_n_epoch=config.trainer.val_every,
        use_distributed_sampler=False,  # SeededSampler shards by rank itself
        deterministic=config.trainer.deterministic,
        enable_progress_bar=config.trainer.progress,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(folder),
        plugins=[SafeCheckpointIO()],
        logger=[CSVLogger(str(folder), name="", version="csv"), TensorBoardLogger(str(folder), name="", version="tensorboard")],
        callbacks=[
            ModelCheckpoint(dirpath=str(checkpoints), filename="best", monitor="val/action_top1", mode="max", save_last=True),
            EpochMetrics(folder),
            *( [ProgressBar(refresh_rate=1)] if config.trainer.progress else [] ),
        ],
    )
    rank, world = trainer.global_rank, trainer.world_size
    batch = config.optim.batch_size
    train_loader = make_loader(train_set, batch, config.trainer.seed, True, config.trainer.workers, rank, world, collate)
    val_loader = make_loader(val_set, batch, config.trainer.seed, False, config.trainer.workers, rank, world, val_collate)
    try:
        with warnings.catch_warnings():
            for message in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None)
    finally:
        for dataset in (train_set, val_set):
            if hasattr(dataset, "close"):
                dataset.close()
    last_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    history = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else []
    best = best_epoch(history)
    result = {
        "run": str(folder),
        "best": str(checkpoints / "best.ckpt"),
        "last": str(last),
        # best.ckpt (what karmma evaluate and export use) and the last epoch (last.ckpt) side by side
        "best_checkpoint": {"epoch": best["epoch"], "metrics": {k: v for k, v in best.items() if k.startswith("val/")}} if best else None,
        "last_epoch": {"epoch": history[-1]["epoch"] if history else trainer.current_epoch - 1, "metrics": last_metrics},
    }
    if trainer.is_global_zero:
        (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result
