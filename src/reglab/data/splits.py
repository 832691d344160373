"""What every dataset does after loading: train-on-all, class-balanced subsets, standardization.

Shared by images and point clouds so that a :class:`DataConfig` field means
the same thing for both.
"""

from __future__ import annotations

import torch

from reglab.config import DataConfig
from reglab.data.dataset import Dataset
from reglab.errors import ReglabError

SPLITS = ("train", "val", "test")


def class_counts(y: torch.Tensor, n_classes: int) -> list[int]:
    """Number of examples of each class 0..n_classes-1."""
    return [int(c) for c in torch.bincount(y, minlength=n_classes)[:n_classes]]


def balanced_subset(x: torch.Tensor, y: torch.Tensor, n_per_class: int, n_classes: int, *,
                    split: str, dataset: str, key: str = "subset_per_class") -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n_per_class` examples of each class, kept in their original order.

    Deterministic (no randomness: the files' own order decides), and each
    split keeps exactly `n_per_class` per class, so the subset is balanced.
    """
    counts = class_counts(y, n_classes)
    short = [(c, k) for c, k in enumerate(counts) if k < n_per_class]
    if short:
        c, k = min(short, key=lambda ck: ck[1])
        raise ReglabError(f"data.{key}={n_per_class} but the {split} split of {dataset} has only {k} "
                          f"examples of class {c}. Fix: use {key} <= {min(counts)} (0 = all).")
    keep = torch.zeros_like(y, dtype=torch.bool)
    for c in range(n_classes):
        keep[torch.nonzero(y == c).flatten()[:n_per_class]] = True
    return x[keep], y[keep]


def assemble(name: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], n_classes: int,
             cfg: DataConfig, info: dict, *, per_feature_scale: bool) -> Dataset:
    """Apply `cfg`'s train_on_all, subset_per_class and standardize to base splits; record them in info.

    * train_on_all: train = train followed by val (val stays as it is, so it
      then overlaps train and is no longer a held-out estimate).
    * subset_per_class = n: the first n of each class in every split.
    * train_per_class = n: the first n of each class in the training split only (nested: the
      subset for n is part of the subset for any larger n).
    * train_repeat = k: the training split tiled k times (after standardizing), so that one epoch
      is k passes in one random order; ``info["n_train_distinct"]`` keeps the distinct count.
    * standardize: x <- (x - mean) / std with mean and std of the final
      training split -- one scalar over all pixels for images
      (``per_feature_scale=False``), one per coordinate for point clouds.
    """
    splits = dict(splits)
    if cfg.train_on_all:
        (xt, yt), (xv, yv) = splits["train"], splits["val"]
        splits["train"] = (torch.cat([xt, xv]), torch.cat([yt, yv]))
    if cfg.subset_per_class:
        splits = {s: balanced_subset(*splits[s], cfg.subset_per_class, n_classes, split=s, dataset=name)
                  for s in SPLITS}
    if cfg.train_per_class:
        splits["train"] = balanced_subset(*splits["train"], cfg.train_per_class, n_classes, split="train",
                                          dataset=name, key="train_per_class")
    n_train_distinct = int(splits["train"][1].shape[0])
    scale = None
    if cfg.standardize:
        x_train = splits["train"][0]
        if per_feature_scale:
            mean, std = x_train.mean(0), x_train.std(0)
        else:
            mean, std = x_train.mean(), x_train.std()
        std = torch.where(std > 0, std, torch.ones_like(std))  # a constant feature is only centred
        splits = {s: ((x - mean) / std, y) for s, (x, y) in splits.items()}
        scale = {"mean": mean.tolist(), "std": std.tolist(),
                 "over": "each feature of the training split" if per_feature_scale
                 else "all pixels of the training split"}
    if cfg.train_repeat > 1:   # after standardizing: the statistics are those of the distinct examples
        x, y = splits["train"]
        splits["train"] = (x.repeat(cfg.train_repeat, 1), y.repeat(cfg.train_repeat))
    info = dict(info)
    info.update(
        n_classes=n_classes,
        n_features=int(splits["train"][0].shape[1]),
        split_sizes={s: int(splits[s][1].shape[0]) for s in SPLITS},
        class_counts={s: class_counts(splits[s][1], n_classes) for s in SPLITS},
        train_on_all=cfg.train_on_all,
        val_overlaps_train=cfg.train_on_all,
        subset_per_class=cfg.subset_per_class,
        standardize=scale,
    )
    if cfg.train_per_class or cfg.train_repeat > 1:
        info.update(train_per_class=cfg.train_per_class, train_repeat=cfg.train_repeat,
                    n_train_distinct=n_train_distinct,
                    train_note=(f"{n_train_distinct} distinct training examples"
                                + (f" (the first {cfg.train_per_class} of each class)" if cfg.train_per_class else "")
                                + (f", each seen {cfg.train_repeat} times per epoch" if cfg.train_repeat > 1 else "")))
    if cfg.train_on_all:
        info["note"] = ("train_on_all: the training split includes the validation split, so validation "
                        "scores overlap training and are not a held-out estimate")
    return Dataset(name=name, n_classes=n_classes, info=info,
                   x_train=splits["train"][0], y_train=splits["train"][1],
                   x_val=splits["val"][0], y_val=splits["val"][1],
                   x_test=splits["test"][0], y_test=splits["test"][1])
