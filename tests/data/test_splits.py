"""The options every dataset shares: class counts, balanced subsets, train-on-all, standardization."""

import pytest
import torch

from reglab.config import DataConfig
from reglab.data.splits import assemble, balanced_subset, class_counts
from reglab.errors import ReglabError

from .helpers import assert_clean_error


def _splits():
    y = torch.tensor([2, 0, 0, 1, 2, 0, 1, 2, 2, 1])
    x = torch.arange(10, dtype=torch.float32).reshape(10, 1) * torch.tensor([[1.0, 10.0]])
    return {"train": (x, y), "val": (x[:6], y[:6]), "test": (x[4:], y[4:])}


def test_class_counts_count_every_class_including_absent_ones():
    assert class_counts(torch.tensor([0, 2, 2, 2]), 4) == [1, 0, 3, 0]


def test_a_balanced_subset_keeps_the_first_n_of_each_class_in_their_original_order():
    x, y = _splits()["train"]
    xs, ys = balanced_subset(x, y, 2, 3, split="train", dataset="d")
    assert ys.tolist() == [2, 0, 0, 1, 2, 1]          # items 0, 1, 2, 3, 4, 6
    assert xs[:, 0].tolist() == [0, 1, 2, 3, 4, 6]


def test_a_subset_beyond_the_smallest_class_is_a_one_line_error_naming_the_limit():
    x, y = _splits()["val"]                           # classes: 0 x3, 1 x1, 2 x2
    with pytest.raises(ReglabError) as e:
        balanced_subset(x, y, 2, 3, split="val", dataset="d")
    assert_clean_error(e, "val split of d", "only 1 examples of class 1", "subset_per_class <= 1")


def test_train_on_all_appends_validation_to_train_and_keeps_validation():
    s = _splits()
    ds = assemble("d", s, 3, DataConfig(name="moons", train_on_all=True), {}, per_feature_scale=True)
    assert ds.x_train.shape[0] == 16 and torch.equal(ds.x_train[10:], s["val"][0])
    assert torch.equal(ds.x_val, s["val"][0]) and ds.info["val_overlaps_train"]


def test_per_feature_standardization_gives_each_training_coordinate_mean_0_and_std_1():
    s = _splits()
    ds = assemble("d", s, 3, DataConfig(name="moons", standardize=True), {}, per_feature_scale=True)
    torch.testing.assert_close(ds.x_train.mean(0), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(ds.x_train.std(0), torch.ones(2), atol=1e-6, rtol=0)
    x = s["test"][0]
    torch.testing.assert_close(ds.x_test, (x - s["train"][0].mean(0)) / s["train"][0].std(0))


def test_a_constant_feature_is_centred_but_not_divided_by_zero():
    x = torch.stack([torch.arange(6.0), torch.full((6,), 3.0)], 1)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    s = {"train": (x, y), "val": (x, y), "test": (x, y)}
    ds = assemble("d", s, 2, DataConfig(name="moons", standardize=True), {}, per_feature_scale=True)
    assert torch.equal(ds.x_train[:, 1], torch.zeros(6))


def test_train_per_class_subsets_the_training_split_only_and_repeat_tiles_it():
    s = _splits()
    ds = assemble("d", s, 3, DataConfig(name="moons", train_per_class=2, train_repeat=3), {}, per_feature_scale=True)
    assert ds.y_train.tolist() == [2, 0, 0, 1, 2, 1] * 3          # items 0, 1, 2, 3, 4, 6, three times
    assert ds.x_train[:6, 0].tolist() == [0, 1, 2, 3, 4, 6]
    assert torch.equal(ds.x_val, s["val"][0]) and torch.equal(ds.x_test, s["test"][0])
    assert ds.info["n_train_distinct"] == 6 and ds.info["train_repeat"] == 3
    assert ds.info["split_sizes"]["train"] == 18


def test_standardizing_a_repeated_subset_uses_the_distinct_examples():
    s = _splits()
    once = assemble("d", s, 3, DataConfig(name="moons", train_per_class=2, standardize=True), {},
                    per_feature_scale=True)
    tiled = assemble("d", s, 3, DataConfig(name="moons", train_per_class=2, train_repeat=4, standardize=True), {},
                     per_feature_scale=True)
    assert torch.equal(tiled.x_train[:6], once.x_train) and torch.equal(tiled.x_val, once.x_val)


def test_train_per_class_beyond_the_smallest_class_names_its_own_option():
    with pytest.raises(ReglabError) as e:
        assemble("d", _splits(), 3, DataConfig(name="moons", train_per_class=4), {}, per_feature_scale=True)
    assert_clean_error(e, "data.train_per_class=4", "train split of d", "train_per_class <= 3")
