"""Tables through the one door: readers (pandas / pyarrow / NumPy), encoding, split, record."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from reglab.config import DataConfig
from reglab.data import load_dataset
from reglab.data.table import load_table
from reglab.errors import ReglabError


def table_cfg(source="", **kw) -> DataConfig:
    return DataConfig(name="table", source=str(source), **kw)


def small_frame(n_per_class: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3 * n_per_class
    return pd.DataFrame({
        "height": rng.normal(170, 10, n),
        "count": rng.integers(0, 5, n),
        "colour": rng.choice(["red", "green", "blue"], n),
        "flag": rng.random(n) > 0.5,
        "species": np.repeat(["setosa", "virginica", "versicolor"], n_per_class),
    })


def test_a_csv_is_read_with_its_delimiter_and_header_sniffed_and_a_bom_dropped(tmp_path):
    frame = small_frame()
    ref = load_table(table_cfg(), data=(frame, "species"))
    for sep, bom in ((",", False), (";", True), ("\t", False), ("|", True)):
        path = tmp_path / f"t{ord(sep)}.csv"
        text = frame.to_csv(index=False, sep=sep)
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
        ds = load_table(table_cfg(path, target="species"))
        assert ds.info["source"]["delimiter"] == sep and ds.info["source"]["header"] is True
        assert ds.info["checksums"][path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert ds.info["features"] == ref.info["features"]   # the BOM did not rename the first column
        torch.testing.assert_close(ds.x_train, ref.x_train, rtol=1e-5, atol=1e-5)
        assert torch.equal(ds.y_train, ref.y_train)


def test_a_headerless_csv_names_its_columns_by_position(tmp_path):
    path = tmp_path / "nohead.csv"
    rows = [f"{i % 7}.5,{(i * 3) % 11}.25,{i % 2}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    ds = load_table(table_cfg(path, target="2"))
    assert ds.info["source"]["header"] is False
    assert ds.n_features == 2 and ds.n_classes == 2 and ds.info["classes"] == [0, 1]


def test_parquet_npz_csv_and_dataframe_give_the_same_dataset(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    y = np.repeat([3, 7, 9], 20)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)]).assign(y=y)
    frame.to_parquet(tmp_path / "t.parquet")
    np.savez(tmp_path / "t.npz", X=x, y=y)
    frame.to_csv(tmp_path / "t.csv", index=False)
    sets = [load_table(table_cfg(tmp_path / "t.parquet", target="y")),
            load_table(table_cfg(tmp_path / "t.npz")),
            load_table(table_cfg(tmp_path / "t.csv", target="y")),
            load_table(table_cfg(), data=(frame, "y")),
            load_table(table_cfg(), data=(x, y))]
    for ds in sets[1:]:
        torch.testing.assert_close(ds.x_train, sets[0].x_train)
        assert torch.equal(ds.y_test, sets[0].y_test)
        assert ds.info["classes"] == [3, 7, 9]
    # the same values from Python hash the same in any session
    assert load_table(table_cfg(), data=(x, y)).info["checksums"] == sets[4].info["checksums"]


def test_the_split_is_stratified_disjoint_complete_and_set_by_the_data_seed():
    frame = small_frame(n_per_class=40)
    ds = load_table(table_cfg(val_fraction=0.2, test_fraction=0.25), data=(frame, "species"))
    counts = ds.info["class_counts"]
    assert counts["val"] == [8, 8, 8] and counts["test"] == [10, 10, 10] and counts["train"] == [22, 22, 22]
    rows = torch.cat([ds.x_train, ds.x_val, ds.x_test])
    assert torch.unique(rows, dim=0).shape[0] == 120   # every row once
    again = load_table(table_cfg(val_fraction=0.2, test_fraction=0.25), data=(frame, "species"))
    other = load_table(table_cfg(val_fraction=0.2, test_fraction=0.25, data_seed=1), data=(frame, "species"))
    assert torch.equal(again.x_test, ds.x_test) and not torch.equal(other.x_test, ds.x_test)


def test_string_columns_are_one_hot_and_labels_become_sorted_classes():
    frame = small_frame()
    ds = load_table(table_cfg(), data=(frame, "species"))
    assert ds.info["classes"] == ["setosa", "versicolor", "virginica"]
    assert ds.info["features"] == ["height", "count", "colour=blue", "colour=green", "colour=red", "flag"]
    x = torch.cat([ds.x_train, ds.x_val, ds.x_test])
    assert torch.equal(x[:, 2:5].sum(1), torch.ones(60))   # exactly one category per row
    assert ds.info["class_counts_all"] == [20, 20, 20] and ds.info["shape"] == [60, 5]


def test_standardization_uses_the_training_split_alone_and_is_recorded():
    frame = small_frame()
    raw = load_table(table_cfg(), data=(frame, "species"))
    std = load_table(table_cfg(standardize=True), data=(frame, "species"))
    mean, sd = raw.x_train.mean(0), raw.x_train.std(0)
    torch.testing.assert_close(std.x_train, (raw.x_train - mean) / sd)
    torch.testing.assert_close(std.x_test, (raw.x_test - mean) / sd)
    assert std.info["standardize"]["over"] == "each feature of the training split"
    torch.testing.assert_close(torch.tensor(std.info["standardize"]["mean"]), mean)


def test_a_split_column_names_each_rows_split():
    frame = small_frame(n_per_class=10)
    frame["part"] = (["train"] * 6 + ["Validation"] * 2 + ["TEST"] * 2) * 3
    ds = load_table(table_cfg(split_column="part"), data=(frame, "species"))
    assert ds.info["split_sizes"] == {"train": 18, "val": 6, "test": 6}
    assert "part" not in " ".join(ds.info["features"])


def test_missing_values_are_dropped_or_imputed_with_the_training_mean_on_request():
    frame = small_frame()
    frame.loc[[0, 5], "height"] = np.nan
    frame.loc[3, "colour"] = None
    dropped = load_table(table_cfg(missing="drop"), data=(frame, "species"))
    assert dropped.info["dropped_rows"] == 3 and dropped.info["n_rows_used"] == 57
    imputed = load_table(table_cfg(missing="impute"), data=(frame, "species"))
    assert imputed.info["n_rows_used"] == 60 and "colour=<missing>" in imputed.info["features"]
    record = imputed.info["imputed"]["height"]
    assert record["rows"] == 2
    clean = load_table(table_cfg(missing="impute"), data=(frame.dropna(subset=["height"]), "species"))
    assert torch.isfinite(imputed.x_train).all() and torch.isfinite(clean.x_train).all()
    train_heights = imputed.x_train[:, 0]
    # the imputed value is the mean of the training rows that had a height (recomputed independently)
    known = train_heights[train_heights != record["value"]]
    assert abs(float(known.double().mean()) - record["value"]) < 1e-3


@pytest.mark.parametrize("name, n_rows, n_features, n_classes", [
    ("digits", 1797, 64, 10), ("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3), ("iris", 150, 4, 3)])
def test_scikit_learns_bundled_sets_load_by_name(name, n_rows, n_features, n_classes):
    pytest.importorskip("sklearn")
    ds = load_dataset(table_cfg(f"sklearn:{name}"))
    assert ds.info["shape"] == [n_rows, n_features + 1]
    assert ds.n_features == n_features and ds.n_classes == n_classes
    assert sum(ds.info["split_sizes"].values()) == n_rows


def test_a_missing_scikit_learn_names_the_install_command(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_sklearn(name, *a, **k):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ReglabError, match=r"pip install 'reglab\[sklearn\]'"):
        load_table(table_cfg("sklearn:digits"))
