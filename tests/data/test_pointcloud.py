"""2-D point clouds: same seed same data, exact balance, exact flip rate, the shapes' geometry."""

import json

import numpy as np
import pytest
import torch

from reglab.config import POINTCLOUDS, DataConfig
from reglab.data import load_dataset, make_pointcloud
from reglab.errors import ReglabError

SPLITS = ("train", "val", "test")


def _split(ds, s):
    return getattr(ds, f"x_{s}"), getattr(ds, f"y_{s}")


@pytest.mark.parametrize("name", POINTCLOUDS)
def test_every_point_cloud_has_fixed_50_25_25_splits_of_exactly_balanced_classes(name):
    ds = make_pointcloud(name, n_points=600, seed=1)
    assert ds.n_classes == 2 and ds.n_features == 2
    for s, n in zip(SPLITS, (300, 150, 150)):
        x, y = _split(ds, s)
        assert x.shape == (n, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.bincount(y, minlength=2).tolist() == [n // 2, n // 2]
    json.dumps(ds.info, allow_nan=False)


@pytest.mark.parametrize("name", POINTCLOUDS)
def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(name):
    a, b, c = (make_pointcloud(name, n_points=200, seed=s) for s in (7, 7, 8))
    for s in SPLITS:
        xa, ya = _split(a, s)
        xb, yb = _split(b, s)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a.x_train, c.x_train)


def _true_label(name, x):
    """The noiseless class of each point, from the documented geometry."""
    if name == "circles":
        return (np.hypot(x[:, 0], x[:, 1]) < 0.75).astype(int)
    if name == "xor":
        return (np.sign(x[:, 0]) != np.sign(x[:, 1])).astype(int)
    if name == "moons":  # class 0 on the unit circle around (-1/2, -1/4), class 1 around (1/2, 1/4)
        return (np.abs(np.hypot(x[:, 0] + 0.5, x[:, 1] + 0.25) - 1) > 1e-5).astype(int)
    if name == "spirals":  # class 0 at angle 3 pi r (mod 2 pi), class 1 half a turn further
        r = np.hypot(x[:, 0], x[:, 1])
        turn = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - 3 * np.pi * r)))
        return (np.abs(turn) > np.pi / 2).astype(int)
    raise AssertionError(name)


@pytest.mark.parametrize("name", POINTCLOUDS)
def test_without_noise_points_lie_on_their_shape_and_exactly_the_flip_rate_of_labels_is_wrong(name):
    ds = make_pointcloud(name, n_points=800, noise=0.0, flip=0.1, seed=3)
    for s, per_class in zip(SPLITS, (200, 100, 100)):
        x, y = _split(ds, s)
        wrong = _true_label(name, x.double().numpy()) != y.numpy()
        assert wrong.sum() == 2 * round(0.1 * per_class), (s, wrong.sum())
    clean = make_pointcloud(name, n_points=800, noise=0.0, flip=0.0, seed=3)
    assert (_true_label(name, clean.x_train.double().numpy()) == clean.y_train.numpy()).all()


def test_noise_is_gaussian_with_the_given_std_around_the_shape():
    ds = make_pointcloud("circles", n_points=4000, noise=0.05, flip=0.0, seed=0)
    x, y = ds.x_train.double().numpy(), ds.y_train.numpy()
    radial = np.hypot(x[:, 0], x[:, 1]) - np.where(y == 0, 1.0, 0.5)
    assert abs(radial.mean()) < 0.01 and radial.std() == pytest.approx(0.05, rel=0.1)


def test_an_odd_point_count_uses_one_point_less_and_says_so():
    ds = make_pointcloud("moons", n_points=101)
    assert sum(ds.info["split_sizes"].values()) == 100 and ds.info["params"]["n_points_used"] == 100


def test_load_dataset_generates_point_clouds_from_the_config_and_applies_its_options():
    cfg = DataConfig(name="spirals", n_points=400, noise=0.1, flip=0.0, data_seed=5, standardize=True,
                     subset_per_class=20)
    ds = load_dataset(cfg)
    assert ds.info["class_counts"] == {s: [20, 20] for s in SPLITS}
    assert ds.info["standardize"]["over"] == "each feature of the training split"
    torch.testing.assert_close(ds.x_train.mean(0), torch.zeros(2), atol=1e-5, rtol=0)


def test_an_image_name_is_not_a_point_cloud():
    with pytest.raises(ReglabError) as e:
        make_pointcloud("mnist")
    assert "mnist" in str(e.value) and "Fix:" in str(e.value)
