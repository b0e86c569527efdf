"""Worker processes for the parallel data tools (synthesis, preparation)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool whose workers come from a fork server, not from forking the caller:
    forking a process that already runs threads (torch's thread pools, a demo or a
    test session that trained a model) can leave the children deadlocked on a lock."""
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("forkserver"))
