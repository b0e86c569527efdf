"""The training configuration: one typed dataclass tree, loaded from YAML.

Every section of a config file is here (``data``, ``clip``, ``optim``, ``loss``,
``cache``, ``trainer`` and the stage's keys), with no torch, model or data code:
reading a YAML is cheap and the light install reads the ``clip`` section of an
export. A key with a fixed set of values is a ``Literal``, checked by
:func:`karmma.configuration.from_dict` (one line naming the key and the values);
``stage`` names a record of the stage table :data:`STAGE_SPECS`, which says what
each stage trains and how. The code that acts on a section lives with it: the data sources in
:mod:`karmma.data.config`, the clip recipe in :mod:`karmma.data.views`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, get_args

from karmma.configuration import MAX_SEED, check_range
from karmma.modalities import FRAME_MODALITIES, MODALITY_ORDER, VIDEO_MODALITIES

#: how a model stands in for a missing modality (docs/method.md, "Missing modalities")
MissingStrategy = Literal["learned", "zeros", "mask"]
MISSING_STRATEGIES: tuple[str, ...] = get_args(MissingStrategy)
#: how a Swin3D extractor pools its last feature map over space (docs/method.md, "Token pooling")
TokenPooling = Literal["mean", "max"]
SPATIAL_POOLS: tuple[str, ...] = get_args(TokenPooling)
DatasetFormat = Literal["epic", "epic_star", "ssv2", "manifest"]
FORMATS: tuple[str, ...] = get_args(DatasetFormat)
SPLITS = ("train", "validation", "test")
#: the model sizes of presets.py (docs/method.md, "Architecture sizes"); here, without torch, for the CLI
PresetName = Literal["paper", "tiny"]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)
DEFAULT_MODALITIES = {
    "epic": VIDEO_MODALITIES,
    "epic_star": VIDEO_MODALITIES,
    "ssv2": FRAME_MODALITIES,  # its videos have no sound; the boxes come with its annotations
    "manifest": MODALITY_ORDER,
}
#: what a stage trains: one modality's extractor with fusion and heads (``unimodal_size`` picks
#: the teacher's or the student's size), the teacher architecture (its extractors frozen), or the
#: student architecture (trained end to end)
ModelKind = Literal["extractor", "teacher", "student"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
#: the validation metrics a checkpoint can be chosen by, and whether higher or lower is better
MONITORS = {"val/action_top1": "max", "val/ce": "min"}


@dataclass(frozen=True)
class StageSpec:
    """What one training stage is (``stage:`` of a config; docs/method.md, "Training stages").

    Every behaviour that differs between stages is read from here: adding a stage is adding one
    record to :data:`STAGE_SPECS` (and a config file that names it)."""

    name: str
    model: ModelKind
    #: how its model stands in for a missing modality when the config leaves ``missing_modality`` empty
    missing: MissingStrategy
    #: trained with modality dropout at ``loss.modality_dropout`` (the rest see every modality a sample has)
    modality_dropout: bool
    #: adds ``loss.info_nce_weight`` x InfoNCE between the modalities' features to the cross-entropy
    info_nce: bool
    #: adds ``loss.distill_weight`` x KD from the teacher's logits (``teacher=``, live or from the cache)
    distillation: bool
    #: the validation metric ``best.ckpt`` is chosen by (a key of :data:`MONITORS`)
    monitor: str
    #: one of the models ``karmma demo`` trains and compares, from configs/synthkitchen/<name>.yaml
    demo: bool
    label: str = ""  # the report's name for it; empty: the stage's name
    description: str = ""  # the report's "what it is"; empty: none known

    def __post_init__(self):
        if self.model not in MODEL_KINDS:
            raise ValueError(f"stage {self.name}: model must be one of {', '.join(MODEL_KINDS)}, got {self.model!r}")
        if self.missing not in MISSING_STRATEGIES:
            raise ValueError(
                f"stage {self.name}: missing must be one of {', '.join(MISSING_STRATEGIES)}, got {self.missing!r}"
            )
        if self.monitor not in MONITORS:
            raise ValueError(f"stage {self.name}: monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")

    @property
    def frozen_extractors(self) -> bool:
        """The teacher's extractors are frozen: they must start pre-trained (``extractors.<M>``, a
        unimodal run, or ``pretrained.<M>``), and their tokens can be cached (``karmma extract``)
        so that only the fusion trains from ``cache.path``."""
        return self.model == "teacher"

    @property
    def monitor_mode(self) -> str:
        """``"max"`` or ``"min"``: which values of :attr:`monitor` are better."""
        return MONITORS[self.monitor]


#: Every training stage, in the order the demo trains and the report shows them (the paper's).
#: A unimodal extractor is chosen by its validation cross-entropy, a fusion model by action top-1:
#: one modality's action top-1 is capped by what it cannot know (flow tells no nouns, so its action
#: top-1 is mostly noise and picked a flow extractor at 72 % verb top-1 over one at 98 %), while the
#: cross-entropy rewards every head the modality can learn. Default missing strategies: the paper's,
#: and ours for the teacher (docs/method.md, "Missing modalities").
STAGE_SPECS: tuple[StageSpec, ...] = (
    StageSpec(
        "unimodal",
        model="extractor",
        missing="learned",
        modality_dropout=False,
        info_nce=False,
        distillation=False,
        monitor="val/ce",
        demo=False,
    ),
    StageSpec(
        "teacher",
        model="teacher",
        missing="learned",
        modality_dropout=True,
        info_nce=True,
        distillation=False,
        monitor="val/action_top1",
        demo=True,
        label="KARMMA_T",
        description="the multimodal **teacher**: one frozen pre-trained extractor per modality (Swin3D-B in the "
        "paper preset) and a trained transformer fusion; trained with cross-entropy, InfoNCE between modalities "
        "and modality dropout. Large; its predictions train the student.",
    ),
    StageSpec(
        "baseline",
        model="student",
        missing="zeros",
        modality_dropout=False,
        info_nce=False,
        distillation=False,
        monitor="val/action_top1",
        demo=True,
        label="Baseline",
        description="the paper's Baseline: the student's architecture trained with cross-entropy only: no "
        "distillation, no modality dropout, no missing-modality strategy (a missing modality arrives as a zero "
        "input).",
    ),
    StageSpec(
        "baseline_masked",
        model="student",
        missing="mask",
        modality_dropout=False,
        info_nce=False,
        distillation=False,
        monitor="val/action_top1",
        demo=True,
        label="Masked Baseline (ours)",
        description="the Baseline with a missing modality left out of attention and out of the prediction "
        "average; our addition, a stronger baseline than the paper's (not in the paper).",
    ),
    StageSpec(
        "baseline_delta",
        model="student",
        missing="learned",
        modality_dropout=True,
        info_nce=False,
        distillation=False,
        monitor="val/action_top1",
        demo=True,
        label="Baseline w/ δ",
        description="the student's architecture trained with modality dropout (δ) and learned tokens, without "
        "distillation: the difference to KARMMA_S is what distillation adds.",
    ),
    StageSpec(
        "student",
        model="student",
        missing="learned",
        modality_dropout=True,
        info_nce=False,
        distillation=True,
        monitor="val/action_top1",
        demo=True,
        label="KARMMA_S",
        description="the light **student** (Swin3D-T / ResNet-18 extractors in the paper preset, trained end to "
        "end), distilled from the teacher's predictions with modality dropout. The model one deploys.",
    ),
)


def stage_names(model: ModelKind | None = None) -> tuple[str, ...]:
    """The names of the stages in :data:`STAGE_SPECS`, in its order; ``model``: only the stages
    that train that model (``stage_names("student")``: what ``karmma export`` and deployment take)."""
    return tuple(spec.name for spec in STAGE_SPECS if model is None or spec.model == model)


def find_stage_spec(name: str) -> StageSpec | None:
    """The record of stage ``name``, or None when no stage has that name."""
    return next((spec for spec in STAGE_SPECS if spec.name == name), None)


def stage_spec(name: str) -> StageSpec:
    """The record of stage ``name``; an unknown name is a ``ValueError`` listing the stages."""
    spec = find_stage_spec(name)
    if spec is None:
        raise ValueError(f"stage must be one of {', '.join(stage_names())}, got {name!r}")
    return spec


@dataclass
class DatasetConfig:
    """Which dataset to read (``data:``); the formats and splits are described in :mod:`karmma.data.config`.

    Relative annotation paths are resolved against ``annotations`` (default ``<root>/annotations``)."""

    format: DatasetFormat = "epic"
    root: str = ""
    annotations: str = ""  # default: <root>/annotations
    train: str = "EPIC_100_train.csv"
    validation: str = "EPIC_100_validation.csv"
    test: str = ""  # e.g. EPIC_100_test_timestamps.csv (unlabelled)
    verb_classes: str = "EPIC_100_verb_classes.csv"
    noun_classes: str = "EPIC_100_noun_classes.csv"
    video_info: str = ""  # default: <root>/video_info.csv, else <annotations>/EPIC_100_video_info.csv
    labels: str = "something-something-v2-labels.json"  # ssv2
    boxes: list[str] = field(default_factory=list)  # ssv2: Something-Else JSON files
    audio: Literal["auto", "wav", "hdf5", "video"] = "auto"  # epic: where the audio is read from
    heads: dict[str, int] = field(default_factory=dict)  # manifest: classes per head (default: max id + 1)
    split_by: Literal["segment", "video"] = "segment"  # epic_star
    validation_fraction: float = 0.1  # epic_star
    split_seed: int = 0  # epic_star
    missing: Literal["skip", "error"] = "skip"

    def __post_init__(self):
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"data.validation_fraction must be > 0 and < 1, got {self.validation_fraction}")
        for head, size in self.heads.items():
            if size < 1:
                raise ValueError(f"data.heads.{head} must be >= 1 (classes of the head), got {size}")

    def path(self, name: str) -> Path:
        base = Path(self.annotations) if self.annotations else Path(self.root) / "annotations"
        return base / name

    @property
    def modalities(self) -> tuple[str, ...]:
        return DEFAULT_MODALITIES[self.format]


@dataclass(frozen=True)
class AudioConfig:
    """How audio becomes a log-mel spectrogram (``clip.audio``; :mod:`karmma.data.audio`).

    Default: 24 kHz mono, n_fft 2048, 10 ms window, 5 ms hop, ``log(mel + 1e-6)``. The mel bins and
    the frames are not settings: the model's A input ``[1, n_mels, frames]`` decides them (the
    preset's, ``clip.audio_frames`` overrides the frames)."""

    #: keys a config may not set, and why (earlier versions accepted them and ignored them)
    REFUSED_KEYS: ClassVar[dict[str, str]] = {
        "n_mels": "not a setting: the model's A input [1, n_mels, frames] decides it (the preset's)",
        "frames": "not a setting: the model's A input [1, n_mels, frames] decides it "
        "(the preset's; clip.audio_frames overrides it)",
    }

    sample_rate: int = 24000
    n_fft: int = 2048
    window_ms: float = 10.0
    hop_ms: float = 5.0
    eps: float = 1e-6

    def __post_init__(self):
        for name in ("sample_rate", "n_fft"):
            check_range("clip.audio", name, getattr(self, name), 1)
        for name in ("window_ms", "hop_ms", "eps"):
            check_range("clip.audio", name, getattr(self, name), 0, low_open=True)

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000))


