"""Small synthetic datasets for the engine tests, and a real-MNIST loader written with gzip + numpy."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from reglab.data.dataset import Dataset


def synthetic_dataset(n_train: int = 240, n_val: int = 100, n_test: int = 100, n_features: int = 12,
                      n_classes: int = 3, label_noise: float = 0.0, seed: int = 0) -> Dataset:
    """Gaussian inputs; the class is a thresholded sum of a few coordinates (learnable, not trivial)."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int):
        x = torch.randn(n, n_features, generator=g)
        score = x[:, :3].sum(1) + (0.5 * x[:, 3] if n_features > 3 else 0.0)
        edges = torch.linspace(-1.5, 1.5, n_classes - 1) if n_classes > 2 else torch.tensor([0.0])
        y = torch.bucketize(score, edges)
        flip = torch.rand(n, generator=g) < label_noise
        y = torch.where(flip, torch.randint(0, n_classes, (n,), generator=g), y)
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = split(n_train), split(n_val), split(n_test)
    return Dataset("synthetic", xt, yt, xv, yv, xs, ys, n_classes=n_classes, info={"generator": "test"})


@pytest.fixture
def small_dataset() -> Dataset:
    return synthetic_dataset()


def read_idx_gz(path: Path) -> np.ndarray:
    """IDX (gzip) from the spec: magic 0,0,type,ndim; big-endian dims; unsigned bytes for MNIST."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * ndim], dtype=">u4")
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def mnist_tensors(data_dir: Path, n_train: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n_train`` training images (pixels / 255, flattened) and labels, plus the test split."""
    root = data_dir / "mnist"
    x = read_idx_gz(root / "train-images-idx3-ubyte.gz")[:n_train]
    y = read_idx_gz(root / "train-labels-idx1-ubyte.gz")[:n_train]
    xs = read_idx_gz(root / "t10k-images-idx3-ubyte.gz")
    ys = read_idx_gz(root / "t10k-labels-idx1-ubyte.gz")
    as_x = lambda a: torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)  # noqa: E731
    return as_x(x), torch.from_numpy(y.astype(np.int64)), as_x(xs), torch.from_numpy(ys.astype(np.int64))


@pytest.fixture(autouse=True)
def one_thread():
    """Engine tests use tiny tensors: one thread avoids OpenMP hand-offs that dominate on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
