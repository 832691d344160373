"""Two-class 2-D point clouds: moons, circles, two spirals, XOR.

Every shape lives at scale ~1 (coordinates roughly in [-1.5, 1.5]); ``noise``
is the std of isotropic Gaussian noise added to each coordinate, in those
units. Conventions, for class 0 / class 1 (t ~ U(0, 1) per point):

* moons:   (cos pi t, sin pi t) / (1 - cos pi t, 1/2 - sin pi t), shifted by (-1/2, -1/4) to centre them
* circles: radius 1 / radius 1/2, angle 2 pi t
* spirals: r = s, angle = 3 pi s (1.5 turns), s = sqrt(t) so points are spread evenly along
           the arm; class 1 is class 0 rotated by pi
* xor:     uniform in the quadrants where sign(x) == sign(y) / where they differ

Splits are fixed and stratified: of the ``n_points // 2`` points per class,
50% go to train, 25% to validation, 25% to test (train = m // 2, val = m // 4,
test = the rest), so every split is exactly balanced. Then in each split
exactly ``round(flip * n)`` labels of each class are flipped to the other
class (n = that class's count in the split): the flip rate holds exactly and
the classes stay balanced. The same (name, n_points, noise, flip, seed)
gives the same data, bit for bit: everything is drawn from one
``numpy.random.default_rng(seed)`` in a fixed order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from reglab.config import POINTCLOUDS, DataConfig
from reglab.data.dataset import Dataset
from reglab.data.splits import SPLITS, assemble
from reglab.errors import ReglabError

TRAIN_FRACTION, VAL_FRACTION = 0.5, 0.25   # test gets the remaining 0.25 (see split_sizes)


def _moons(t: np.ndarray, label: int) -> np.ndarray:
    a = np.pi * t
    if label == 0:
        xy = np.stack([np.cos(a), np.sin(a)], 1)
    else:
        xy = np.stack([1.0 - np.cos(a), 0.5 - np.sin(a)], 1)
    return xy - np.array([0.5, 0.25])


def _circles(t: np.ndarray, label: int) -> np.ndarray:
    r = 1.0 if label == 0 else 0.5
    a = 2 * np.pi * t
    return r * np.stack([np.cos(a), np.sin(a)], 1)


def _spirals(t: np.ndarray, label: int) -> np.ndarray:
    s = np.sqrt(t)
    a = 3 * np.pi * s + (np.pi if label == 1 else 0.0)
    return s[:, None] * np.stack([np.cos(a), np.sin(a)], 1)


def _xor(t: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    # |x|, |y| uniform in (0, 1); signs agree for class 0 and differ for class 1
    mag = rng.uniform(0.0, 1.0, size=(len(t), 2))
    sx = np.where(t < 0.5, 1.0, -1.0)
    sy = sx if label == 0 else -sx
    return mag * np.stack([sx, sy], 1)


# name -> (t, label, rng) -> clean points (m, 2)
SHAPES: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "moons": lambda t, c, rng: _moons(t, c),
    "circles": lambda t, c, rng: _circles(t, c),
    "spirals": lambda t, c, rng: _spirals(t, c),
    "xor": _xor,
}
assert tuple(SHAPES) == POINTCLOUDS, "every point cloud the config accepts must have a generator"


def split_sizes(n_per_class: int) -> dict[str, int]:
    """Points per class in each split: train m // 2, val m // 4, test the rest."""
    n_train = int(n_per_class * TRAIN_FRACTION)
    n_val = int(n_per_class * VAL_FRACTION)
    return {"train": n_train, "val": n_val, "test": n_per_class - n_train - n_val}


def generate(name: str, *, n_points: int, noise: float, flip: float, seed: int,
             ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three splits {split: (x (n, 2) float32, y (n,) int64)} of one point cloud, before any cfg options."""
    if name not in SHAPES:
        raise ReglabError(f"unknown point cloud {name!r}; known: {', '.join(SHAPES)}. Fix: use one of those.")
    rng = np.random.default_rng(seed)
    m = n_points // 2
    sizes = split_sizes(m)
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {s: [] for s in SPLITS}
    for label in (0, 1):
        t = rng.uniform(0.0, 1.0, size=m)
        xy = SHAPES[name](t, label, rng) + rng.normal(0.0, noise, size=(m, 2))
        order = rng.permutation(m)
        start = 0
        for s in SPLITS:
            idx = order[start:start + sizes[s]]
            parts[s].append((xy[idx], np.full(sizes[s], label, dtype=np.int64)))
            start += sizes[s]
    out = {}
    for s in SPLITS:
        x = np.concatenate([p[0] for p in parts[s]])
        y = np.concatenate([p[1] for p in parts[s]])
        y_observed = y.copy()
        n_flip = int(round(flip * sizes[s]))
        for label in (0, 1):
            members = np.flatnonzero(y == label)
            y_observed[rng.choice(members, size=n_flip, replace=False)] = 1 - label
        shuffle = rng.permutation(len(y))
        out[s] = (torch.from_numpy(x[shuffle].astype(np.float32)), torch.from_numpy(y_observed[shuffle]))
    return out


def load_pointcloud(cfg: DataConfig) -> Dataset:
    """The point cloud `cfg` names, with cfg's train_on_all / subset_per_class / standardize applied."""
    splits = generate(cfg.name, n_points=cfg.n_points, noise=cfg.noise, flip=cfg.flip, seed=cfg.data_seed)
    m = cfg.n_points // 2
    info = {
        "name": cfg.name,
        "kind": "pointcloud",
        "source": {"place": "generated", "generator": f"reglab.data.pointcloud ({cfg.name})"},
        "params": {"n_points": cfg.n_points, "n_points_used": 2 * m, "noise": cfg.noise, "flip": cfg.flip,
                   "seed": cfg.data_seed},
        "split_rule": "stratified per class: 50% train, 25% validation, 25% test; "
                      "round(flip * n) labels of each class flipped in each split",
        "labels_flipped_per_class": {s: int(round(cfg.flip * n)) for s, n in split_sizes(m).items()},
    }
    return assemble(cfg.name, splits, 2, cfg, info, per_feature_scale=True)


def make_pointcloud(name: str, *, n_points: int = 600, noise: float = 0.2, flip: float = 0.05,
                    seed: int = 0) -> Dataset:
    """A point cloud by name, e.g. ``make_pointcloud("moons", n_points=1000, seed=3)``."""
    return load_pointcloud(DataConfig(name=name, n_points=n_points, noise=noise, flip=flip, data_seed=seed))
