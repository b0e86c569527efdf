"""Optional wall-clock timing of the loading pipeline's stages (``karmma data benchmark --breakdown``).

The dataset wraps each stage in ``with stage("V decode"):``; that costs a
clock read when :func:`record_stages` is active and nothing else otherwise.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

_totals: dict[str, float] | None = None


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the time spent in the block to stage ``name`` (when recording)."""
    if _totals is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        _totals[name] = _totals.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def record_stages() -> Iterator[dict[str, float]]:
    """Collect ``{stage: seconds}`` of the stages run in this process while active."""
    global _totals
    previous, _totals = _totals, {}
    try:
        yield _totals
    finally:
        _totals = previous