def without_refused_audio_keys(config: dict) -> dict:
    """A stored training config (a checkpoint's, an export's, a cache's clip recipe) without the
    ``clip.audio`` keys earlier versions wrote and never used (:attr:`AudioConfig.REFUSED_KEYS`)."""
    audio = (config.get("clip") or {}).get("audio") if isinstance(config, dict) else None
    if not isinstance(audio, dict) or not set(audio) & set(AudioConfig.REFUSED_KEYS):
        return config
    kept = {k: v for k, v in audio.items() if k not in AudioConfig.REFUSED_KEYS}
    return {**config, "clip": {**config["clip"], "audio": kept}}


@dataclass(frozen=True)
class ClipConfig:
    """How clips are sampled and what the evaluation views are (``clip:``; :mod:`karmma.data.views`).

    ``frames``, ``size`` and ``audio_frames`` override the preset's input
    geometry (frames per clip, crop side, the student's log-mel width) while
    keeping its architecture; ``None`` keeps the preset's.
    """

    frames: int | None = None
    size: int | None = None
    audio_frames: int | None = None
    num_clips: int = 1  # temporal views at evaluation
    num_crops: Literal[1, 3] = 1  # spatial views at evaluation (1 centre or 3 left/centre/right)
    crop_scale: tuple[float, float] = (0.4, 1.0)
    flip: bool = True
    audio: AudioConfig = AudioConfig()
    audio_image_seconds: float = 1.28  # window of each teacher log-mel image
    box_slots: int | None = None  # taken from the D input shape when None
    #: flow (pixels) is divided by this; 9.04 matches TSN's (x / 255 - 0.5) / 0.226 on
    #: flow JPEGs quantised over [-20, 20] px. Slow motion (SynthKitchen) wants less.
    flow_scale: float = 9.04

    def __post_init__(self):
        check_range("clip", "num_clips", self.num_clips, 1)
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(
                f"clip.crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(self.crop_scale)}"
            )
        check_range("clip", "audio_image_seconds", self.audio_image_seconds, 0, low_open=True)
        if self.box_slots is not None:
            check_range("clip", "box_slots", self.box_slots, 1)
        check_range("clip", "flow_scale", self.flow_scale, 0, low_open=True)


