"""Model presets: the paper's sizes and a tiny CPU size, and the model builders.

A preset fixes, for the teacher and for the student, one
:class:`~karmma.modalities.ModalitySpec` per modality key (input shape and
extractor) and the fusion size. The heads come from the dataset.

``paper``: 32 x 224 x 224 clips. Teacher: frozen Swin3D-B for V, F and A (the
teacher's audio is a clip of 224 x 224 log-mel images, one per sampled frame);
student: Swin3D-T for V and F, ResNet-18 on one 128 x 400 log-mel spectrogram.

``tiny``: 8 x 64 x 64 clips and small extractors of the same families, so a
whole student forward pass costs well under 0.5 GFLOPs on a laptop CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from karmma.modalities import VIDEO_MODALITIES, ModalitySpec
from karmma.models.audio_resnet import AudioResNetConfig, resnet18_config
from karmma.models.box_transformer import BoxTransformerConfig
from karmma.models.karmma import KARMMA, FusionConfig, MissingStrategy
from karmma.models.video_swin import VideoSwinConfig, swin3d_b_config, swin3d_t_config
from karmma.train_config import PRESET_NAMES

EPIC_HEADS = {"verb": 97, "noun": 300}
SSV2_HEADS = {"action": 174}


@dataclass(frozen=True)
class Preset:
    name: str
    teacher: Mapping[str, ModalitySpec]
    student: Mapping[str, ModalitySpec]
    teacher_fusion: FusionConfig
    student_fusion: FusionConfig
    default_modalities: tuple[str, ...] = VIDEO_MODALITIES
    notes: str = field(default="", compare=False)


def paper_preset(frames: int = 32, size: int = 224, box_slots: int = 8, audio_frames: int = 400) -> Preset:
    """The paper's architecture (docs/method.md, "Architecture sizes").

    ``frames``, ``size`` and ``audio_frames`` (the student's log-mel width) set
    the input geometry only: the extractors, fusion and heads stay the paper's.
    """
    boxes = (frames, box_slots, 6)  # one box frame per video frame: the loader samples them together
    return Preset(
        name="paper",
        teacher={
            "V": ModalitySpec("V", (frames, 3, size, size), swin3d_b_config()),
            "F": ModalitySpec("F", (frames, 2, size, size), swin3d_b_config()),
            # log-mel images through a Swin, normalised on the way in (VideoSwinConfig.input_norm)
            "A": ModalitySpec("A", (frames, 1, size, size), dataclasses.replace(swin3d_b_config(), input_norm=True)),
            "D": ModalitySpec("D", boxes, BoxTransformerConfig(dim=256, depth=4, num_heads=8)),
        },
        student={
            "V": ModalitySpec("V", (frames, 3, size, size), swin3d_t_config()),
            "F": ModalitySpec("F", (frames, 2, size, size), swin3d_t_config()),
            "A": ModalitySpec("A", (1, 128, audio_frames), resnet18_config()),
            "D": ModalitySpec("D", boxes, BoxTransformerConfig(dim=128, depth=2, num_heads=4)),
        },
        teacher_fusion=FusionConfig(width=768, depth=2, num_heads=12),
        student_fusion=FusionConfig(width=512, depth=2, num_heads=8),
    )


_TINY_SWIN = dict(patch_size=(2, 4, 4), window_size=(2, 4, 4), stochastic_depth_prob=0.0)


def tiny_preset(frames: int = 8, size: int = 64, box_slots: int = 4, audio_frames: int = 200) -> Preset:
    """Small extractors of the same families, for CPU training and tests."""
    teacher_swin = VideoSwinConfig(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), **_TINY_SWIN)
    student_swin = VideoSwinConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), **_TINY_SWIN)
    boxes = (frames, box_slots, 6)
    return Preset(
        name="tiny",
        teacher={
            "V": ModalitySpec("V", (frames, 3, size, size), teacher_swin),
            "F": ModalitySpec("F", (frames, 2, size, size), teacher_swin),
            "A": ModalitySpec("A", (frames, 1, size, size), dataclasses.replace(teacher_swin, input_norm=True)),
            "D": ModalitySpec("D", boxes, BoxTransformerConfig(dim=64, depth=2, num_heads=4)),
        },
        student={
            "V": ModalitySpec("V", (frames, 3, size, size), student_swin),
            "F": ModalitySpec("F", (frames, 2, size, size), student_swin),
            "A": ModalitySpec(
                "A", (1, 64, audio_frames), AudioResNetConfig(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1))
            ),
            "D": ModalitySpec("D", boxes, BoxTransformerConfig(dim=32, depth=1, num_heads=2)),
        },
        teacher_fusion=FusionConfig(width=128, depth=2, num_heads=4),
        student_fusion=FusionConfig(width=64, depth=1, num_heads=2),
    )


def get_preset(
    name: str,
    frames: int | None = None,
    size: int | None = None,
    audio_frames: int | None = None,
    spatial_pool: str | None = None,
) -> Preset:
    """Preset ``name``, optionally with another input geometry (``clip.frames`` / ``clip.size`` /
    ``clip.audio_frames``): same extractors and fusion, shorter or smaller clips; and with
    another spatial pooling of the Swin3D extractors' tokens (``token_pooling``: mean or max)."""
    builders = {"paper": paper_preset, "tiny": tiny_preset}
    if name not in builders:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    geometry = {"frames": frames, "size": size, "audio_frames": audio_frames}
    for key, value in geometry.items():
        if value is not None and value < 1:
            raise ValueError(f"clip.{key} must be a positive integer, got {value}")
    preset = builders[name](**{k: v for k, v in geometry.items() if v is not None})
    if spatial_pool is None:
        return preset

    def pooled(specs: Mapping[str, ModalitySpec]) -> dict[str, ModalitySpec]:
        return {
            key: dataclasses.replace(spec, extractor=dataclasses.replace(spec.extractor, spatial_pool=spatial_pool))
            if isinstance(spec.extractor, VideoSwinConfig)
            else spec
            for key, spec in specs.items()
        }

    return dataclasses.replace(preset, teacher=pooled(preset.teacher), student=pooled(preset.student))


def _specs(table: Mapping[str, ModalitySpec], modalities: Sequence[str]) -> list[ModalitySpec]:
    unknown = [k for k in modalities if k not in table]
    if unknown:
        raise ValueError(f"the preset has no modality {unknown}; it has {sorted(table)}")
    return [table[k] for k in modalities]


def build_teacher(
    preset: Preset,
    heads: Mapping[str, int],
    modalities: Sequence[str] | None = None,
    missing_strategy: MissingStrategy = "learned",
) -> KARMMA:
    """KARMMA_T: frozen teacher-sized extractors; learned missing-modality tokens by default (our choice)."""
    modalities = modalities or preset.default_modalities
    return KARMMA(
        _specs(preset.teacher, modalities), heads, preset.teacher_fusion, missing_strategy, freeze_extractors=True
    )


def build_student(
    preset: Preset,
    heads: Mapping[str, int],
    modalities: Sequence[str] | None = None,
    missing_strategy: MissingStrategy = "learned",
) -> KARMMA:
    """The student architecture: KARMMA_S and Baseline w/ δ (``"learned"``), the paper's
    Baseline (``"zeros"``) and our masked Baseline (``"mask"``)."""
    modalities = modalities or preset.default_modalities
    return KARMMA(_specs(preset.student, modalities), heads, preset.student_fusion, missing_strategy)


def build_baseline(preset: Preset, heads: Mapping[str, int], modalities: Sequence[str] | None = None) -> KARMMA:
    """The paper's Baseline: the student architecture; a missing modality arrives as a zero input."""
    return build_student(preset, heads, modalities, missing_strategy="zeros")
