"""TensorBoard event files: read back with tensorboard's own EventAccumulator, checked against the CSVs.

Scalars are written as TensorBoard's classic float32 ``simple_value``, the only kind its default
(fast, Rust) loader shows; the checks compare them with the CSV values rounded to float32.

The reference is the run directory's files read with the csv module; the event files are read
with tensorboard's reader, not with anything of reglab's.
"""

from __future__ import annotations

import csv
import math
import shutil
import sys

import numpy as np
import pytest
import torch

from reglab.cli import main
from reglab.config import to_toml
from reglab.results import read_json
from reglab.study import presets

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'reglab[tensorboard]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from .conftest import pointcloud_config, write_synthetic_run  # noqa: E402


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    """A pointcloud smoke study (2 seeds, 3 epochs) run by `reglab run --tensorboard`."""
    out = tmp_path_factory.mktemp("tb") / "run"
    threads = torch.get_num_threads()
    try:
        assert main(["run", "pointcloud", "--smoke", "--seeds", "2", "--set", "n_epochs=3", "--tensorboard",
                     "--threads", "1", "--out", str(out), "--quiet", "--no-report"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _events(run_dir, method, seed) -> EventAccumulator:
    runs = list((run_dir / "tensorboard" / method / f"seed-{seed}").glob("events.out.tfevents.*"))
    assert len(runs) == 1, runs  # one event file per variant: a rewrite replaces, never appends
    acc = EventAccumulator(str(runs[0].parent), size_guidance={"scalars": 0, "tensors": 0, "histograms": 0})
    acc.Reload()
    return acc


def _series(acc: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def _f32(cell: str) -> float:
    """TensorBoard scalars are float32: the CSV's float64 value rounded so."""
    return float(np.float32(float(cell)))


def _csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_against_csvs(run_dir) -> None:
    variants = read_json(run_dir / "variants.json")
    epochs, iters = _csv(run_dir / "metrics_epoch.csv"), _csv(run_dir / "metrics_iter.csv")
    metrics = [c for c in epochs[0] if c not in ("epoch", "variant", "method", "seed", "active", "diverged")]
    assert {"train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error", "lr",
            "sparsity"} <= set(metrics)
    for v in variants:
        acc = _events(run_dir, v["method"], v["seed"])
        for col in metrics:
            expected = {int(r["epoch"]): _f32(r[col]) for r in epochs
                        if int(r["variant"]) == v["variant"] and math.isfinite(float(r[col]))}
            assert _series(acc, f"epoch/{col}") == expected, (v["method"], v["seed"], col)
        for col in ("loss", "loss_data", "loss_penalty"):
            expected = {int(r["step"]): _f32(r[col]) for r in iters
                        if int(r["variant"]) == v["variant"] and math.isfinite(float(r[col]))}
            assert expected and _series(acc, f"iteration/{col}") == expected, (v["method"], v["seed"], col)
        assert str(v["seed"]) in acc.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()


def test_run_tensorboard_writes_one_run_per_variant_holding_the_csv_values(tb_run):
    names = sorted(f"{p.parent.name}/{p.name}" for p in (tb_run / "tensorboard").glob("*/seed-*"))
    assert names == sorted(f"{m}/seed-{s}" for m in ("no_penalty", "l1", "l2", "early_stopping") for s in (0, 1))
    _check_against_csvs(tb_run)
    assert "--tensorboard" in read_json(tb_run / "manifest.json")["command"]
    assert read_json(tb_run / "config.json")["tensorboard"] is True


def test_the_weight_histogram_counts_every_final_weight(tb_run):
    with np.load(tb_run / "analysis.npz") as z:
        hist = z["weight_hist"]
    cfg = read_json(tb_run / "config.json")
    sizes = [2, *cfg["hidden"], 2]
    n_weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    for v in read_json(tb_run / "variants.json"):
        (h,) = _events(tb_run, v["method"], v["seed"]).Histograms("weights/abs")
        assert h.step == 3 and h.histogram_value.num == n_weights
        assert list(h.histogram_value.bucket) == hist[v["variant"]].tolist()


def test_report_tensorboard_writes_them_after_the_fact_and_a_rebuild_replaces_them(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # synthetic run: early stopping and a diverged variant leave NaN rows, which are left out
    write_synthetic_run(run_dir, pointcloud_config(n_epochs=14, seeds=(0, 1)), steps_per_epoch=5,
                        diverge=("l1", 1), with_epoch_times=False)
    for _ in range(2):
        assert main(["report", str(run_dir), "--tensorboard"]) == 0
        assert f"tensorboard --logdir {run_dir / 'tensorboard'}" in capsys.readouterr().err
    _check_against_csvs(run_dir)
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".tensorboard")]  # no temp folders left
    assert len(_series(_events(run_dir, "l1", 1), "epoch/val_error")) == 2  # diverged in epoch 3


def test_a_toml_study_with_tensorboard_true_writes_them(tmp_path):
    cfg = presets.get("pointcloud", smoke=True, seeds=1).replace(n_epochs=1, tensorboard=True)
    (tmp_path / "study.toml").write_text(to_toml(cfg))
    out = tmp_path / "run"
    assert main(["run", "--config", str(tmp_path / "study.toml"), "--threads", "1", "--out", str(out),
                 "--quiet", "--no-report"]) == 0
    assert len(list((out / "tensorboard").glob("*/seed-0/events.out.tfevents.*"))) == 4


@pytest.mark.parametrize("argv", [["run", "pointcloud", "--smoke", "--tensorboard", "--quiet"],
                                  ["report", "RUN", "--tensorboard"]])
def test_without_tensorboard_the_flag_is_one_line_with_the_install_command(tb_run, tmp_path, capsys, monkeypatch,
                                                                           argv):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if the package were not installed
    run_copy = tmp_path / "run"
    shutil.copytree(tb_run, run_copy)
    shutil.rmtree(run_copy / "tensorboard")
    argv = [str(run_copy) if a == "RUN" else a for a in argv] + (["--out", str(tmp_path / "new")] if "run" in argv
                                                                  else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("reglab: TensorBoard event files need the tensorboard package, which is not installed. "
                   "Fix: pip install 'reglab[tensorboard]' (in a clone: pip install -e '.[tensorboard]'), "
                   "or drop --tensorboard / tensorboard = true.")
    assert not (tmp_path / "new").exists() and not (run_copy / "tensorboard").exists()


def test_report_parquet_writes_the_three_tables_or_says_how_to_install_pyarrow(tb_run, tmp_path, capsys,
                                                                               monkeypatch):
    pytest.importorskip("pyarrow")
    import pandas as pd

    import reglab
    run_copy = tmp_path / "run"
    shutil.copytree(tb_run, run_copy)
    assert main(["report", str(run_copy), "--parquet"]) == 0
    run = reglab.load_run(run_copy)
    for table in ("epochs", "iterations", "summary"):
        pd.testing.assert_frame_equal(pd.read_parquet(run_copy / "parquet" / f"{table}.parquet"),
                                      getattr(run, table), check_dtype=False)
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["report", str(run_copy), "--parquet"]) == 2
    assert capsys.readouterr().err.strip() == ("reglab: writing Parquet needs the pyarrow package, which is not "
                                               "installed. Fix: pip install 'reglab[parquet]' (in a clone: "
                                               "pip install -e '.[parquet]').")
