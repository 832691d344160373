"""Fixtures shared by every test package."""

import os
import shutil
import sys
from pathlib import Path

import pytest

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "docs" / "examples" / "plugin" / "reglab_group_lasso.py"


def _share_the_cores_between_test_workers() -> None:
    """Under pytest-xdist (scripts/test.sh runs one worker per physical core): each worker, and every
    reglab it starts, gets its share of the cores as a fixed torch thread count (REGLAB_THREADS),
    not the measured free cores: oversubscribed cores slow torch many times, and a count that
    follows the other worker's load would differ between two runs a test compares bit for bit."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 1:
        return
    from reglab.threads import usable_cpus
    import torch
    share = str(max(1, usable_cpus() // workers))
    os.environ["REGLAB_THREADS"] = share
    torch.set_num_threads(int(share))


_share_the_cores_between_test_workers()


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
    return root.resolve()     # absolute: tests link to its files from temporary folders, and may chdir


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
