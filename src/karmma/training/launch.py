"""Processes started by a launcher (Lightning's DDP children, torchrun, Slurm) end with it.

One home for the rule, read by every program that a launcher may start several times:
``karmma train`` (:mod:`karmma.training.run`) and ``karmma extract``
(:mod:`karmma.training.cache`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys

log = logging.getLogger("karmma.train")


#: the pid of the rank-0 process, in the environment its DDP children inherit (see die_with_parent)
LAUNCHER_PID = "KARMMA_LAUNCHER_PID"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


#: set by torchrun (torch.distributed.elastic) in every process it starts
TORCHRUN_RUN_ID = "TORCHELASTIC_RUN_ID"


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies, if a launcher started it: a DDP
    process of local rank > 0 that Lightning started as a child of rank 0, or any process of
    torchrun (every rank, local rank 0 included, is a child of torchrun's agent on its node).

    Killed without clean-up (SIGKILL, the OOM killer), the launcher left them behind: waiting at the
    rendezvous or in a collective, holding memory and GPUs. ``prctl(PR_SET_PDEATHSIG, SIGKILL)``
    rather than a watchdog thread polling ``os.getppid()``: the kernel acts at once and also while
    the process is blocked in C code (a collective, a decoder) that may hold the GIL a thread needs.
    A Lightning child whose parent died before the call is caught by comparing ``os.getppid()``
    with the pid rank 0 left in the environment (torchrun leaves no pid of its agent: there the
    window is the process's start-up). Processes that ``srun`` starts are left to Slurm, which ends
    a step's processes with the step. Linux only; elsewhere nothing changes."""
    launched_by_torchrun = TORCHRUN_RUN_ID in os.environ
    local_rank = int(os.environ.get("LOCAL_RANK", 0) or 0)
    if not (local_rank > 0 or launched_by_torchrun) or not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("cannot ask to die with the parent process (prctl: %s)", os.strerror(ctypes.get_errno()))
        return
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher and not launched_by_torchrun and os.getppid() != int(launcher):  # died before prctl: no signal
        os.kill(os.getpid(), signal.SIGKILL)
