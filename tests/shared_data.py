"""Where the real annotation files are (``shared/data`` beside the checkout, as in CI, or
KARMMA_SHARED_DATA), and what a test that reads them does when they are not there."""

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("KARMMA_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_data_required() -> bool:
    """In CI (``CI`` set, as .ci/run and CI services do) the tests that read the real annotation
    files must run; on a plain clone without them they are skipped, with the reason."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def shared_folder(path: Path, required: bool) -> Path:
    """``path`` when it is a folder; else the test fails (``required``) or is skipped, saying where."""
    if not path.is_dir():
        where = f"the real annotation files (EPIC-KITCHENS-100, SSv2) are expected at {path}"
        if required:
            pytest.fail(f"{where} (set KARMMA_SHARED_DATA); CI must have them")
        pytest.skip(f"{where}; not on this machine (set KARMMA_SHARED_DATA to run these tests)")
    return path
