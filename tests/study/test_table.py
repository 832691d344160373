"""The table study end to end: `reglab run table`, `reglab tune table` -> tuned.toml -> `reglab run --config`,
a DataFrame from Python, scikit-learn's digits, the data-size preset on a table; sizing rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import reglab
from reglab.cli import main
from reglab.config import DataConfig, load_toml
from reglab.data.table import load_table
from reglab.results import read_json
from reglab.study.table import hidden_width, table_batch_size, table_study


def made_table(n_per_class: int = 40, seed: int = 0) -> pd.DataFrame:
    """Three classes separated along two numeric features, plus a string feature."""
    rng = np.random.default_rng(seed)
    centres = {"a": (0, 0), "b": (3, 0), "c": (0, 3)}
    parts = []
    for label, (cx, cy) in centres.items():
        parts.append(pd.DataFrame({"u": rng.normal(cx, 1, n_per_class), "v": rng.normal(cy, 1, n_per_class),
                                   "shop": rng.choice(["north", "south"], n_per_class), "label": label}))
    return pd.concat(parts, ignore_index=True).sample(frac=1, random_state=seed).reset_index(drop=True)


def run_cli(argv, tmp_path, monkeypatch) -> int:
    monkeypatch.chdir(tmp_path)
    return main(argv + ["--threads", "1", "--quiet"])


def test_the_net_and_batch_follow_the_documented_rules():
    assert hidden_width(64, 10) == 128 and hidden_width(30, 2) == 64 and hidden_width(4, 3) == 32
    assert hidden_width(1000, 10) == 512
    assert table_batch_size(397) == 20 and table_batch_size(50_000) == 100
    frame = made_table()
    data = DataConfig(name="table", standardize=True)
    cfg = table_study(data, load_table(data, data=(frame, "label")))
    assert [m.name for m in cfg.methods] == ["none", "early_stopping", "l2", "l2+l1_late", "l2+kl", "max_norm",
                                             "dropout+l2", "dropout+max_norm"]
    assert cfg.hidden == (32, 32) and cfg.n_epochs * -(-84 // cfg.batch_size) >= 2000


def test_a_csv_runs_through_run_table_and_tune_table_then_run_config(tmp_path, monkeypatch):
    path = tmp_path / "shops.csv"
    made_table().to_csv(path, index=False, sep=";")
    assert run_cli(["run", "table", "--data", str(path), "--target", "label", "--smoke", "--out", "r1"],
                   tmp_path, monkeypatch) == 0
    info = read_json(tmp_path / "r1" / "dataset.json")["info"]
    assert info["classes"] == ["a", "b", "c"] and info["shape"] == [120, 4]
    assert info["features"] == ["u", "v", "shop=north", "shop=south"]
    assert read_json(tmp_path / "r1" / "manifest.json")["status"] == "complete"

    assert run_cli(["tune", "table", "--data", str(path), "--target", "label", "--smoke", "--trials", "1",
                    "--methods", "none,dropout+l2", "--out", "t1"], tmp_path, monkeypatch) == 0
    tuned = load_toml(tmp_path / "t1" / "tuned.toml")
    assert tuned.data.name == "table" and tuned.data.source == str(path.resolve())
    assert run_cli(["run", "--config", str(tmp_path / "t1" / "tuned.toml"), "--out", "r2"],
                   tmp_path, monkeypatch) == 0
    assert read_json(tmp_path / "r2" / "dataset.json")["info"]["checksums"] == info["checksums"]


def test_a_dataframe_runs_through_run_study_and_the_tuner_like_its_csv(tmp_path):
    frame = made_table()
    cfg = reglab.table_study(data=(frame, "label"), smoke=True)
    run = reglab.run_study(cfg, data=(frame, "label"), out_dir=tmp_path / "py", quiet=True, report=False,
                           time_methods=False)
    assert set(run.summary["method"]) == {m.name for m in cfg.methods}
    info = read_json(tmp_path / "py" / "dataset.json")["info"]
    assert info["source"]["kind"] == "python" and info["classes"] == ["a", "b", "c"]

    from reglab.tune.search import tune
    dataset = load_table(cfg.data, data=(frame, "label"))
    result_dir = tmp_path / "tune"
    tune(cfg.replace(methods=cfg.methods[:2]), dataset, out_dir=result_dir, n_trials=1)
    assert (result_dir / "tuned.toml").exists()


def test_sklearn_digits_runs_through_run_table_and_tune_table(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    assert run_cli(["run", "table", "--data", "sklearn:digits", "--smoke", "--seeds", "1", "--out", "d1",
                    "--no-report"], tmp_path, monkeypatch) == 0
    summary = read_json(tmp_path / "d1" / "summary.json")
    assert len(summary["variants"]) == 8
    assert run_cli(["tune", "table", "--data", "sklearn:digits", "--smoke", "--trials", "1",
                    "--methods", "l2", "--out", "dt"], tmp_path, monkeypatch) == 0
    assert load_toml(tmp_path / "dt" / "tuned.toml").data.source == "sklearn:digits"


def test_the_datasize_preset_runs_on_a_table_with_sizes_it_holds(tmp_path, monkeypatch):
    path = tmp_path / "shops.parquet"
    made_table(n_per_class=60).to_parquet(path)
    assert run_cli(["run", "table", "--data", str(path), "--target", "label", "--preset", "datasize", "--smoke",
                    "--out", "ds", "--no-report"], tmp_path, monkeypatch) == 0
    meta = read_json(tmp_path / "ds" / "datasize.json")
    assert meta["status"] == "complete"
    assert [s["n_train"] for s in meta["sizes"]] == [15, 30, 126]   # 5 and 10 per class, then all 42 x 3
