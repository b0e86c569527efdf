"""Worker processes die with the process that started them, even after a SIGKILL."""

import os
import signal
import subprocess
import sys
import time

from karmma.parallel import _alive

PARENT = """
import os, sys, time
from karmma.parallel import process_pool

def work(path):
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {os.getppid()}\\n")
    time.sleep(120)  # a long video

if __name__ == "__main__":
    pool = process_pool(2)
    for i in range(2):
        pool.submit(work, sys.argv[1])
    time.sleep(120)
"""


def test_pool_workers_and_fork_server_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    pids = tmp_path / "pids.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen([sys.executable, str(script), str(pids)], env=env)
    deadline = time.time() + 60
    while not (pids.exists() and len(pids.read_text().splitlines()) == 2):
        assert time.time() < deadline and parent.poll() is None
        time.sleep(0.1)
    workers = [int(line.split()[0]) for line in pids.read_text().splitlines()]
    fork_server = int(pids.read_text().split()[1])
    assert all(_alive(pid) for pid in [*workers, fork_server])
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while any(_alive(pid) for pid in [*workers, fork_server]) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "workers outlived their parent"
    assert not _alive(fork_server), "the fork server outlived its parent"
