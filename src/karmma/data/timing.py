"""Optional timing of the loading pipeline's stages (``karmma benchmark data --breakdown``).

The dataset wraps each stage in ``with stage("V decode"):``; while
:func:`record_stages` is active that adds the block's wall-clock and
CPU time (of this thread) to the stage, otherwise it does nothing. CPU time
is what a loader worker with a core to itself would spend; on a shared
machine wall time also counts the waits for other processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

_totals: dict[str, list[float]] | None = None


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the wall and CPU time spent in the block to stage ``name`` (when recording)."""
    if _totals is None:
        yield
        return
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        total = _totals.setdefault(name, [0.0, 0.0])
        total[0] += time.perf_counter() - wall
        total[1] += time.thread_time() - cpu


@contextmanager
def record_stages() -> Iterator[dict[str, list[float]]]:
    """Collect ``{stage: [wall seconds, CPU seconds]}`` of the stages run in this thread while active."""
    global _totals
    previous, _totals = _totals, {}
    try:
        yield _totals
    finally:
        _totals = previous
