"""The training configuration: one typed dataclass tree, loaded from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field

from karmma.configuration import MAX_SEED, check_range
from karmma.data.config import DatasetConfig
from karmma.data.views import ClipConfig
from karmma.models.karmma import MISSING_STRATEGIES
from karmma.models.video_swin import SPATIAL_POOLS

MODALITY_KEYS = ("V", "F", "A", "D")
STAGES = ("unimodal", "teacher", "student", "baseline", "baseline_masked", "baseline_delta")
#: How each stage's model stands in for a missing modality when the config does not say
#: (docs/method.md, "Missing modalities"): the paper's choices, and ours for the teacher.
DEFAULT_MISSING = {
    "unimodal": "learned",
    "teacher": "learned",
    "student": "learned",
    "baseline": "zeros",
    "baseline_masked": "mask",
    "baseline_delta": "learned",
}
#: Stages trained with modality dropout (the rest see every modality a sample has).
DROPOUT_STAGES = ("teacher", "student", "baseline_delta")


@dataclass
class OptimConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # cosine | linear (decay to 0 after warm-up)
    grad_clip: float = 1.0
    #: the extractors' lr as a fraction of ``lr`` (embedding, fusion and heads get ``lr``): below 1,
    #: fine-tuning keeps more of what pre-training taught them (docs/evaluation.md, "Knobs")
    extractor_lr_scale: float = 1.0

    def __post_init__(self):
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"optim.schedule must be cosine or linear, got {self.schedule!r}")
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
    stage: str = "student"
    preset: str = "tiny"
    modalities: list[str] = field(default_factory=list)  # default: the dataset's
    data: DatasetConfig = field(default_factory=DatasetConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    unimodal_modality: str = ""  # unimodal: which modality
    unimodal_size: str = "teacher"  # unimodal: pre-train the teacher-sized or the student-sized extractor
    extractors: dict[str, str] = field(default_factory=dict)  # teacher: key -> unimodal checkpoint for its extractor
    teacher: str = ""  # student: teacher checkpoint
    teacher_logits: str = "live"  # student: live | cache (read from cache.path)
    #: key -> initial weights of that modality's extractor in the stage's model: a local
    #: .pth/.safetensors file, a torchvision weights name (looked up on disk) or a karmma .ckpt
    pretrained: dict[str, str] = field(default_factory=dict)
    missing_modality: str = ""  # learned | zeros | mask; empty: the stage's default (DEFAULT_MISSING)
    fusion_dropout: float | None = None  # None: the preset's
    #: mean | max: how Swin3D extractors pool their last feature map over space (docs/method.md,
    #: "Token pooling"); empty: the preset's (mean)
    token_pooling: str = ""

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.missing_modality and self.missing_modality not in MISSING_STRATEGIES:
            raise ValueError(
                f"missing_modality must be one of {', '.join(MISSING_STRATEGIES)}, got {self.missing_modality!r}"
            )
        if self.unimodal_size not in ("teacher", "student"):
            raise ValueError(f"unimodal_size must be teacher or student, got {self.unimodal_size!r}")
        if self.teacher_logits not in ("live", "cache"):
            raise ValueError(f"teacher_logits must be live or cache, got {self.teacher_logits!r}")
        for section in ("pretrained", "extractors"):
            unknown = sorted(set(getattr(self, section)) - set(MODALITY_KEYS))
            if unknown:
                raise ValueError(f"{section}.{unknown[0]}: not a modality key (use {', '.join(MODALITY_KEYS)})")
        if self.token_pooling and self.token_pooling not in SPATIAL_POOLS:
            raise ValueError(f"token_pooling must be one of {', '.join(SPATIAL_POOLS)}, got {self.token_pooling!r}")
        if self.fusion_dropout is not None:
            check_range("config", "fusion_dropout", self.fusion_dropout, 0, 1, high_open=True)

    @property
    def missing_strategy(self) -> str:
        """How the stage's model stands in for a missing modality."""
        return self.missing_modality or DEFAULT_MISSING[self.stage]
