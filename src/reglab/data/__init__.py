"""Datasets: IDX images (MNIST, Fashion-MNIST) and 2-D point clouds.

``load_dataset(cfg)`` is the one entry point; see :mod:`reglab.data.images`
for the image splits, :mod:`reglab.data.sources` for where files are found,
and :mod:`reglab.data.pointcloud` for the generated shapes.
"""

from reglab.data.dataset import Dataset
from reglab.data.images import load_dataset
from reglab.data.pointcloud import make_pointcloud

__all__ = ["Dataset", "load_dataset", "make_pointcloud"]
