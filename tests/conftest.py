"""Fixtures shared by every test package."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets root (holding mnist/ and fashion-mnist/), from env REGLAB_DATA_DIR.

    Unset: the test is skipped with the reason. Set to something that is not
    a folder: the test fails, so a misconfigured CI never silently skips.
    """
    value = os.environ.get("REGLAB_DATA_DIR")
    if not value:
        pytest.skip("real-data test: set REGLAB_DATA_DIR to a folder holding mnist/ and fashion-mnist/ "
                    "(.ci/run passes ../shared/datasets)")
    root = Path(value)
    if not root.is_dir():
        pytest.fail(f"REGLAB_DATA_DIR={value} is not a folder")
    return root
