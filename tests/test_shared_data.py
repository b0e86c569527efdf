"""The tests that read the real annotation files (../shared/data): skipped with the reason on a plain
clone without them, failed in CI (``CI`` set, as .ci/run does) when they are missing."""

from pathlib import Path

import pytest

from shared_data import shared_data_required, shared_folder

ROOT = Path(__file__).resolve().parents[1]


def test_without_the_files_a_plain_clone_skips_and_ci_fails(tmp_path):
    assert shared_folder(tmp_path, required=True) == tmp_path
    with pytest.raises(pytest.skip.Exception, match=f"expected at {tmp_path / 'nowhere'}; not on this machine"):
        shared_folder(tmp_path / "nowhere", required=False)
    with pytest.raises(pytest.fail.Exception, match="CI must have them"):
        shared_folder(tmp_path / "nowhere", required=True)


@pytest.mark.parametrize("value, required", [("", False), ("0", False), ("false", False), ("true", True), ("1", True)])
def test_ci_is_told_by_the_ci_variable(monkeypatch, value, required):
    monkeypatch.setenv("CI", value)
    assert shared_data_required() is required
    monkeypatch.delenv("CI")
    assert not shared_data_required()


def test_the_ci_script_sets_it():
    assert 'export CI="${CI:-true}"' in (ROOT / ".ci" / "run").read_text()
