"""The data-size study: one run directory per size, equal updates, summary and report over the sizes.

A two-moons base keeps it fast and offline; the real engine trains every size.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from reglab.config import DataConfig, MethodConfig, StudyConfig
from reglab.errors import ReglabError
from reglab.results import load_run, read_json
from reglab.stats import holm, paired_comparison
from reglab.study import datasize, runner

METHODS = (MethodConfig("none", lr=0.1), MethodConfig("l2", l2=1e-2, lr=0.1),
           MethodConfig("dropout", dropout_hidden=0.3, lr=0.1))


def _study(**kw) -> datasize.DataSizeStudy:
    # 240 points: 120 training examples (60 per class); sizes 20, 40 and all 120
    base = StudyConfig(name="moons-datasize", data=DataConfig(name="moons", n_points=240, noise=0.3, data_seed=1),
                       hidden=(16,), n_epochs=1, batch_size=20, seeds=(0, 1, 2), methods=METHODS,
                       log_every=1, checkpoint_every=1)
    args = dict(name="moons-datasize", base=base, train_per_class=(10, 20, 0), n_steps=12, epoch_examples=40)
    args.update(kw)
    return datasize.DataSizeStudy(**args)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return datasize.run_datasize(_study(), out_dir=tmp_path_factory.mktemp("ds") / "run", quiet=True)


def test_every_size_is_a_run_directory_with_the_same_number_of_updates(study_dir):
    meta = read_json(study_dir / datasize.DATASIZE_FILE)
    assert meta["status"] == "complete"
    assert [s["n_train"] for s in meta["sizes"]] == [20, 40, 120]
    for s in meta["sizes"]:
        run = load_run(study_dir / s["run"])
        assert run.complete
        assert int(run.iter_rows["step"].max()) == 12                   # equal updates
        assert run.dataset["info"].get("n_train_distinct", run.dataset["n_train"]) == s["n_train"]
        assert np.bincount(np.asarray(run.iter_rows["variant"], dtype=int)).size == 9


def test_a_sizes_own_report_counts_its_distinct_examples_not_the_tiled_epoch(study_dir):
    from reglab.report.digest import digest
    from reglab.report.tables import data_text
    text = data_text(digest(load_run(study_dir / "n00020")))
    assert "20 distinct training (each seen 2 times per epoch, 40 per epoch)" in text


def test_a_size_inside_the_study_trains_exactly_as_that_size_alone(study_dir, tmp_path):
    alone = runner.run_study(_study().size_config(20, 120, 2), out_dir=tmp_path / "alone", quiet=True,
                             time_methods=False, report=False)
    a, b = load_run(alone), load_run(study_dir / "n00040")
    for col in ("val_error", "test_error", "train_loss"):
        assert np.array_equal(a.epoch_rows[col], b.epoch_rows[col], equal_nan=True)


def test_the_summary_pairs_each_method_with_none_by_seed_and_holm_corrects_per_size(study_dir):
    summary = read_json(study_dir / datasize.DATASIZE_SUMMARY)
    assert summary["reference"] == "none" and [s["n_train"] for s in summary["sizes"]] == [20, 40, 120]
    for s in summary["sizes"]:
        rows = read_json(study_dir / s["run"] / "summary.json")["variants"]
        err = {(r["method"], r["seed"]): r["test_error"] for r in rows}
        raw = []
        for g in s["gains"]:
            expected = paired_comparison([err[("none", sd)] for sd in (0, 1, 2)],
                                         [err[(g["method"], sd)] for sd in (0, 1, 2)])
            assert g["mean_difference"] == pytest.approx(expected["mean_difference"])
            raw.append(expected["p_value"])
        assert [g["p_holm"] for g in s["gains"]] == pytest.approx(holm(raw))
        gap = s["methods"]["l2"]["gap"]["values"]
        test = [err[("l2", sd)] for sd in (0, 1, 2)]
        train = [r["train_error_final"] for r in rows if r["method"] == "l2"]
        assert gap == pytest.approx(np.subtract(test, train).tolist())


def test_the_report_holds_the_curves_the_gain_table_and_the_significance_text(study_dir):
    from reglab.report import build_report
    page = build_report(study_dir).read_text()
    for name in ("test_error_vs_size", "gap_vs_size", "gain_vs_size"):
        assert (study_dir / "figures" / f"{name}.png").is_file() and f'id="fig-{name}"' in page
    assert "Gain over no regularization" in page and "n = 120" in page
    assert "Holm-adjusted p &lt; 0.05" in page
    assert "l2: " in page and "dropout: " in page                # one sentence per method
    assert "http://" not in page.replace("http://www.w3.org", "") and "<script" not in page


def test_an_interrupted_study_resumes_the_missing_sizes_only(study_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(study_dir, copy)
    shutil.rmtree(copy / "n00120")
    (copy / datasize.DATASIZE_SUMMARY).unlink()
    kept = (copy / "n00020" / "summary.json").read_bytes()
    datasize.run_datasize(None, out_dir=copy, resume=True, quiet=True, report=False)
    assert (copy / "n00020" / "summary.json").read_bytes() == kept
    assert load_run(copy / "n00120").complete
    assert json.loads((copy / datasize.DATASIZE_SUMMARY).read_text()) == read_json(study_dir / datasize.DATASIZE_SUMMARY)


def test_a_fresh_study_refuses_a_directory_that_holds_one(study_dir):
    with pytest.raises(ReglabError, match="already holds a data-size study"):
        datasize.run_datasize(_study(), out_dir=study_dir, quiet=True)


def test_a_data_size_study_refuses_a_directory_that_holds_an_ordinary_run(study_dir):
    with pytest.raises(ReglabError, match="already holds a run"):
        datasize.run_datasize(_study(), out_dir=study_dir / "n00020", quiet=True)


def test_a_study_without_its_reference_method_is_refused():
    with pytest.raises(ReglabError, match="reference method 'none'"):
        _study(base=_study().base.replace(methods=METHODS[1:]))


# ----------------------------------------------------------------------------
# a plugin regularizer in the data-size study

@pytest.fixture
def plugin_site(example_plugin_site):
    """The docs' example plugin (group lasso), importable while the test runs (tests/conftest.py)."""
    return example_plugin_site


