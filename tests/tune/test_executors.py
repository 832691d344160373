"""Executors: shards through a local Ray instance equal the in-process results; dead workers are handled.

One Ray session (2 CPUs, no dashboard) is shared by the whole module: starting Ray
takes seconds. Task functions defined inside a test are closures, which Ray ships
by value to its workers, so a test can make a worker die mid-task.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import ray

from reglab.config import load_toml
from reglab.results import load_run, read_json
from reglab.tune.executors import LocalExecutor, RayExecutor, merge_records, split_study, train_chunk
from reglab.tune.search import tune

from .helpers import tiny_study, trials_without_wall_time

# one local Ray cluster at a time: both Ray modules run in the same test worker (scripts/test.sh)
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def pair(study):
    """A method without and one with dropout (dropout masks are the randomness most easily broken)."""
    return study.replace(methods=(study.methods[0], study.methods[2]))


def _tune(cfg, dataset, out, executor, **kw):
    return tune(cfg, dataset, out_dir=out, n_trials=2, batch_trials=2, seeds_per_trial=2, executor=executor, **kw)


@pytest.mark.slow
def test_a_tune_through_ray_equals_the_local_tune(ray_session, pair, dataset, tmp_path):
    local = _tune(pair, dataset, tmp_path / "local", LocalExecutor(threads=1))
    remote = _tune(pair, dataset, tmp_path / "ray", RayExecutor(threads=1), shard_by=("method", "seed"))
    assert trials_without_wall_time(tmp_path / "ray") == trials_without_wall_time(tmp_path / "local")
    assert remote.tuned == local.tuned == load_toml(tmp_path / "ray" / "tuned.toml")
    assert read_json(tmp_path / "ray" / "tune.json")["executor"]["name"] == "ray"
    assert ray.is_initialized()  # the executor did not stop a Ray session it did not start


@pytest.mark.slow
def test_a_multi_seed_study_through_ray_equals_one_local_batched_model(ray_session, study, dataset, tmp_path):
    from reglab.tune.executors import run_study_sharded

    assert len(split_study(study, ("seed",))) == len(study.seeds)
    run_study_sharded(study, dataset, RayExecutor(threads=1), out_dir=tmp_path / "ray", shard_by=("seed",))
    run_study_sharded(study, dataset, LocalExecutor(threads=1), out_dir=tmp_path / "local", shard_by=())
    by_ray, alone = load_run(tmp_path / "ray"), load_run(tmp_path / "local")
    assert by_ray.complete and alone.complete
    assert by_ray.variants == alone.variants
    timeless = [k for k in alone.epoch_rows if not k.endswith("time_s")]
    for k in timeless:
        np.testing.assert_array_equal(by_ray.epoch_rows[k], alone.epoch_rows[k], err_msg=k)
    for k in alone.iter_rows:
        np.testing.assert_array_equal(by_ray.iter_rows[k], alone.iter_rows[k], err_msg=k)
    def timeless_rows(run):
        return [{k: v for k, v in row.items() if not k.endswith("time_s")} for row in run.summary["variants"]]

    assert timeless_rows(by_ray) == timeless_rows(alone)
    for k in alone.analysis:
        np.testing.assert_array_equal(by_ray.analysis[k], alone.analysis[k], err_msg=k)


def test_shards_merged_in_variant_order_equal_one_batched_model_of_the_whole_study(study, dataset):
    parts = split_study(study, ("method", "seed"))
    assert len(parts) == study.n_variants
    local = LocalExecutor(threads=1)
    local.open(dataset)
    steps = local.advance({k: sub for k, sub in parts}, n_epochs=2)
    whole = local.advance({"whole": study}, n_epochs=2)["whole"].records
    merged = merge_records(study, [(sub, steps[k].records) for k, sub in parts])
    assert [r.epoch for r in merged] == [1, 2]
    for rec, ref in zip(merged, whole):
        np.testing.assert_array_equal(rec.steps, ref.steps)
        np.testing.assert_array_equal(rec.loss_data, ref.loss_data)
        for k in ("val_error", "val_loss", "train_loss", "test_error", "sparsity"):
            np.testing.assert_array_equal(rec.metrics[k], ref.metrics[k], err_msg=k)


@pytest.mark.slow
def test_a_shard_that_finished_early_merges_as_the_engine_reports_stopped_variants(dataset):
    from reglab.config import MethodConfig

    # min_delta 10 nats: nothing after epoch 1 is an improvement, so "es" stops after epoch 2
    es = MethodConfig("es", lr=0.05, early_stopping=True, patience=1, min_delta=10.0, monitor="val_loss")
    cfg = tiny_study(methods=(MethodConfig("l2", lr=0.05, l2=1e-3), es), n_epochs=4)
    parts = split_study(cfg, ("method",))
    local = LocalExecutor(threads=1)
    local.open(dataset)
    steps = local.advance({k: sub for k, sub in parts}, n_epochs=cfg.n_epochs)
    assert len(steps["es"].records) == 2 and steps["es"].done
    whole = local.advance({"whole": cfg}, n_epochs=cfg.n_epochs)["whole"].records
    merged = merge_records(cfg, [(sub, steps[k].records) for k, sub in parts])
    assert len(merged) == len(whole) == 4
    for rec, ref in zip(merged, whole):
        for k in ("val_error", "val_loss", "train_loss", "test_error", "active", "diverged"):
            np.testing.assert_array_equal(rec.metrics[k], ref.metrics[k], err_msg=f"epoch {rec.epoch} {k}")


def test_a_worker_killed_mid_trial_is_retried_and_the_result_is_unchanged(ray_session, pair, dataset, tmp_path):
    marker = tmp_path / "killed-once"

    def dies_once_mid_trial(cfg, ds, state, n_epochs, threads, want_final=False):
        if state is not None and not marker.exists():  # a later chunk: the trial is under way
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return train_chunk(cfg, ds, state, n_epochs, threads, want_final)

    flaky = RayExecutor(threads=1, max_retries=2, task=dies_once_mid_trial)
    _tune(pair, dataset, tmp_path / "flaky", flaky, shard_by=("method",), epochs_per_task=1)
    _tune(pair, dataset, tmp_path / "local", LocalExecutor(threads=1))
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert trials_without_wall_time(tmp_path / "flaky") == trials_without_wall_time(tmp_path / "local")
    assert read_json(tmp_path / "flaky" / "tune.json")["failed"] == []


@pytest.mark.slow
def test_a_shard_whose_worker_keeps_dying_fails_its_trials_and_the_sweep_completes(ray_session, pair, dataset,
                                                                                    tmp_path):
    def l2_always_dies(cfg, ds, state, n_epochs, threads, want_final=False):
        if cfg.methods[0].name.startswith("l2#"):
            os._exit(1)
        return train_chunk(cfg, ds, state, n_epochs, threads, want_final)

    out = tmp_path / "dying"
    result = _tune(pair, dataset, out, RayExecutor(threads=1, max_retries=1, task=l2_always_dies),
                   shard_by=("method",))
    meta = read_json(out / "tune.json")
    assert meta["status"] == "complete"
    assert [(f["method"], f["trial"]) for f in meta["failed"]] == [("l2", 0), ("l2", 1)]
    assert all("worker died" in f["error"] for f in meta["failed"])
    assert result.methods["l2"]["n_failed"] == 2 and not result.methods["l2"]["tuned"]
    assert result.methods["dropout+l2"]["n_complete"] == 2
    tuned = load_toml(out / "tuned.toml")
    assert tuned.methods[0] == pair.methods[0]  # no completed trial: the preset's values are kept
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert {t["state"] for t in trials if t["method"] == "l2"} == {"failed"}


@pytest.mark.slow
def test_an_exception_in_a_task_is_not_retried_and_is_reported_in_one_line(ray_session, pair, dataset, tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()

    def raises(cfg, ds, state, n_epochs, threads, want_final=False):
        (calls / f"{os.getpid()}-{len(list(calls.iterdir()))}").touch()
        raise ValueError("bad shard\nsecond line")

    executor = RayExecutor(threads=1, max_retries=3, task=raises)
    executor.open(dataset)
    steps = executor.advance({"only": dataclasses.replace(pair, seeds=(0,))}, n_epochs=1)
    executor.close()
    assert steps["only"].error == "the task raised ValueError: second line"
    assert len(list(calls.iterdir())) == 1


@pytest.mark.slow
def test_the_command_line_tune_through_ray_equals_the_local_one(ray_session, tmp_path, capsys):
    from reglab.cli import main

    common = ["tune", "pointcloud", "--smoke", "--methods", "l2,early_stopping", "--threads", "1", "--quiet"]
    assert main(common + ["--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    assert main(common + ["--out", str(tmp_path / "local")]) == 0
    assert trials_without_wall_time(tmp_path / "ray") == trials_without_wall_time(tmp_path / "local")
    assert (tmp_path / "ray" / "tuned.toml").read_text() == (tmp_path / "local" / "tuned.toml").read_text()


# ----------------------------------------------------------------------------
# one run sequence: `reglab run`, the in-process executor and Ray give the same summary.json

def _with_early_stopping(study):
    """A method that stops early (patience 1; no epoch improves by min_delta 0.5) beside one that trains on."""
    from reglab.config import MethodConfig

    stopper = MethodConfig("early_stopping", lr=0.05, early_stopping=True, patience=1, min_delta=0.5)
    return study.replace(n_epochs=8, methods=(study.methods[0], stopper))


def _timeless_summary(run_dir) -> dict:
    """summary.json as written (NaN as "nan"), without the wall-clock columns (the only ones that differ)."""
    def drop(obj):
        if isinstance(obj, dict):
            return {k: drop(v) for k, v in obj.items() if "time_s" not in k}
        if isinstance(obj, list):
            return [drop(v) for v in obj]
        return obj
    return drop(json.loads((run_dir / "summary.json").read_text()))


def _reglab_run(cfg, out):
    from reglab.study.runner import run_study
    return run_study(cfg, out_dir=out, quiet=True, time_methods=False, report=False)


def test_a_study_with_early_stopping_gets_the_same_summary_from_reglab_run_and_the_in_process_executor(
        study, dataset, tmp_path):
    from reglab.tune.executors import run_study_sharded

    cfg = _with_early_stopping(study)
    _reglab_run(cfg, tmp_path / "run")
    run_study_sharded(cfg, dataset, LocalExecutor(threads=1), out_dir=tmp_path / "local", shard_by=("seed",))
    by_run = _timeless_summary(tmp_path / "run")
    stopped = [v for v in by_run["variants"] if v["method"] == "early_stopping" and (v["stop_epoch"] or cfg.n_epochs) < cfg.n_epochs]
    assert stopped, "no variant stopped early: the test would not cover the NaN epochs after a stop"
    assert all(isinstance(v["last_val_error"], float) for v in stopped)   # its last sound epoch, not NaN
    assert _timeless_summary(tmp_path / "local") == by_run
    assert load_run(tmp_path / "local").complete


@pytest.mark.slow
def test_a_study_with_early_stopping_gets_the_same_summary_through_ray(ray_session, study, dataset, tmp_path):
    from reglab.tune.executors import run_study_sharded

    cfg = _with_early_stopping(study)
    _reglab_run(cfg, tmp_path / "run")
    run_study_sharded(cfg, dataset, RayExecutor(threads=1), out_dir=tmp_path / "ray", shard_by=("method", "seed"))
    assert _timeless_summary(tmp_path / "ray") == _timeless_summary(tmp_path / "run")
