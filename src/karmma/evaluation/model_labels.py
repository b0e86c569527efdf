"""What each model of results.json is called and what it is, for the report and the claims.

A model evaluated under a stage's name is described by that stage's record in
:data:`karmma.train_config.STAGE_SPECS` (``label``, ``description``); any other name is
shown as it is. Its own module so that :mod:`karmma.evaluation.claims` and
:mod:`karmma.evaluation.report` both read it without importing each other.
"""

from __future__ import annotations

from karmma.train_config import find_stage_spec


def model_label(name: str) -> str:
    """The report's name for the model ``name`` (``student``: KARMMA_S)."""
    spec = find_stage_spec(name)
    return spec.label if spec and spec.label else name


def model_description(name: str) -> str:
    """What the model ``name`` is, in one paragraph; empty when it is no stage's name or its stage has none."""
    spec = find_stage_spec(name)
    return spec.description if spec else ""
