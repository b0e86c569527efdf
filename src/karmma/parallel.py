"""Worker processes for the parallel data tools (synthesis, preparation).

Workers die with the process that started them: each runs a watchdog thread
that ends it within :data:`WATCHDOG_SECONDS` once that process is gone (even
after a SIGKILL, which runs no clean-up), so no orphan keeps writing into an
output folder and racing with a re-run.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

WATCHDOG_SECONDS = 0.5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (the pid was reused): treat as gone
        return False
    try:  # a killed parent not yet reaped by its own parent is a zombie: gone as well
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): the kill probe is all there is


def _watch(parent: int) -> None:
    while True:
        time.sleep(WATCHDOG_SECONDS)
        if not _alive(parent):
            os._exit(1)  # at once: no clean-up that could block or write further


def die_with(parent: int) -> None:
    """Pool initializer: end this worker when process ``parent`` ends."""
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="karmma-parent-watchdog").start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool whose workers come from a fork server, not from forking the caller:
    forking a process that already runs threads (torch's thread pools, a demo or a
    test session that trained a model) can leave the children deadlocked on a lock.
    The workers end when the calling process ends (see the module docstring)."""
    return ProcessPoolExecutor(
        max_workers=max(1, workers),
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=die_with,
        initargs=(os.getpid(),),
    )
