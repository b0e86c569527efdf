"""Training stages (unimodal, teacher, student, baseline, baseline_delta) on Lightning."""
