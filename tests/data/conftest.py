import os
from pathlib import Path

import pytest

# The real annotation files live in shared/ beside the checkout (as in CI);
# KARMMA_SHARED_DATA points elsewhere.
SHARED = Path(os.environ.get("KARMMA_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared annotation files are expected at {SHARED} (set KARMMA_SHARED_DATA)")
    return SHARED
