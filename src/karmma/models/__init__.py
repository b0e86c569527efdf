"""Feature extractors and the KARMMA fusion model."""
