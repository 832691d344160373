"""reglab.load_run / load_runs: DataFrames that hold exactly what the run directory's files hold.

The reference is the files themselves, read with the csv and json modules (not reglab's reader).
"""

import csv
import json
import math
import sys

import pandas as pd
import pytest

import reglab
from reglab.errors import ReglabError
from reglab.study import presets, runner


def _smoke_run(path, **changes):
    cfg = presets.get("pointcloud", smoke=True, seeds=2).replace(**{"n_epochs": 3, **changes})
    return runner.run_study(cfg, out_dir=path, quiet=True, time_methods=False, report=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _smoke_run(tmp_path_factory.mktemp("frames") / "run")


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _same(value, cell) -> bool:
    """A DataFrame value against the CSV cell it came from."""
    if isinstance(value, str):
        return value == cell
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value) == bool(int(cell))
    x, y = float(value), float(cell)
    return (math.isnan(x) and math.isnan(y)) or x == y


def test_epochs_hold_every_cell_of_metrics_epoch_csv_with_method_and_seed_first(run_dir):
    df = reglab.load_run(run_dir).epochs
    rows = _csv_rows(run_dir / "metrics_epoch.csv")
    assert list(df.columns[:4]) == ["method", "seed", "epoch", "variant"]
    assert sorted(df.columns) == sorted(rows[0])
    assert len(df) == len(rows) == 4 * 2 * 3  # methods x seeds x epochs
    for record, row in zip(df.to_dict("records"), rows):
        for col, cell in row.items():
            assert _same(record[col], cell), (col, record[col], cell)
    assert df["active"].dtype == bool and df["diverged"].dtype == bool


def test_iterations_carry_each_variants_method_and_seed_from_variants_json(run_dir):
    df = reglab.load_run(run_dir).iterations
    rows = _csv_rows(run_dir / "metrics_iter.csv")
    variants = {v["variant"]: v for v in json.loads((run_dir / "variants.json").read_text())}
    assert list(df.columns) == ["method", "seed", "step", "epoch", "variant", "loss_data", "loss_penalty", "loss"]
    assert len(df) == len(rows)
    for record, row in zip(df.to_dict("records"), rows):
        v = variants[int(row["variant"])]
        assert (record["method"], record["seed"]) == (v["method"], v["seed"])
        for col, cell in row.items():
            assert _same(record[col], cell), (col, record[col], cell)


def test_summary_is_one_row_per_variant_as_summary_json_has_it(run_dir):
    df = reglab.load_run(run_dir).summary
    stored = json.loads((run_dir / "summary.json").read_text())["variants"]
    assert list(df.columns[:4]) == ["method", "seed", "variant", "test_error"]
    assert len(df) == len(stored) == 8
    for record, row in zip(df.to_dict("records"), stored):
        for key, value in row.items():
            got = record[key]
            if value is None:
                assert got is None or (isinstance(got, float) and math.isnan(got))
            elif value in ("nan", "inf", "-inf"):
                assert str(float(got)) == str(float(value))
            else:
                assert got == value, key
    # one line to a per-method table: the mean over seeds equals summary.json's own statistic
    means = df.groupby("method").test_error.mean()
    methods = json.loads((run_dir / "summary.json").read_text())["methods"]
    for name, m in methods.items():
        assert means[name] == pytest.approx(m["stats"]["test_error"]["mean"], rel=1e-12)


def test_a_run_object_is_path_like_and_knows_its_config_and_report(run_dir):
    run = reglab.load_run(run_dir)
    assert run.dir == run_dir and str(run_dir) == __import__("os").fspath(run)
    assert run.complete and run.methods == ["no_penalty", "l1", "l2", "early_stopping"]
    assert run.config["n_epochs"] == 3 and run.report is None  # the fixture built no report
    assert "pointcloud-smoke" in repr(run)


def test_load_runs_stacks_runs_with_a_run_column(run_dir, tmp_path):
    other = _smoke_run(tmp_path / "other", seeds=(5,))
    both = reglab.load_runs([run_dir, other])
    one, two = reglab.load_run(run_dir), reglab.load_run(other)
    for table in ("epochs", "iterations", "summary"):
        df = getattr(both, table)
        assert df.columns[0] == "run"
        assert df["run"].value_counts().to_dict() == {"run": len(getattr(one, table)), "other": len(getattr(two, table))}
        pd.testing.assert_frame_equal(df[df.run == "other"].drop(columns="run").reset_index(drop=True),
                                      getattr(two, table))
    labelled = reglab.load_runs({"a": run_dir, "b": other}).summary
    assert set(labelled.run) == {"a", "b"} and set(labelled[labelled.run == "b"].seed) == {5}


def test_load_runs_labels_runs_of_the_same_folder_name_by_path_and_refuse_an_empty_list(tmp_path, run_dir):
    twin = _smoke_run(tmp_path / "run", n_epochs=1)  # same folder name as the fixture's
    assert set(reglab.load_runs([run_dir, twin]).epochs.run) == {str(run_dir), str(twin)}
    with pytest.raises(ReglabError, match="no run directories"):
        reglab.load_runs([])


def test_parquet_files_read_back_equal_to_the_frames(run_dir, tmp_path):
    pytest.importorskip("pyarrow")
    run = reglab.load_run(run_dir)
    paths = run.to_parquet(tmp_path / "pq")
    assert [p.name for p in paths] == ["epochs.parquet", "iterations.parquet", "summary.parquet"]
    for p in paths:
        pd.testing.assert_frame_equal(pd.read_parquet(p), getattr(run, p.stem), check_dtype=False)


def test_parquet_without_pyarrow_is_one_line_with_the_install_command(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(ReglabError) as e:
        reglab.load_run(run_dir).to_parquet(tmp_path / "pq")
    assert str(e.value) == ("writing Parquet needs the pyarrow package, which is not installed. "
                            "Fix: pip install 'reglab[parquet]' (in a clone: pip install -e '.[parquet]').")
    assert not (tmp_path / "pq").exists()


def test_an_interrupted_run_loads_its_finished_epochs_and_an_empty_summary(tmp_path, monkeypatch):
    save = runner._save_checkpoint

    def die_in_epoch_2(run_dir, trainer, book, cfg):
        if trainer.epoch == 2:
            raise KeyboardInterrupt  # after epoch 2's metric shards are on disk
        save(run_dir, trainer, book, cfg)

    monkeypatch.setattr(runner, "_save_checkpoint", die_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _smoke_run(tmp_path / "cut")
    run = reglab.load_run(tmp_path / "cut")
    assert run.manifest["status"] == "interrupted" and not run.complete
    shards = [r for p in sorted((tmp_path / "cut" / "metrics").glob("epoch-*.csv")) for r in _csv_rows(p)]
    assert len(run.epochs) == len(shards) == 4 * 2 * 2 and set(run.epochs.epoch) == {1, 2}
    assert [r["val_error"] for r in shards] == [repr(x) for x in run.epochs.val_error]
    assert run.summary.empty and list(run.summary.columns) == ["method", "seed", "variant"]
