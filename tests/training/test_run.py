"""Run folders: one owner (a lock with its pid), one config, logs appended and never deleted."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from karmma.cli import main
from karmma.training.launch import LAUNCHER_PID, TORCHRUN_RUN_ID
from karmma.training.run import RunFolderError, RunLock, config_differences, train
from processes import running

HOLD_LOCK = "import sys, time; from pathlib import Path; from karmma.training.run import RunLock; RunLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"


def _baseline_argv(root, runs, *extra: str) -> list[str]:
    """``karmma train`` of the shipped Baseline for one small epoch on ``root``, runs under ``runs``."""
    return [
        "train",
        "src/karmma/configs/synthkitchen/baseline.yaml",
        f"data.root={root}",
        f"trainer.runs={runs}",
        "optim.epochs=1",
        "optim.batch_size=4",
        "trainer.workers=0",
        "trainer.progress=false",
        *extra,
    ]


def test_a_run_folder_has_one_owner(tmp_path):
    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunFolderError, match=f"in use by process {__import__('os').getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    RunLock(tmp_path).acquire().release()  # free again once released


def test_the_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / ".lock").write_text(f"{dead} somehost\n")  # left behind by a killed run
    lock = RunLock(tmp_path).acquire()
    assert (tmp_path / ".lock").read_text().split()[0] == str(__import__("os").getpid())
    assert f"stale lock of process {dead}" in caplog.text
    lock.release()


@pytest.mark.e2e
def test_a_second_training_of_the_same_run_fails_with_one_line(synth_prepared, tmp_path, capsys):
    folder = tmp_path / "runs" / "baseline"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(
            [
                "train",
                "src/karmma/configs/synthkitchen/baseline.yaml",
                f"data.root={synth_prepared}",
                f"trainer.runs={tmp_path / 'runs'}",
                "trainer.progress=false",
                "trainer.workers=0",
            ]
        )
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 2
        and err[-1].startswith("karmma train: error: run folder")
        and f"in use by process {holder.pid}" in err[-1]
    )
    assert not (folder / "checkpoints").exists()


def test_config_differences_name_each_changed_key():
    old = {"optim": {"lr": 0.001, "epochs": 2}, "trainer": {"progress": True}, "clip": {"crop_scale": [0.4, 1.0]}}
    new = {
        "optim": {"lr": 0.0003, "epochs": 2},
        "trainer": {"progress": False},
        "clip": {"crop_scale": (0.4, 1.0)},
        "added": 1,
    }
    assert config_differences(old, new) == ["optim.lr: 0.001 -> 0.0003"]


def _lines(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.e2e
def test_resume_is_refused_under_another_config_and_logs_survive(synth_prepared, make_config, tmp_path, capsys):
    config = make_config("baseline", synth_prepared, tmp_path, "optim.epochs=1")
    result = train(config)
    run = tmp_path / "baseline"
    logged = _lines(run / "csv" / "metrics.csv")
    assert len(logged) > 2

    # the same config again: a finished run, nothing to train, and its log is kept
    train(config)
    assert _lines(run / "csv" / "metrics.csv")[: len(logged)] == logged

    # another config: refused, naming the difference and the ways out
    shipped_lr = config.optim.lr  # the shipped config's, whatever it is
    with pytest.raises(RunFolderError, match=rf"optim.lr: {shipped_lr} -> 0.0003.*--force-new.*trainer.name"):
        train(make_config("baseline", synth_prepared, tmp_path, "optim.epochs=1", "optim.lr=3e-4"))
    code = main(_baseline_argv(synth_prepared, tmp_path, "cache.in_memory=true", "optim.lr=3e-4"))
    assert code == 2 and f"optim.lr: {shipped_lr} -> 0.0003" in capsys.readouterr().err

    # --force-new starts over; the earlier run is moved aside, not deleted
    code = main(_baseline_argv(synth_prepared, tmp_path, "optim.lr=3e-4", "--force-new"))
    assert code == 0
    replaced = [p for p in run.iterdir() if p.name.startswith("replaced-")]
    assert len(replaced) == 1 and _lines(replaced[0] / "csv" / "metrics.csv") == logged
    assert (replaced[0] / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert result["run"] == str(run)


# A DDP process of local rank 1 (as Lightning starts it): asks to die with its parent, then waits.
DDP_CHILD = "import os, time; from karmma.training.launch import die_with_parent; die_with_parent(); print(os.getpid(), flush=True); time.sleep(120)"


@pytest.mark.e2e  # slow: starts Python processes that import Lightning
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
@pytest.mark.parametrize(
    "launch, tied",
    [
        ({"LOCAL_RANK": "1"}, True),  # a DDP process that Lightning started from rank 0
        ({"LOCAL_RANK": "0", TORCHRUN_RUN_ID: "job"}, True),  # torchrun's local rank 0, a child of its agent
        ({"LOCAL_RANK": "1", TORCHRUN_RUN_ID: "job"}, True),
        ({}, False),  # no launcher: a training started from a shell outlives the shell
    ],
    ids=["lightning-local-rank-1", "torchrun-local-rank-0", "torchrun-local-rank-1", "no-launcher"],
)
def test_a_launched_process_is_killed_when_its_launcher_dies(launch, tied):
    env = {k: v for k, v in os.environ.items() if k not in (LAUNCHER_PID, "LOCAL_RANK", TORCHRUN_RUN_ID)}
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {DDP_CHILD!r}]); time.sleep(120)",
        ],
        env={**env, **launch},
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())  # past die_with_parent
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + (10 if tied else 2)
        while running(child) and time.time() < deadline:
            time.sleep(0.1)
        assert running(child) is not tied
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.e2e  # slow: starts Python processes that import Lightning
def test_a_ddp_child_whose_parent_died_before_it_asked_ends_at_once():
    """The parent recorded in the environment (by rank 0) is not the process's parent any more."""
    orphan = subprocess.run(
        [sys.executable, "-c", DDP_CHILD],
        env={**os.environ, "LOCAL_RANK": "1", LAUNCHER_PID: str(2**22 + 1)},
        capture_output=True,
        timeout=60,
    )
    assert orphan.returncode == -signal.SIGKILL and not orphan.stdout


@pytest.mark.e2e
def test_rerunning_a_finished_run_keeps_its_result(synth_prepared, make_config, tmp_path, capsys):
    config = make_config("baseline", synth_prepared, tmp_path, "optim.epochs=1")
    result = train(config)
    written = (tmp_path / "baseline" / "result.json").read_text()
    assert result["last_epoch"]["metrics"]  # the only epoch was validated

    # the same command again: nothing to train, the result reported as it was, result.json untouched
    capsys.readouterr()
    assert train(config) == result
    assert "finished run" in capsys.readouterr().out
    assert (tmp_path / "baseline" / "result.json").read_text() == written
    argv = _baseline_argv(synth_prepared, tmp_path)
    assert main(argv) == 0
    assert f"last epoch epoch 0: action_top1 {result['last_epoch']['metrics']['val/action_top1']:.2f}" in (
        capsys.readouterr().err
    )
    assert (tmp_path / "baseline" / "result.json").read_text() == written

    # killed after the last checkpoint, before result.json: the re-run trains nothing and still
    # reports the last epoch's metrics (from metrics.json), not an empty set
    (tmp_path / "baseline" / "result.json").unlink()
    again = train(config)
    assert again["last_epoch"]["epoch"] == 0 and again["last_epoch"]["metrics"]
    assert again["last_epoch"]["metrics"] == pytest.approx(result["last_epoch"]["metrics"], abs=1e-4)
    assert again["best_checkpoint"] == result["best_checkpoint"]
