"""The tests that read the real annotation files (../shared/data): skipped with the reason on a plain
clone without them, failed in CI (``CI`` set, as .ci/run does) when they are missing."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
A_TEST_OF_THE_REAL_FILES = "tests/data/test_annotations.py::test_epic_validation_counts"


def _run_without_the_files(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"KARMMA_SHARED_DATA": str(tmp_path / "nowhere")}
    if ci:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", A_TEST_OF_THE_REAL_FILES]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_without_the_files_they_skip_on_a_plain_clone_and_fail_in_ci(tmp_path):
    plain = _run_without_the_files(tmp_path, ci="")
    assert plain.returncode == 0, plain.stdout[-2000:]
    assert "1 skipped" in plain.stdout and f"expected at {tmp_path / 'nowhere'}" in plain.stdout, plain.stdout[-2000:]
    ci = _run_without_the_files(tmp_path, ci="true")
    assert ci.returncode != 0 and "CI must have them" in ci.stdout, ci.stdout[-2000:]