@dataclass
class OptimConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "linear"] = "cosine"  # linear: decay to 0 after warm-up
    grad_clip: float = 1.0
    #: the extractors' lr as a fraction of ``lr`` (embedding, fusion and heads get ``lr``): below 1,
    #: fine-tuning keeps more of what pre-training taught them (docs/evaluation.md, "Knobs")
    extractor_lr_scale: float = 1.0

    def __post_init__(self):
        check_range("optim", "epochs", self.epochs, 1)
        check_range("optim", "batch_size", self.batch_size, 1)
        check_range("optim", "lr", self.lr, 0, low_open=True)
        check_range("optim", "weight_decay", self.weight_decay, 0)
        check_range("optim", "warmup_epochs", self.warmup_epochs, 0)
        check_range("optim", "grad_clip", self.grad_clip, 0)
        check_range("optim", "extractor_lr_scale", self.extractor_lr_scale, 0)


@dataclass
class LossConfig:
    modality_dropout: float = 0.5  # p per present modality (teacher, student, baseline_delta)
    info_nce_weight: float = 0.1  # teacher
    info_nce_temperature: float = 0.07
    distill_weight: float = 1.0  # student
    temperature: float = 4.0  # distillation
    label_smoothing: float = 0.0

    def __post_init__(self):
        check_range("loss", "modality_dropout", self.modality_dropout, 0, 1, high_open=True)
        check_range("loss", "info_nce_weight", self.info_nce_weight, 0)
        check_range("loss", "info_nce_temperature", self.info_nce_temperature, 0, low_open=True)
        check_range("loss", "distill_weight", self.distill_weight, 0)
        check_range("loss", "temperature", self.temperature, 0, low_open=True)
        check_range("loss", "label_smoothing", self.label_smoothing, 0, 1, high_open=True)


