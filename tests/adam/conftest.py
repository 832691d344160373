"""Shared by the reglab.adam tests: one torch thread, and a small generated dataset."""

import pytest
import torch

from reglab.data import Dataset


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run these tests on one torch thread, then restore the setting.

    The work here is small tensors; on a shared 2-core machine a 2-thread
    process was measured 4-10x slower whenever another process took a core.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _make_blobs(n: int = 200, d: int = 30, n_classes: int = 4, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, d, generator=gen)
    y = torch.randint(0, n_classes, (3 * n,), generator=gen)
    x = centers[y] + torch.randn(3 * n, d, generator=gen)
    return Dataset("blobs", x[:n], y[:n], x[n:2 * n], y[n:2 * n], x[2 * n:], y[2 * n:], n_classes, {"generated": True})


@pytest.fixture(scope="session")
def make_blobs():
    """A function returning a small generated 4-class problem (Gaussian blobs) as a Dataset.

    It stands in for MNIST where the data do not matter (the recording's
    algebra, the figures, the page); the real-data run is in test_cli.py.
    """
    return _make_blobs
