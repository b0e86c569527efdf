"""Moved to :mod:`karmma.data.loader` (evaluation uses the seeded loader too, and never imports
``karmma.training``); this name stays for existing imports."""

from karmma.data.loader import SeededSampler, item_seed, make_loader  # noqa: F401
