"""The report's numbers: checked against plain numpy on the run's CSV files and textbook t quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reglab import stats
from reglab.report.digest import band, digest
from reglab.results import load_run

from .conftest import mnist_config, pointcloud_config, write_synthetic_run

T_975_DF2 = 4.302652729911275  # two-sided 95% Student-t quantile, 2 degrees of freedom (tables)
T_975_DF1 = 12.706204736174698


def _column(run, variant: int, name: str) -> np.ndarray:
    rows = run.epoch_rows
    sel = rows["variant"] == variant
    return rows[name][sel][np.argsort(rows["epoch"][sel])]


def test_method_statistics_are_the_mean_and_t_interval_of_the_seeds_last_epoch(mnist_run):
    run = load_run(mnist_run)
    d = digest(run)
    for m in d.methods:
        last = np.array([_column(run, v, "test_error")[-1] for v in m.variants])
        s = m.stats["test_error_last"]
        half = T_975_DF2 * last.std(ddof=1) / math.sqrt(3)
        assert s["n"] == 3
        assert s["mean"] == pytest.approx(last.mean(), rel=1e-12)
        assert s["ci95_half_width"] == pytest.approx(half, rel=1e-9)
        train = np.array([_column(run, v, "train_loss")[-1] for v in m.variants])
        assert m.stats["last_train_loss"]["mean"] == pytest.approx(train.mean(), rel=1e-12)


def test_curves_stack_seeds_and_leave_epochs_after_an_early_stop_empty(pointcloud_run):
    run = load_run(pointcloud_run)
    d = digest(run)
    es = next(m for m in d.methods if m.name == "early_stopping")
    assert es.curves["val_error"].shape == (3, 30)
    for k, v in enumerate(es.variants):
        stop = es.finals[k]["stop_epoch"]
        assert 12 <= stop < 30
        assert np.isfinite(es.curves["val_error"][k, :stop]).all()
        assert np.isnan(es.curves["val_error"][k, stop:]).all()
        assert es.finals[k]["epochs_run"] == stop
        np.testing.assert_array_equal(es.curves["val_error"][k, :stop], _column(run, v, "val_error")[:stop])


def test_a_diverged_seed_is_left_out_of_its_methods_statistics_and_named(tmp_path):
    write_synthetic_run(tmp_path, mnist_config(n_epochs=5), steps_per_epoch=5, diverge=("max_norm", 1))
    d = digest(load_run(tmp_path))
    m = next(m for m in d.methods if m.name == "max_norm")
    assert m.stats["test_error"]["n"] == 2 and m.stats["test_error"]["n_excluded"] == 1
    assert any("max_norm: seed(s) 1 diverged" in w for w in d.warnings)
    assert np.isnan(m.curves["val_error"][1, 2:]).all()
    paired = next(p for p in d.paired if p["a"] == "l2" and p["b"] == "max_norm")
    assert paired["test_error"]["n"] == 2


def test_a_partial_run_gets_its_finals_and_comparisons_from_the_epochs_written(tmp_path):
    write_synthetic_run(tmp_path, mnist_config(n_epochs=12), steps_per_epoch=5, epochs_done=4, status="running")
    run = load_run(tmp_path)
    d = digest(run)
    assert not d.complete and d.epochs_done == 4 and d.n_epochs == 12
    for m in d.methods:
        for k, v in enumerate(m.variants):
            val_loss = _column(run, v, "val_loss")  # the default monitor
            best = int(np.argmin(val_loss))
            assert m.finals[k]["best_epoch"] == best + 1
            assert m.finals[k]["test_error_best_val"] == _column(run, v, "test_error")[best]
            assert m.finals[k]["test_error"] == _column(run, v, "test_error")[-1]  # no early stopping
    a, b = d.methods[0], d.methods[5]
    diff = np.array([_column(run, va, "test_error")[-1] - _column(run, vb, "test_error")[-1]
                     for va, vb in zip(a.variants, b.variants)])
    c = next(p for p in d.paired if p["a"] == a.name and p["b"] == b.name)["test_error"]
    half = T_975_DF2 * diff.std(ddof=1) / math.sqrt(3)
    assert c["mean_difference"] == pytest.approx(diff.mean(), rel=1e-12)
    assert c["ci95"] == pytest.approx([diff.mean() - half, diff.mean() + half], rel=1e-9)
    assert c["significant"] == (abs(diff.mean()) > half)


def test_a_complete_run_reads_its_statistics_and_comparisons_from_summary_json(mnist_run):
    run = load_run(mnist_run)
    d = digest(run)
    for m in d.methods:
        assert m.stats["test_error"] == run.summary["methods"][m.name]["stats"]["test_error"]
    stored = {(c["a"], c["b"]): c for c in run.summary["comparisons"] if c["metric"] == "test_error"}
    for p in d.paired:
        assert p["test_error"] is stored[(p["a"], p["b"])]


def test_band_is_the_nan_aware_mean_and_t_interval_per_column():
    x = np.array([[1.0, 2.0, np.nan, 5.0],
                  [3.0, 2.0, 4.0, np.nan],
                  [5.0, 2.0, 6.0, np.nan]])
    mean, lo, hi = band(x)
    np.testing.assert_allclose(mean, [3.0, 2.0, 5.0, 5.0])
    h0 = T_975_DF2 * 2.0 / math.sqrt(3)  # sd of (1, 3, 5) is 2
    h2 = T_975_DF1 * math.sqrt(2.0) / math.sqrt(2)  # sd of (4, 6) is sqrt 2
    np.testing.assert_allclose(hi - mean, [h0, 0.0, h2, 0.0])
    np.testing.assert_allclose(mean - lo, [h0, 0.0, h2, 0.0])
    mean, lo, hi = band(np.full((2, 3), np.nan))
    assert np.isnan(mean).all() and np.isnan(lo).all()


def test_only_mnist_gets_the_papers_table9_values(mnist_run, pointcloud_run):
    assert digest(load_run(mnist_run)).paper == {"l2": 1.62, "l2+l1_late": 1.60, "l2+kl": 1.55, "max_norm": 1.35,
                                                 "dropout+l2": 1.25, "dropout+max_norm": 1.05}
    assert digest(load_run(pointcloud_run)).paper == {}


def test_every_method_keeps_one_colour(mnist_run):
    d = digest(load_run(mnist_run))
    colors = [m.color for m in d.methods]
    assert len(set(colors)) == len(colors)
    assert colors == [m.color for m in digest(load_run(mnist_run)).methods]


def test_late_l1_switches_on_at_its_fraction_of_the_steps(mnist_run):
    d = digest(load_run(mnist_run))
    assert {m.name: m.l1_switch_fraction for m in d.methods if m.l1_switch_fraction} == {"l2+l1_late": 0.75}
    assert d.steps_per_epoch == 40


def test_with_one_seed_no_interval_and_no_comparison_is_claimed(tmp_path):
    write_synthetic_run(tmp_path, pointcloud_config(n_epochs=3, seeds=(4,)), steps_per_epoch=3)
    d = digest(load_run(tmp_path))
    assert [m.name for m in d.methods] == ["none", "l1", "l2", "early_stopping"]
    assert all(m.seeds == [4] and m.stats["test_error"]["ci95"] is None for m in d.methods)
    assert d.paired and all(p["test_error"]["n"] == 1 and p["test_error"]["ci95"] is None for p in d.paired)


def test_a_run_written_before_p_holm_existed_gets_holms_correction_in_the_report(tmp_path):
    from reglab.results import atomic_write_text
    import json
    write_synthetic_run(tmp_path, mnist_config())
    summary = json.loads((tmp_path / "summary.json").read_text())
    for c in summary["comparisons"]:
        c.pop("p_holm"), c.pop("significant_holm")
    atomic_write_text(tmp_path / "summary.json", json.dumps(summary))
    d = digest(load_run(tmp_path))
    raw = [p["test_error"]["p_value"] for p in d.paired]
    assert len(raw) == 15
    assert [p["test_error"]["p_holm"] for p in d.paired] == pytest.approx(stats.holm(raw))


def test_training_time_samples_are_the_timing_repeats_and_old_per_epoch_samples_still_read(tmp_path, mnist_run):
    from reglab.report.digest import median_range
    run = load_run(mnist_run)
    d = digest(run)
    for m in d.methods:
        entry = run.timing["methods_alone"][m.name]
        assert m.time_s == entry["repeats_estimated_alone_s"] and len(m.time_s) == 3
        med, lo, hi = median_range(m.time_s)
        assert med == pytest.approx(entry["estimated_alone_s"])
        assert [lo, hi] == pytest.approx(entry["estimated_alone_s_range"])
    # a timing.json written before repeats existed: one sample per timed epoch
    import json
    from reglab.results import atomic_write_text
    write_synthetic_run(tmp_path, mnist_config(n_epochs=4))
    timing = json.loads((tmp_path / "timing.json").read_text())
    for entry in timing["methods_alone"].values():
        for k in ("repeats", "repeats_estimated_alone_s", "estimated_alone_s_range"):
            entry.pop(k)
    atomic_write_text(tmp_path / "timing.json", json.dumps(timing))
    old = digest(load_run(tmp_path))
    assert all(len(m.time_s) == 4 for m in old.methods)


def test_the_switches_of_late_l1_and_a_step_schedule_are_found_with_their_epochs():
    from reglab.report.digest import schedule_switches
    # 10 steps per epoch, 12 epochs = 120 steps; L1 from step floor(0.75 * 120) + 1 = 91 (epoch 10)
    assert schedule_switches({"l1": 1e-4, "l1_start": 0.75}, 10, 12) == [
        (91, 10, "L1 (λ₁ = 0.0001) switched on at step 91")]
    # lr 0.1 halved every 50 steps: steps 51 (epoch 6) and 101 (epoch 11)
    sw = schedule_switches({"lr": 0.1, "lr_schedule": "step", "lr_decay": 0.5, "lr_decay_steps": 50}, 10, 12)
    assert [(s, e) for s, e, _ in sw] == [(51, 6), (101, 11)]
    assert "learning-rate step to 0.05 at step 51" in sw[0][2]
    assert schedule_switches({"lr": 0.1, "lr_schedule": "exponential", "lr_decay": 0.5}, 10, 12) == []
    assert schedule_switches({"l1": 1e-4, "l1_start": 0.0}, 10, 12) == []


def test_a_validation_error_that_rises_beyond_seed_noise_after_l1_switches_on_is_flagged(mnist_run):
    # the synthetic l2+l1_late's validation error climbs 0.4 pp per epoch after epoch 8; its L1 starts
    # at 0.75 of 12 epochs (epoch 10), so from epoch 9 to 12 it rose ~1.2 pp against ~0.1 pp seed noise
    d = digest(load_run(mnist_run))
    flags = {f["method"]: f for f in d.schedule_flags}
    assert set(flags) == {"l2+l1_late"}
    f = flags["l2+l1_late"]
    assert f["epoch"] == 10 and f["before_epoch"] == 9 and f["after_epoch"] == 12 and "L1" in f["switch"]
    m = next(x for x in d.methods if x.name == "l2+l1_late")
    val = m.curves["val_error"]
    assert f["rise"] == pytest.approx(float(np.mean(val[:, 11] - val[:, 8])))
    assert f["noise"] == pytest.approx(float(np.std(val[:, 8], ddof=1))) and f["rise"] > f["noise"]


def test_a_switch_after_which_validation_error_stays_within_seed_noise_is_not_flagged(tmp_path):
    import dataclasses
    cfg = mnist_config()
    quiet = tuple(dataclasses.replace(m, l1=1e-5, l1_start=0.75) if m.name == "l2" else m for m in cfg.methods)
    write_synthetic_run(tmp_path, cfg.replace(methods=quiet))   # l2's curve keeps falling after its switch
    d = digest(load_run(tmp_path))
    assert "l2" not in {f["method"] for f in d.schedule_flags}
    assert any(f["method"] == "l2+l1_late" for f in d.schedule_flags)


def test_the_report_names_the_method_and_the_switch_that_hurt_it(mnist_report):
    page = mnist_report.read_text()
    assert "Schedule switch hurt l2+l1_late: after L1 (λ₁ = 1e-05) switched on at step" in page
