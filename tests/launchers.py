"""Launching karmma on one host as torchrun and Slurm launch it on several nodes (docs/epic.md).

Each "node" is a set of processes on this host; they meet over the loopback address (gloo)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SBATCH = REPOSITORY / "scripts" / "karmma.sbatch"
TORCHRUN = Path(sys.executable).with_name("torchrun")  # the venv's, beside its python

# srun as Slurm runs a job step, on one host: SLURM_NTASKS copies of the command, each told its
# rank, its rank on its node and its node as srun tells them; exits with the first failure.
FAKE_SRUN = """#!/bin/bash
pids=()
for ((task = 0; task < SLURM_NTASKS; task++)); do
    SLURM_PROCID=$task SLURM_LOCALID=$((task % SLURM_NTASKS_PER_NODE)) \\
        SLURM_NODEID=$((task / SLURM_NTASKS_PER_NODE)) "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_env() -> dict:
    """This environment without a rank of an enclosing launch, unbuffered."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(key, None)
    return {k: v for k, v in env.items() if not k.startswith("SLURM_")}


def torchrun_nodes(karmma_args: list[str], nodes: int, per_node: int = 1, **popen) -> list[subprocess.Popen]:
    """One torchrun agent per node, as docs/epic.md runs them on each machine (static rendezvous
    at MASTER_ADDR:MASTER_PORT, the node's rank given), each starting ``per_node`` processes of
    ``python -m karmma.cli KARMMA_ARGS``."""
    port = free_port()
    return [
        subprocess.Popen(
            [
                str(TORCHRUN),
                f"--nnodes={nodes}",
                f"--nproc-per-node={per_node}",
                f"--node-rank={node}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "karmma.cli",
                *karmma_args,
            ],
            env=launch_env(),
            **popen,
        )
        for node in range(nodes)
    ]


def sbatch(karmma_args: list[str], folder: Path, nodes: int, per_node: int = 1, **run) -> subprocess.CompletedProcess:
    """``scripts/karmma.sbatch KARMMA_ARGS`` in the environment sbatch gives a job of ``nodes``
    nodes and ``per_node`` tasks per node (one CPU each), with ``srun`` the one-host stand-in."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = launch_env()
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        PYTHON=sys.executable,
        SLURM_JOB_ID="4242",
        SLURM_JOB_NAME="karmma",
        SLURM_NNODES=str(nodes),
        SLURM_NTASKS=str(nodes * per_node),
        SLURM_NTASKS_PER_NODE=str(per_node),
        SLURM_CPUS_PER_TASK="1",
        SLURM_NODELIST=",".join(["localhost"] * nodes),
        MASTER_PORT=str(free_port()),  # exported before sbatch: not 15000 + the job id, which another test may use
    )
    return subprocess.run(["bash", str(SBATCH), *karmma_args], env=env, capture_output=True, text=True, **run)
