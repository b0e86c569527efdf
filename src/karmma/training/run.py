"""``karmma train``: one command per stage, from a laptop CPU to many GPUs.

A run folder ``<trainer.runs>/<trainer.name or stage>/`` holds the resolved
``config.yaml``, ``git.txt`` (commit), ``checkpoints/{best,last}.ckpt``,
``metrics.csv`` (per step and epoch), ``metrics.json`` (per epoch),
``tensorboard/`` logs and ``curves.png``. Running the same command again
resumes from ``checkpoints/last.ckpt`` (saved after every epoch): all
randomness is derived from (seed, epoch, item / step), so the resumed run ends
where an uninterrupted one would. Once a run has ended (``result.json``
written), running it again trains nothing and returns that result, leaving the
folder as it is.

A run folder belongs to one process and one config: ``.lock`` holds the
owner's pid (an ``flock``, so the lock of a killed process is free again and
is taken over), a second training of the same run name fails at once, and
resuming with a different config is refused with the differences listed
(``karmma train --force-new`` moves the old run aside into
``replaced-<time>/``; nothing is deleted). ``csv/metrics.csv`` is appended to
on resume, never truncated.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import socket
import subprocess
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from karmma.checkpoints import checkpoint_config, read_checkpoint
from karmma.configuration import flatten, save_config, to_dict
from karmma.data.config import load_split
from karmma.data.dataset import ClipDataset, collate_clips
from karmma.data.loader import make_loader
from karmma.io import atomic_open, atomic_path, atomic_savefig, atomic_write_text, write_json
from karmma.train_config import TrainConfig, stage_spec
from karmma.training.cache import (
    CachedFeatures,
    CachedTeacherViews,
    collate_features,
    collate_with_teacher_logits,
    training_view_clips,
)
from karmma.training.checkpoint_io import SafeCheckpointIO
from karmma.training.launch import LAUNCHER_PID, die_with_parent
from karmma.training.memory import DecodedClips, DecodedViews
from karmma.training.module import KarmmaModule

log = logging.getLogger("karmma.train")

#: config keys that may change between a run and its resumption (display, speed, where the folder is)
RESUMABLE_CHANGES = ("trainer.progress", "trainer.workers", "trainer.runs", "cache.in_memory")


def run_dir(config: TrainConfig) -> Path:
    return Path(config.trainer.runs) / (config.trainer.name or config.stage)


class RunFolderError(ValueError):
    """A run folder is in use by another process, or holds a run of another config."""


class RunLock:
    """Exclusive ownership of a run folder (or of another folder one process writes, ``what``, such
    as a demo's): ``<folder>/.lock`` holds the owner's pid and host.

    The lock is an ``flock`` on that file: the kernel frees it when the owner dies,
    so a lock file left by a killed run (a stale pid) is detected and taken over.
    ``advice`` ends the message of a folder in use.
    """

    def __init__(
        self,
        folder: Path,
        what: str = "run folder",
        advice: str = "wait for it to finish, or train under another trainer.name",
    ):
        self.path = folder / ".lock"
        self.what, self.advice = what, advice
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            who = f"process {owner[0]} on {owner[1]}" if len(owner) >= 2 else "another process"
            raise RunFolderError(f"{self.what} {self.path.parent} is in use by {who}: {self.advice}") from None
        previous = os.pread(fd, 200, 0).decode(errors="replace").split()
        if previous:
            log.warning(
                "%s %s: taking over the stale lock of process %s (no longer running)",
                self.what,
                self.path.parent,
                previous[0],
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # the file stays: deleting it would let a waiter lock a removed inode
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _launcher_rank_zero() -> bool:
    """False in the extra processes of a distributed launch (they share rank 0's run folder)."""
    return all(int(os.environ.get(var, 0) or 0) == 0 for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"))


def config_differences(previous: dict, current: dict) -> list[str]:
    """``["optim.lr: 0.001 -> 0.0003", ...]`` for keys that differ (beyond :data:`RESUMABLE_CHANGES`)."""
    old, new = flatten(previous), flatten(current)
    changed = []
    for key in sorted(old):  # keys newer than the run (added later, at their defaults) are not a change
        a, b = old[key], new.get(key, "<unset>")
        if (
            key not in RESUMABLE_CHANGES
            and a != b
            and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b))
        ):
            changed.append(f"{key}: {a!r} -> {b!r}")
    return changed


def move_aside(folder: Path) -> Path | None:
    """``--force-new``: move an earlier run's files into ``folder/replaced-<time>/`` (nothing is deleted)."""
    entries = [p for p in folder.iterdir() if p.name != ".lock" and not p.name.startswith("replaced-")]
    if not entries:
        return None
    target = folder / time.strftime("replaced-%Y%m%d-%H%M%S")
    target.mkdir()
    for entry in entries:
        entry.rename(target / entry.name)
    return target


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv`` when a run resumes; this one
    appends to it (continuing its columns), and rewrites it atomically when new columns appear."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        with atomic_open(self.metrics_file_path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    def log_hparams(self, params: dict) -> None:
        from lightning.pytorch.core.saving import save_hparams_to_yaml

        self.hparams.update(params)
        path = Path(self.log_dir) / self.NAME_HPARAMS_FILE
        with atomic_path(path) as tmp:
            save_hparams_to_yaml(tmp, self.hparams)


class AppendingCSVLogger(CSVLogger):
    """:class:`CSVLogger` whose ``metrics.csv`` survives a resumed run (see :class:`_AppendingWriter`)."""

    @property
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def input_shapes(module: KarmmaModule) -> dict[str, tuple[int, ...]]:
    """What the dataset must produce: the model's inputs, plus ``key:teacher`` where a live
    teacher needs another form of a modality (the paper teacher's audio images)."""
    shapes = {k: module.model.specs[k].input_shape for k in module.modalities}
    if module.teacher is not None:
        for key, spec in module.teacher.specs.items():
            if key in shapes and spec.input_shape != shapes[key]:
                shapes[f"{key}:teacher"] = spec.input_shape
    return shapes


def clip_dataset(config: TrainConfig, module: KarmmaModule, split: str, fixed_views: bool = False) -> ClipDataset:
    """The media clips of ``split`` in the shapes the module needs (training sampling for ``train``;
    ``fixed_views``: the training clips whose fixed views the cache and ``cache.decode_once`` hold,
    :func:`~karmma.training.cache.training_view_clips`).

    A split without any usable clip is an error naming ``data.root``, not an empty run."""
    samples = load_split(config.data, split)
    if fixed_views:
        dataset = training_view_clips(samples, input_shapes(module), config)
    else:
        dataset = ClipDataset(
            samples, input_shapes(module), train=split == "train", config=config.clip, missing=config.data.missing
        )
    if not len(dataset):
        root = Path(config.data.root)
        where = (
            f"data.root {root} does not exist"
            if not root.is_dir()
            else (
                f"the {split} annotations list no clip"
                if not samples
                else f"none of its {len(samples)} annotated clips has media of {'/'.join(dataset.modalities)} under data.root {root}"
            )
        )
        raise ValueError(f"no {split} clips: {where}; check data.root / data.annotations")
    return dataset


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


def checkpoint_monitor(stage: str) -> tuple[str, str]:
    """The validation metric ``best.ckpt`` is chosen by, and ``"max"`` or ``"min"`` (which is better):
    the stage's :attr:`~karmma.train_config.StageSpec.monitor` (fusion models: action top-1, the
    number the paper reports; a unimodal extractor: its validation cross-entropy)."""
    spec = stage_spec(stage)
    return spec.monitor, spec.monitor_mode


def best_epoch(history: list[dict], monitor: str = "val/action_top1", mode: str = "max") -> dict | None:
    """The ``metrics.json`` entry that ``best.ckpt`` holds: the first epoch with the best ``monitor``
    (ModelCheckpoint replaces best.ckpt only on a strict improvement)."""
    scored = [h for h in history if h.get(monitor) is not None]
    pick = max if mode == "max" else min  # both keep the first of equal values
    return pick(scored, key=lambda h: h[monitor], default=None)


def validation_clips(config: TrainConfig, module: KarmmaModule):
    """The validation clips, decoded once into memory with ``cache.decode_validation_once``."""
    clips = clip_dataset(config, module, "validation")
    return DecodedClips(clips, config.trainer.workers) if config.cache.decode_validation_once else clips


def stage_datasets(config: TrainConfig, module: KarmmaModule, verbose: bool = True) -> tuple:
    """``(train set, validation set, train collate, validation collate)`` of a stage: clips from
    the media (decoded once into memory with ``cache.decode_once``), with the teacher's cached
    logits for a student, or the teacher's cached tokens."""
    say = print if verbose else (lambda *args, **kwargs: None)
    spec = stage_spec(config.stage)
    if spec.distillation and config.teacher_logits == "cache":
        if not config.cache.path:
            raise ValueError("teacher_logits=cache needs cache.path (written by karmma extract --logits)")
        train_set = CachedTeacherViews(
            clip_dataset(config, module, "train", fixed_views=True),
            config,
            in_memory=config.cache.in_memory,
            decode_once=config.cache.decode_once,
            workers=config.trainer.workers,
        )
        val_set = validation_clips(config, module)
        teacher = train_set.teacher
        say(
            f"train: {len(train_set)} clips with the logits of teacher {teacher['checkpoint']} "
            f"(sha256 {teacher['sha256'][:12]}) cached in {config.cache.path}, validation: {len(val_set)} clips"
        )
        return train_set, val_set, collate_with_teacher_logits, collate_clips
    if spec.frozen_extractors and config.cache.path:
        train_set = CachedFeatures(config, "train", module.modalities, config.cache.in_memory)
        val_set = CachedFeatures(config, "validation", module.modalities, config.cache.in_memory)
        say(
            f"train: {len(train_set)} clips, validation: {len(val_set)} clips x {val_set.views} views "
            f"(teacher feature cache {config.cache.path})"
        )
        return train_set, val_set, collate_features, collate_features
    train_set = clip_dataset(config, module, "train", fixed_views=config.cache.decode_once)
    val_set = validation_clips(config, module)
    say(f"train: {len(train_set)} clips\n{train_set.report}\nvalidation: {len(val_set)} clips\n{val_set.report}")
    if config.cache.decode_once:
        train_set = DecodedViews(train_set, config.cache.train_views, config.trainer.seed, config.trainer.workers)
        say(f"decoded {train_set.views} views of every training clip into memory ({train_set.bytes / 2**20:.0f} MiB)")
    return train_set, val_set, collate_clips, collate_clips


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
        write_json(path, history)
        plot_curves(history, self.folder / "curves.png")


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ce_ax, other_ax, acc_ax) = plt.subplots(1, 3, figsize=(14, 3.5))
    # cross-entropy and the other loss terms (distillation KL, InfoNCE) have different scales: separate axes;
    # markers, so that a one-epoch run shows as points
    panels = {
        ce_ax: ("train/ce", "val/ce"),
        other_ax: ("train/kd", "train/info_nce"),
        acc_ax: sorted({k for h in history for k in h if k.startswith("val/") and k.endswith("top1")}),
    }
    for ax, keys in panels.items():
        for key in keys:
            if any(key in h for h in history):
                ax.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", markersize=4, label=key)
    (
        ce_ax.set_title("cross-entropy"),
        other_ax.set_title("other loss terms (unweighted)"),
        acc_ax.set_title("validation top-1 (%)"),
    )
    for ax in (ce_ax, other_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_resumable(last: Path, config: TrainConfig) -> None:
    """Refuse to resume ``last`` under another config, listing what differs."""
    previous = checkpoint_config(read_checkpoint(last), last)
    changed = config_differences(previous, to_dict(config))
    if changed:
        shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise RunFolderError(
            f"{last.parent.parent} holds a run with another config ({shown}): resume it with its own config, "
            "start over with karmma train --force-new (the old run is moved aside), or use another trainer.name"
        )


def train(config: TrainConfig, force_new: bool = False) -> dict:
    """Train one stage; returns the final validation metrics and where things are.

    ``force_new``: start over even if the run folder holds a run (moved into ``replaced-<time>/``)."""
    die_with_parent()
    rank_zero = _launcher_rank_zero()
    lock = RunLock(run_dir(config)) if rank_zero else None
    if lock is not None:
        lock.acquire()
    if rank_zero:  # for the DDP processes Lightning starts from this one (die_with_parent)
        os.environ[LAUNCHER_PID] = str(os.getpid())
    try:
        return _train(config, force_new)
    finally:
        if rank_zero:  # not left for processes started later for something else
            os.environ.pop(LAUNCHER_PID, None)
        if lock is not None:
            lock.release()


def _train(config: TrainConfig, force_new: bool) -> dict:
    accelerator = config.trainer.accelerator
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.accelerator={accelerator}: no CUDA GPU is available on this machine; use trainer.accelerator=cpu (or auto)"
        )
    if (
        accelerator in ("gpu", "cuda", "auto")
        and torch.cuda.is_available()
        and config.trainer.devices > torch.cuda.device_count()
    ):
        raise ValueError(
            f"trainer.devices={config.trainer.devices}: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if config.data.root and not Path(config.data.root).is_dir() and not config.cache.path:
        raise FileNotFoundError(f"data.root {config.data.root}: no such folder; set data.root to the prepared dataset")
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    folder = run_dir(config)
    checkpoints = folder / "checkpoints"
    last = checkpoints / "last.ckpt"
    if force_new and _launcher_rank_zero() and folder.is_dir():
        moved = move_aside(folder)
        if moved:
            print(f"--force-new: the earlier run is now in {moved}")
    resume = last if last.is_file() else None
    if resume:
        check_resumable(resume, config)
        finished = folder / "result.json"  # written once training has ended
        if finished.is_file():
            print(
                f"{folder} holds a finished run of this config: nothing to train; its result is {finished} "
                "(karmma train --force-new starts over)"
            )
            return json.loads(finished.read_text())
        print(f"resuming from {resume}")
    module = KarmmaModule(config)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(config, folder / "config.yaml")
    atomic_write_text(folder / "git.txt", _git_commit() + "\n")

    train_set, val_set, collate, val_collate = stage_datasets(config, module)

    precision = config.trainer.precision
    if precision == "auto":
        precision = "bf16-mixed" if torch.cuda.is_available() and config.trainer.accelerator != "cpu" else "32-true"
    strategy = config.trainer.strategy
    if strategy == "ddp":
        # A modality absent from a rank's whole batch leaves its extractor unused in that
        # step (it is never computed): DDP must not wait for those gradients.
        strategy = "ddp_find_unused_parameters_true"
    monitor, mode = checkpoint_monitor(config.stage)
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
        logger=[
            AppendingCSVLogger(str(folder), name="", version="csv"),
            TensorBoardLogger(str(folder), name="", version="tensorboard"),
        ],
        callbacks=[
            ModelCheckpoint(dirpath=str(checkpoints), filename="best", monitor=monitor, mode=mode, save_last=True),
            EpochMetrics(folder),
            *([ProgressBar(refresh_rate=1)] if config.trainer.progress else []),
        ],
    )
    rank, world = trainer.global_rank, trainer.world_size
    batch = config.optim.batch_size
    train_loader = make_loader(
        train_set, batch, config.trainer.seed, True, config.trainer.workers, rank, world, collate
    )
    val_loader = make_loader(
        val_set, batch, config.trainer.seed, False, config.trainer.workers, rank, world, val_collate
    )
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
    if not last_metrics and history:  # no epoch ran here (resumed from the last epoch's checkpoint): as logged
        last_metrics = {k: v for k, v in history[-1].items() if k.startswith("val/")}
    best = best_epoch(history, monitor, mode)
    result = {
        "run": str(folder),
        "best": str(checkpoints / "best.ckpt"),
        "last": str(last),
        # best.ckpt (what karmma evaluate and export use) and the last epoch (last.ckpt) side by side
        "best_checkpoint": {"epoch": best["epoch"], "metrics": {k: v for k, v in best.items() if k.startswith("val/")}}
        if best
        else None,
        "last_epoch": {
            "epoch": history[-1]["epoch"] if history else trainer.current_epoch - 1,
            "metrics": last_metrics,
        },
    }
    if trainer.is_global_zero:
        write_json(folder / "result.json", result)
    return result
