"""MNIST / Fashion-MNIST as tensors: splits, pixels, 7x7 pooling, subsets, standardization, provenance."""

import gzip
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reglab.config import DataConfig
from reglab.data import load_dataset
from reglab.data.images import load_images
from reglab.errors import ReglabError

from .helpers import assert_clean_error, idx_bytes, tiny_images

# facts from shared/datasets/README.md
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ----------------------------------------------------------------------------
# generated 28x28 images: 10,050 "official" training images and 30 test images

@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    tiny = tiny_images(n_train=10_050, n_test=30, side=28, name="fake")
    root = tmp_path_factory.mktemp("fake-data")
    tiny.write(root, gz=False)
    return tiny, root


def _load(fake, **cfg):
    tiny, root = fake
    return load_images(DataConfig(name="mnist", **cfg), data_dir=root, download=False, system_dirs=(),
                       source=tiny.source)


def test_validation_is_the_last_10000_official_training_images_and_train_the_rest(fake):
    tiny, _ = fake
    ds = _load(fake)
    pixels = tiny.arrays["train-images-idx3-ubyte"].reshape(10_050, 784).astype(np.float64) / 255
    labels = tiny.arrays["train-labels-idx1-ubyte"]
    assert ds.x_train.shape == (50, 784) and ds.x_val.shape == (10_000, 784) and ds.x_test.shape == (30, 784)
    np.testing.assert_allclose(ds.x_train.numpy(), pixels[:50], rtol=0, atol=1e-7)
    np.testing.assert_allclose(ds.x_val.numpy(), pixels[50:], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_val.numpy(), labels[50:])
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.info["split_sizes"] == {"train": 50, "val": 10_000, "test": 30}


def test_pixels_are_uint8_over_255_in_the_unit_interval(fake):
    tiny, _ = fake
    ds = _load(fake)
    assert 0.0 <= float(ds.x_test.min()) and float(ds.x_test.max()) <= 1.0
    expected = tiny.arrays["t10k-images-idx3-ubyte"].reshape(30, 784) / np.float32(255)
    np.testing.assert_array_equal(ds.x_test.numpy(), expected.astype(np.float32))


def test_resolution_7_is_the_mean_of_each_4x4_block(fake):
    full, pooled = _load(fake), _load(fake, resolution=7)
    reference = F.avg_pool2d(full.x_test.reshape(-1, 1, 28, 28), kernel_size=4).reshape(-1, 49)
    assert pooled.x_test.shape == (30, 49) and pooled.n_features == 49
    torch.testing.assert_close(pooled.x_test, reference, rtol=0, atol=1e-6)
    block = full.x_train[3].reshape(28, 28)[8:12, 20:24].mean()  # pixel (2, 5) of the 7x7 image
    torch.testing.assert_close(pooled.x_train[3].reshape(7, 7)[2, 5], block)


def test_train_on_all_trains_on_every_official_image_and_says_validation_overlaps(fake):
    ds = _load(fake, train_on_all=True)
    base = _load(fake)
    assert ds.x_train.shape[0] == 10_050
    torch.testing.assert_close(ds.x_train[50:], base.x_val, rtol=0, atol=0)
    torch.testing.assert_close(ds.x_val, base.x_val, rtol=0, atol=0)
    assert ds.info["val_overlaps_train"] is True and "overlap" in ds.info["note"]


def test_standardization_uses_the_training_mean_and_std_for_every_split(fake):
    raw, ds = _load(fake), _load(fake, standardize=True)
    mean, std = raw.x_train.double().mean(), raw.x_train.double().std()
    assert abs(float(ds.x_train.double().mean())) < 1e-5
    assert abs(float(ds.x_train.double().std()) - 1) < 1e-5
    torch.testing.assert_close(ds.x_test.double(), (raw.x_test.double() - mean) / std, rtol=0, atol=1e-5)
    assert ds.info["standardize"]["mean"] == pytest.approx(float(mean), rel=1e-5)


def test_a_class_balanced_subset_takes_the_first_n_of_each_class_in_file_order(fake):
    tiny, _ = fake
    ds = _load(fake, subset_per_class=3)
    labels = tiny.arrays["train-labels-idx1-ubyte"]
    val_labels = labels[50:]
    expected_val = np.sort(np.concatenate([np.flatnonzero(val_labels == c)[:3] for c in range(10)]))
    np.testing.assert_array_equal(ds.y_val.numpy(), val_labels[expected_val])
    for split in ("train", "val", "test"):
        assert ds.info["class_counts"][split] == [3] * 10
    assert torch.equal(ds.x_val, _load(fake, subset_per_class=3).x_val)  # deterministic