@dataclass
class CacheConfig:
    """Teacher feature cache (``karmma extract``): frozen extractor tokens on disk."""

    path: str = ""  # folder with the HDF5 shards; empty = live extractors
    train_views: int = 4  # augmented views cached per training clip (0: the centred evaluation view, both sides)
    in_memory: bool | None = None  # read shards whole into RAM (None: when they total at most 2 GiB)
    #: student-sized stages: decode train_views views of every training clip once into memory
    #: (karmma.training.memory); epochs then only compute. For small data (SynthKitchen).
    decode_once: bool = False
    #: decode the validation clips once into memory: exact (they are the same every epoch), so each
    #: validation only computes; for validation sets that fit in memory (SynthKitchen)
    decode_validation_once: bool = False

    def __post_init__(self):
        check_range("cache", "train_views", self.train_views, 0)


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    precision: str = "auto"  # auto: bf16-mixed on GPU, 32 on CPU
    workers: int = 2
    seed: int = 0
    runs: str = "runs"  # parent folder of run folders
    name: str = ""  # run folder name (default: <stage>)
    val_every: int = 1
    progress: bool = True
    deterministic: bool = False

    def __post_init__(self):
        if self.devices != -1:  # -1: every device Lightning finds
            check_range("trainer", "devices", self.devices, 1)
        check_range("trainer", "num_nodes", self.num_nodes, 1)
        check_range("trainer", "workers", self.workers, 0)
        check_range("trainer", "val_every", self.val_every, 1)
        check_range("trainer", "seed", self.seed, 0, MAX_SEED)
        if not self.runs:
            raise ValueError("trainer.runs must name the parent folder of run folders, got ''")
        if "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"trainer.name must be a plain folder name (no '/'), got {self.name!r}")


