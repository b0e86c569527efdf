"""Moved to :mod:`karmma.train_config` (the config is read by evaluation and deployment too,
which never import ``karmma.training``); this name stays for existing imports."""

from karmma.train_config import (  # noqa: F401
    DEFAULT_MISSING, DROPOUT_STAGES, MODALITY_KEYS, STAGES, CacheConfig, LossConfig, OptimConfig, TrainConfig,
    TrainerConfig,
)
