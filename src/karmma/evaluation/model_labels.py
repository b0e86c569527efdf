"""What each model of results.json is called and what it is, for the report and the claims.

Its own module so that :mod:`karmma.evaluation.claims` and :mod:`karmma.evaluation.report`
both read it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelDescription:
    """What the report calls a model of results.json and what it is (a model file's own metadata is
    :class:`karmma.artifacts.ModelInfo`)."""

    label: str
    description: str


# What each model in results.json is; a name not listed here is shown as it is.
MODELS = {
    "teacher": ModelDescription(
        "KARMMA_T",
        "the multimodal **teacher**: one frozen pre-trained extractor per modality (Swin3D-B in the paper preset) "
        "and a trained transformer fusion; trained with cross-entropy, InfoNCE between modalities and modality "
        "dropout. Large; its predictions train the student.",
    ),
    "student": ModelDescription(
        "KARMMA_S",
        "the light **student** (Swin3D-T / ResNet-18 extractors in the paper preset, trained end to end), distilled "
        "from the teacher's predictions with modality dropout. The model one deploys.",
    ),
    "baseline": ModelDescription(
        "Baseline",
        "the paper's Baseline: the student's architecture trained with cross-entropy only: no distillation, "
        "no modality dropout, no missing-modality strategy (a missing modality arrives as a zero input).",
    ),
    "baseline_delta": ModelDescription(
        "Baseline w/ δ",
        "the student's architecture trained with modality dropout (δ) and learned tokens, without distillation: "
        "the difference to KARMMA_S is what distillation adds.",
    ),
    "baseline_masked": ModelDescription(
        "Masked Baseline (ours)",
        "the Baseline with a missing modality left out of attention and out of the prediction average; "
        "our addition, a stronger baseline than the paper's (not in the paper).",
    ),
}


def model_label(name: str) -> str:
    info = MODELS.get(name)
    return info.label if info else name