def test_a_plugin_method_trains_in_every_size_as_reglab_run_trains_it_and_the_study_resumes(
        tmp_path, plugin_site, capsys):
    import shutil

    from reglab.cli import main
    out = tmp_path / "ds"
    common = ["--threads", "1", "--quiet", "--no-report"]
    assert main(["run", "pointcloud", "--preset", "datasize", "--smoke", "--seeds", "1",
                 "--plugin", "reglab_group_lasso", "--set", "methods.l2.group_lasso=0.002",
                 "--out", str(out)] + common) == 0
    meta = read_json(out / datasize.DATASIZE_FILE)
    assert meta["status"] == "complete" and meta["study"]["base"]["plugins"] == ["reglab_group_lasso"]
    for s in meta["sizes"]:
        record = read_json(out / s["run"] / "regularizers.json")
        assert [p["module"] for p in record["plugins"]] == ["reglab_group_lasso"]
        assert {e["name"]: e["used_by"] for e in record["regularizers"]}["group_lasso"] == ["l2"]

    # a size trains exactly as `reglab run` trains its config (the plugin loaded from config.toml's plugins)
    size = out / meta["sizes"][0]["run"]
    assert main(["run", "--config", str(size / "config.toml"), "--out", str(tmp_path / "alone")] + common) == 0
    inside, alone = load_run(size), load_run(tmp_path / "alone")
    for col in ("loss_data", "loss_penalty"):
        assert np.array_equal(inside.iter_rows[col], alone.iter_rows[col], equal_nan=True), col
    # ... and the plugin acts there: without its value, l2's penalty is smaller
    assert main(["run", "--config", str(size / "config.toml"), "--set", "methods.l2.group_lasso=0",
                 "--out", str(tmp_path / "without")] + common) == 0
    without = load_run(tmp_path / "without")
    l2 = np.asarray(inside.iter_rows["variant"]) == next(v["variant"] for v in inside.variants if v["method"] == "l2")
    assert np.all(inside.iter_rows["loss_penalty"][l2] > without.iter_rows["loss_penalty"][l2])

    # the study resumes with its plugin values (the largest size removed: trained again, to the same numbers)
    largest = out / meta["sizes"][-1]["run"]
    before = read_json(largest / "summary.json")["variants"]
    shutil.rmtree(largest)
    (out / datasize.DATASIZE_SUMMARY).unlink()
    assert main(["run", "--resume", str(out), "--quiet", "--no-report"]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in rows]  # noqa: E731
    assert strip(read_json(largest / "summary.json")["variants"]) == strip(before)

    # without the plugin, a resume is one line naming it
    sys.path.remove(str(plugin_site))
    sys.modules.pop("reglab_group_lasso")
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot resume {out}" in err[0] and "reglab_group_lasso" in err[0] and "Fix:" in err[0]


def test_a_bad_plugin_in_a_data_size_study_is_one_line_before_anything_is_written(tmp_path, plugin_site, capsys):
    from reglab.cli import main
    source = (plugin_site / "reglab_group_lasso.py").read_text()
    (plugin_site / "plug_log.py").write_text(source.replace("unit_norms.sum(dim=1)", "w.log().sum(dim=(1, 2))"))
    out = tmp_path / "ds"
    try:
        assert main(["run", "pointcloud", "--preset", "datasize", "--smoke", "--seeds", "1", "--plugin", "plug_log",
                     "--set", "methods.l2.group_lasso=0.002", "--out", str(out), "--quiet"]) == 2
    finally:
        sys.modules.pop("plug_log", None)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plug_log" in err[0] and "not finite (nan)" in err[0]
    assert not out.exists()
