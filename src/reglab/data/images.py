"""MNIST and Fashion-MNIST as tensors, and :func:`load_dataset`, the one entry point for every dataset.

Splits (fixed, no randomness):

* train: the first 50,000 of the official 60,000 training images
* val:   the LAST 10,000 of the official training images
* test:  the official 10,000 test images

``train_on_all`` trains on all 60,000 (validation is then inside training).
Pixels are ``uint8 / 255`` as float32 in [0, 1], flattened row-major;
``resolution=7`` averages each 4x4 block (28 = 7 * 4), so pixel (i, j) of
the 7x7 image is ``mean(x[4i:4i+4, 4j:4j+4])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from reglab.config import DataConfig
from reglab.data.dataset import Dataset
from reglab.data.pointcloud import load_pointcloud
from reglab.data.sources import (DOWNLOAD_TIMEOUT_S, SYSTEM_DATASET_DIRS, ImageSource, get_source,
                                 load_arrays, locate)
from reglab.data.splits import assemble
from reglab.errors import ReglabError

N_VAL = 10_000


def pool(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, H, W) -> (N, H/factor, W/factor): the mean of each factor x factor block."""
    n, h, w = images.shape
    if h % factor or w % factor:
        raise ValueError(f"image side {h}x{w} is not a multiple of {factor}")
    return images.reshape(n, h // factor, factor, w // factor, factor).mean(dim=(2, 4))


def to_features(images_uint8, resolution: int) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 (N, resolution**2) in [0, 1]."""
    x = torch.from_numpy(images_uint8).to(torch.float32).div_(255.0)
    if resolution != x.shape[1]:
        x = pool(x, x.shape[1] // resolution)
    return x.reshape(x.shape[0], -1)


def load_images(cfg: DataConfig, *, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                download: bool = True, allow_checksum_mismatch: bool = False,
                mirrors: Sequence[str] | None = None, system_dirs: Sequence[str | Path] = SYSTEM_DATASET_DIRS,
                timeout: float = DOWNLOAD_TIMEOUT_S, source: ImageSource | None = None) -> Dataset:
    """MNIST or Fashion-MNIST as `cfg` asks; see the module docstring and :mod:`reglab.data.sources`.

    `source` replaces the built-in description of the dataset (file names,
    shapes, checksums, mirrors): tests use it for tiny generated datasets.
    """
    source = source or get_source(cfg.name)
    located = locate(source, data_dir=data_dir, cache_dir=cache_dir, download=download, mirrors=mirrors,
                     system_dirs=system_dirs, timeout=timeout)
    arrays, checksums = load_arrays(source, located, allow_checksum_mismatch=allow_checksum_mismatch)

    x_official = to_features(arrays[source.train_images.name], cfg.resolution)
    y_official = torch.from_numpy(arrays[source.train_labels.name]).to(torch.int64)
    x_test = to_features(arrays[source.test_images.name], cfg.resolution)
    y_test = torch.from_numpy(arrays[source.test_labels.name]).to(torch.int64)
    n_official = y_official.shape[0]
    if n_official <= N_VAL:
        raise ReglabError(f"{located.paths[source.train_labels.name]} holds {n_official} training examples; "
                          f"the last {N_VAL} are the validation split, so more are needed. "
                          f"Fix: use the full training file.")
    n_train = n_official - N_VAL
    splits = {"train": (x_official[:n_train], y_official[:n_train]),
              "val": (x_official[n_train:], y_official[n_train:]),
              "test": (x_test, y_test)}

    status = "ok" if all(r["status"] == "ok" for r in checksums.values()) else "override"
    info = {
        "name": source.name,
        "kind": "image",
        "source": {"place": located.place, "where": located.place_text, "folder": str(located.folder),
                   "looked_before": list(located.looked), "downloaded_from": dict(located.urls)},
        "checksums": checksums,
        "checksum_status": status,
        "resolution": cfg.resolution,
        "pixels": "float32 in [0, 1] (uint8 / 255)" + (", 4x4 average pooling" if cfg.resolution == 7 else ""),
        "split_rule": f"train = official train[:{n_train}], val = official train[{n_train}:] (the last {N_VAL}), "
                      f"test = official test",
        "class_names": list(source.class_names),
    }
    return assemble(source.name, splits, source.n_classes, cfg, info, per_feature_scale=False)


def load_dataset(cfg: DataConfig | str, *, data_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, download: bool = True,
                 allow_checksum_mismatch: bool = False, mirrors: Sequence[str] | None = None,
                 table=None) -> Dataset:
    """The dataset `cfg` describes (a :class:`DataConfig`, or just its name), as three tensor splits.

    Images are looked up in ``data_dir/<name>/``, ``cache_dir/<name>/``,
    ``/usr/share/datasets/<name>/``, then downloaded from `mirrors` (default:
    the public mirrors) into ``cache_dir`` when `download`; point clouds are
    generated from cfg's n_points, noise, flip and data_seed; a table (``name = "table"``) is read
    from ``cfg.source`` or taken from `table`, ``(X, y)`` or ``(frame, "target")``
    (:mod:`reglab.data.table`).
    """
    if isinstance(cfg, str):
        cfg = DataConfig(name=cfg)
    if cfg.name == "table":
        from reglab.data.table import load_table
        return load_table(cfg, data=table)
    if table is not None:
        raise ReglabError(f"data=(...) was given, but this study's data is {cfg.name!r}. "
                          "Fix: use a table study (reglab.presets.table(data=...)) or drop data=.")
    if not cfg.is_image:
        return load_pointcloud(cfg)
    return load_images(cfg, data_dir=data_dir, cache_dir=cache_dir, download=download,
                       allow_checksum_mismatch=allow_checksum_mismatch, mirrors=mirrors)
