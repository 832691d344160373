"""Fixtures shared by every test package."""

import os
import shutil
import sys
from pathlib import Path

import pytest

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "docs" / "examples" / "plugin" / "reglab_group_lasso.py"


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


@pytest.fixture
def example_plugin_site(tmp_path, monkeypatch) -> Path:
    """A folder on sys.path holding the docs' example plugin (group lasso, ``reglab_group_lasso``),
    importable in this process while the test runs (not installed: Ray's workers cannot import it)."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE_PLUGIN, site)
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("reglab_group_lasso", None)