def test_a_subset_larger_than_a_class_is_a_one_line_error(fake):
    with pytest.raises(ReglabError) as e:
        _load(fake, subset_per_class=6)  # train holds 5 of each class
    assert_clean_error(e, "subset_per_class=6", "train split", "only 5")


def test_info_is_json_safe_and_says_where_the_data_was_found(fake):
    _, root = fake
    info = _load(fake, standardize=True, resolution=7).info
    json.dumps(info, allow_nan=False)
    assert info["source"]["place"] == "data_dir" and info["source"]["folder"] == str(root / "fake")
    assert info["checksum_status"] == "ok" and info["resolution"] == 7


def test_load_dataset_takes_a_config_or_a_name_and_rejects_unknown_names():
    ds = load_dataset("xor")
    assert ds.name == "xor" and ds.n_classes == 2
    with pytest.raises(ReglabError) as e:
        load_dataset("cifar10")
    assert "cifar10" in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------
# the real datasets (REGLAB_DATA_DIR)

@pytest.fixture(scope="module")
def mnist(data_dir):
    return load_dataset(DataConfig(name="mnist", train_on_all=True), data_dir=data_dir, download=False)


@pytest.mark.slow
def test_real_mnist_has_the_published_class_counts_and_50000_10000_10000_splits(data_dir, mnist):
    ds = load_dataset("mnist", data_dir=data_dir, download=False)
    assert ds.info["split_sizes"] == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert [a + b for a, b in zip(ds.info["class_counts"]["train"], ds.info["class_counts"]["val"])] \
        == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS  # train_on_all: the official 60,000
    assert torch.bincount(ds.y_test).tolist() == MNIST_TEST_COUNTS
    torch.testing.assert_close(mnist.x_train[50_000:], ds.x_val, rtol=0, atol=0)
    assert ds.info["checksum_status"] == "ok" and ds.info["source"]["place"] == "data_dir"
    assert all(r["checked"] == ["md5", "sha256"] for r in ds.info["checksums"].values())


@pytest.mark.slow
def test_real_mnist_pixels_have_the_published_mean_and_std(mnist):
    pixels = mnist.x_train.double()
    assert float(pixels.mean()) * 255 == pytest.approx(33.318, abs=5e-4)
    assert float(pixels.mean()) == pytest.approx(0.1307, abs=5e-5)
    assert float(pixels.std()) == pytest.approx(0.3081, abs=5e-5)
    assert float(pixels.min()) == 0.0 and float(pixels.max()) == 1.0


@pytest.mark.slow
def test_real_mnist_at_7x7_is_the_4x4_mean_of_the_28x28_images(data_dir, mnist):
    small = load_dataset(DataConfig(name="mnist", resolution=7, train_on_all=True), data_dir=data_dir,
                         download=False)
    assert small.x_train.shape == (60_000, 49) and small.x_test.shape == (10_000, 49)
    reference = F.avg_pool2d(mnist.x_test.reshape(-1, 1, 28, 28), kernel_size=4).reshape(-1, 49)
    torch.testing.assert_close(small.x_test, reference, rtol=0, atol=1e-6)
    assert float(small.x_train.double().mean()) == pytest.approx(0.1307, abs=5e-5)  # pooling keeps the mean


@pytest.mark.slow
def test_real_fashion_mnist_has_6000_and_1000_images_per_class(data_dir):
    ds = load_dataset(DataConfig(name="fashion-mnist", train_on_all=True), data_dir=data_dir, download=False)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.info["checksum_status"] == "ok"
    assert all(r["checked"] == ["md5"] for r in ds.info["checksums"].values())


@pytest.mark.slow
def test_a_corrupted_real_file_is_refused_unless_the_mismatch_is_allowed(data_dir, tmp_path):
    shutil.copytree(data_dir / "mnist", tmp_path / "mnist")
    labels_path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels = np.frombuffer(gzip.decompress(labels_path.read_bytes()), dtype=np.uint8, offset=8).copy()
    labels[0] = (labels[0] + 1) % 10
    labels_path.write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(ReglabError) as e:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert_clean_error(e, str(labels_path), "checksum mismatch", "--allow-checksum-mismatch")
    ds = load_dataset("mnist", data_dir=tmp_path, download=False, allow_checksum_mismatch=True)
    assert ds.info["checksum_status"] == "override"
    assert ds.info["checksums"]["t10k-labels-idx1-ubyte"]["status"] == "override"
    assert ds.info["checksums"]["t10k-images-idx3-ubyte"]["status"] == "ok"
