"""Datasets: IDX images (MNIST, Fashion-MNIST) and 2-D point clouds."""

from reglab.data.dataset import Dataset

__all__ = ["Dataset"]