@dataclass
class TrainConfig:
    stage: str = "student"  # a name in STAGE_SPECS
    preset: PresetName = "tiny"
    modalities: list[str] = field(default_factory=list)  # default: the dataset's
    data: DatasetConfig = field(default_factory=DatasetConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    unimodal_modality: str = ""  # unimodal: which modality
    unimodal_size: Literal["teacher", "student"] = (
        "teacher"  # unimodal: pre-train the teacher-sized or the student-sized extractor
    )
    extractors: dict[str, str] = field(default_factory=dict)  # teacher: key -> unimodal checkpoint for its extractor
    teacher: str = ""  # student: teacher checkpoint
    teacher_logits: Literal["live", "cache"] = "live"  # student: cache: read from cache.path
    #: key -> initial weights of that modality's extractor in the stage's model: a local
    #: .pth/.safetensors file, a torchvision weights name (looked up on disk) or a karmma .ckpt
    pretrained: dict[str, str] = field(default_factory=dict)
    missing_modality: Literal["", MissingStrategy] = ""  # empty: the stage's default (StageSpec.missing)
    fusion_dropout: float | None = None  # None: the preset's
    #: how Swin3D extractors pool their last feature map over space (docs/method.md,
    #: "Token pooling"); empty: the preset's (mean)
    token_pooling: Literal["", TokenPooling] = ""

    def __post_init__(self):
        stage_spec(self.stage)  # a stage the table does not list is an error naming the ones it does
        for section in ("pretrained", "extractors"):
            unknown = sorted(set(getattr(self, section)) - set(MODALITY_ORDER))
            if unknown:
                raise ValueError(f"{section}.{unknown[0]}: not a modality key (use {', '.join(MODALITY_ORDER)})")
        if self.fusion_dropout is not None:
            check_range("config", "fusion_dropout", self.fusion_dropout, 0, 1, high_open=True)

    @property
    def missing_strategy(self) -> str:
        """How the stage's model stands in for a missing modality."""
        return self.missing_modality or stage_spec(self.stage).missing
