"""The run-directory format: atomic writes, lock, shards, reader errors."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from reglab.errors import ReglabError
from reglab.results import (RunLock, RunWriter, atomic_write_json, load_run, read_csv_columns,
                            read_json, rows_to_csv)


def _write_minimal_run(d, status="running"):
    w = RunWriter(d)
    w.write_json("config.json", {"name": "t"})
    w.write_json("variants.json", [{"variant": 0, "method": "l2", "seed": 0, "hyperparameters": {}}])
    w.update_manifest(study="t", status=status)
    return w


def test_json_round_trips_nan_and_inf(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": math.nan, "y": [math.inf, -math.inf, 1.5]})
    back = read_json(tmp_path / "a.json")
    assert math.isnan(back["x"]) and back["y"] == [math.inf, -math.inf, 1.5]
    json.loads((tmp_path / "a.json").read_text())  # strict JSON, no bare NaN


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"k": 1})
    atomic_write_json(tmp_path / "a.json", {"k": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert read_json(tmp_path / "a.json") == {"k": 2}


def test_csv_floats_read_back_bit_identical(tmp_path):
    vals = np.random.default_rng(0).standard_normal(50)
    rows = [{"i": i, "x": float(v), "flag": bool(i % 2)} for i, v in enumerate(vals)]
    (tmp_path / "m.csv").write_text(rows_to_csv(rows))
    cols = read_csv_columns([tmp_path / "m.csv"])
    assert np.array_equal(cols["x"], vals)
    assert cols["i"].tolist() == list(range(50))


_HOLDER = ("import sys, time; from reglab.results import RunLock\n"
           "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)")


def test_lock_refuses_a_second_live_owner_and_is_free_once_the_owner_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ReglabError, match=f"in use by another reglab process \\({holder.pid} "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, the kernel drops the flock
        holder.wait()
    assert (tmp_path / ".lock").read_text().startswith(f"{holder.pid} ")
    with RunLock(tmp_path):  # the owner is dead now: the stale lock is taken over
        assert (tmp_path / ".lock").read_text().startswith(f"{os.getpid()} ")
    assert not (tmp_path / ".lock").exists()


def test_a_lock_file_naming_a_live_process_that_holds_no_lock_is_taken_over(tmp_path):
    # a killed run's pid reused by an unrelated process must not block --resume forever
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".lock").write_text(f"{other.pid} {os.uname().nodename}\n")
        with RunLock(tmp_path):
            assert (tmp_path / ".lock").read_text().startswith(f"{os.getpid()} ")
    finally:
        other.kill()
        other.wait()


def test_resumed_epoch_overwrites_its_shards_and_later_ones_are_dropped(tmp_path):
    w = _write_minimal_run(tmp_path)
    for e in (1, 2, 3):
        w.write_epoch(e, [{"epoch": e, "variant": 0, "val_error": 0.1 * e}],
                      [{"step": e, "epoch": e, "variant": 0, "loss_data": 1.0}])
    w.drop_epochs_after(1)
    w.write_epoch(2, [{"epoch": 2, "variant": 0, "val_error": 0.5}],
                  [{"step": 2, "epoch": 2, "variant": 0, "loss_data": 1.0}])
    run = load_run(tmp_path)
    assert run.epoch_rows["epoch"].tolist() == [1, 2]
    assert run.epoch_rows["val_error"].tolist() == [0.1, 0.5]
    assert not run.complete


def test_finalized_run_reads_consolidated_files_after_shards_are_removed(tmp_path):
    w = _write_minimal_run(tmp_path)
    for e in (1, 2):
        w.write_epoch(e, [{"epoch": e, "variant": 0, "val_error": 0.25}],
                      [{"step": e, "epoch": e, "variant": 0, "loss_data": 2.0}])
    w.finalize()
    w.update_manifest(status="complete")
    w.remove_shards()
    run = load_run(tmp_path)
    assert run.complete and run.epoch_rows["epoch"].tolist() == [1, 2]
    assert run.iter_rows["loss_data"].tolist() == [2.0, 2.0]
    assert "metrics_epoch.csv" in run.manifest["files"] or (tmp_path / "metrics_epoch.csv").exists()


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("foreign", "not a reglab run directory"),
    ("bad_manifest", "not valid JSON"),
])
def test_reader_rejects_bad_directories_in_one_line(tmp_path, case, message):
    d = tmp_path / "run"
    if case != "missing":
        d.mkdir()
    if case == "foreign":
        (d / "notes.txt").write_text("hello")
    if case == "bad_manifest":
        (d / "manifest.json").write_text("{not json")
    with pytest.raises(ReglabError, match=message) as e:
        load_run(d)
    assert "\n" not in str(e.value)


def test_atomic_files_get_ordinary_permissions(tmp_path):
    atomic_write_json(tmp_path / "a.json", {})
    old = os.umask(0)
    os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~old


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT", "EFBIG"])
def test_a_full_disk_quota_or_file_size_limit_names_the_file_and_the_fix(tmp_path, monkeypatch, code):
    import errno
    atomic_write_json(tmp_path / "a.json", {"k": 1})

    def full(fd):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ReglabError) as e:
        atomic_write_json(tmp_path / "a.json", {"k": 2})
    msg = str(e.value)
    assert msg.startswith(f"cannot write {tmp_path / 'a.json'}: {os.strerror(getattr(errno, code))}; "
                          "the files written before it are intact. Fix: free space")
    assert "reglab run --resume RUN_DIR" in msg
    assert read_json(tmp_path / "a.json") == {"k": 1}  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # and no temp file stays


def test_a_metrics_cell_damaged_into_text_is_one_clear_error_not_garbage(tmp_path):
    w = _write_minimal_run(tmp_path)
    w.write_epoch(1, [{"epoch": 1, "variant": 0, "method": "l2", "val_error": 0.25}],
                  [{"step": 1, "epoch": 1, "variant": 0, "loss_data": 2.0}])
    shard = tmp_path / "metrics" / "epoch-00001.csv"
    shard.write_text(shard.read_text().replace("0.25", "0.2r"))
    with pytest.raises(ReglabError, match=r"has '0.2r' in column 'val_error', which holds numbers"):
        load_run(tmp_path)


def test_a_run_keeps_the_columns_of_its_first_shard_when_a_newer_reglab_records_more(tmp_path):
    w = RunWriter(tmp_path)
    old = [{"epoch": 1, "variant": 0, "val_loss": 0.5}]
    w.write_epoch(1, old, [{"step": 1, "loss": 0.7}])
    newer = [{"epoch": 2, "variant": 0, "val_loss": 0.4, "weight_norm": 3.0}]   # a metric added since
    w.write_epoch(2, newer, [{"step": 2, "loss": 0.6}])
    cols = read_csv_columns(sorted((tmp_path / "metrics").glob("epoch-*.csv")))   # one table, no mixed headers
    assert list(cols) == ["epoch", "variant", "val_loss"] and cols["val_loss"].tolist() == [0.5, 0.4]
    fresh = RunWriter(tmp_path / "fresh")
    fresh.write_epoch(1, newer, [{"step": 1, "loss": 0.6}])
    assert "weight_norm" in read_csv_columns([tmp_path / "fresh" / "metrics" / "epoch-00001.csv"])
