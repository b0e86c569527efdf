"""Evaluation on every modality subset, the dropout sweep, reports."""
