"""The figures: every one written as PNG and SVG, one colour per method, markers where the study says."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from reglab.report import figures as F
from reglab.report.digest import PALETTE, digest
from reglab.results import load_run

from .test_html import MNIST_FIGURES, POINTCLOUD_FIGURES

PER_METHOD = {"test_error", "training_time", "loss_iter_per_method", "loss_iter_overlay", "loss_epoch_per_method",
              "loss_epoch_overlay", "val_error_per_method", "val_error_overlay", "weight_histograms"}


@pytest.mark.parametrize("which, names", [("mnist_report", MNIST_FIGURES), ("pointcloud_report", POINTCLOUD_FIGURES)])
def test_every_figure_is_written_as_a_png_and_an_svg(request, which, names):
    fig_dir = request.getfixturevalue(which).parent / "figures"
    assert {p.name for p in fig_dir.iterdir()} == {f"{n}.{ext}" for n in names for ext in ("png", "svg")}
    for n in names:
        png = matplotlib.image.imread(fig_dir / f"{n}.png")
        assert png.shape[0] > 200 and png.shape[1] > 400 and png[..., :3].std() > 0.05
        root = ET.parse(fig_dir / f"{n}.svg").getroot()
        assert root.tag.endswith("svg") and len(list(root.iter())) > 50


@pytest.mark.parametrize("which", ["mnist_report", "pointcloud_report"])
def test_each_method_has_its_own_colour_in_every_figure_and_no_other_method_colour_appears(request, which):
    path = request.getfixturevalue(which)
    d = digest(load_run(path.parent))
    ours = {m.color.lower() for m in d.methods}
    others = {c.lower() for c in PALETTE} - ours
    for name in PER_METHOD:
        svg = (path.parent / "figures" / f"{name}.svg").read_text().lower()
        missing = [c for c in ours if c not in svg]
        assert not missing, (name, missing)
        assert not [c for c in others if c in svg], name


def _vlines(ax) -> list[float]:
    return [line.get_xdata()[0] for line in ax.get_lines()
            if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]]


def test_the_epoch_where_late_l1_switches_on_is_marked(mnist_run):
    d = digest(load_run(mnist_run))
    with matplotlib.rc_context(F.STYLE):
        spec = F.val_error_per_method(d)
        it = F.loss_iter_per_method(d)
    axes = {ax.get_title(): ax for ax in spec.figure.axes}
    assert _vlines(axes["l2+l1_late"]) == [0.75 * 12]  # l1_start x n_epochs
    assert _vlines(axes["l2"]) == []
    it_axes = {ax.get_title(): ax for ax in it.figure.axes}
    assert _vlines(it_axes["l2+l1_late"]) == [0.75 * 12 * 40]  # in steps: x 40 steps per epoch


def test_each_seeds_early_stop_and_best_epoch_are_marked(pointcloud_run):
    d = digest(load_run(pointcloud_run))
    with matplotlib.rc_context(F.STYLE):
        spec = F.val_error_per_method(d)
    axes = {ax.get_title(): ax for ax in spec.figure.axes}
    es = next(m for m in d.methods if m.name == "early_stopping")
    assert sorted(_vlines(axes["early_stopping"])) == sorted(f["stop_epoch"] for f in es.finals)
    stars = [line for line in axes["early_stopping"].get_lines() if line.get_marker() == "*"]
    assert sorted(s.get_xdata()[0] for s in stars) == sorted(f["best_epoch"] for f in es.finals)
    for star, f, k in zip(stars, es.finals, range(3)):
        assert star.get_ydata()[0] == pytest.approx(100 * es.curves["val_error"][k, f["best_epoch"] - 1])
    assert _vlines(axes["l2"]) == []  # no early stopping, no stop line


def test_the_test_error_bars_carry_the_papers_values_only_for_mnist(mnist_run, pointcloud_run):
    with matplotlib.rc_context(F.STYLE):
        mnist = F.test_error_bars(digest(load_run(mnist_run)))
        cloud = F.test_error_bars(digest(load_run(pointcloud_run)))
    diamonds = [line for line in mnist.figure.axes[0].get_lines() if line.get_marker() == "D"]
    assert len(diamonds) == 1
    np.testing.assert_array_equal(diamonds[0].get_ydata(), [1.62, 1.60, 1.55, 1.35, 1.25, 1.05])
    assert not [line for line in cloud.figure.axes[0].get_lines() if line.get_marker() == "D"]
    d = digest(load_run(mnist_run))
    heights = sorted(round(p.get_height(), 9) for p in mnist.figure.axes[0].patches)
    expected = sorted(round(100 * m.stats[k]["mean"], 9) for m in d.methods
                      for k in ("test_error_last", "test_error_best_val"))
    assert heights == expected


def test_the_decision_boundary_grid_has_one_panel_per_method_with_the_points(pointcloud_run):
    run = load_run(pointcloud_run)
    with matplotlib.rc_context(F.STYLE):
        spec = F.decision_boundaries(digest(run))
    panels = [ax for ax in spec.figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["none (seed 0)", "l1 (seed 0)", "l2 (seed 0)",
                                                 "early_stopping (seed 0)"]
    n_points = len(run.analysis["x_train"]) + len(run.analysis["x_val"])
    for ax in panels:
        assert sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets")
                   and c.get_offsets().ndim == 2 and c.get_offsets().shape[1] == 2) >= n_points


def test_the_kl_figure_shows_the_target_rho(mnist_run):
    with matplotlib.rc_context(F.STYLE):
        spec = F.hidden_activation(digest(load_run(mnist_run)))
    ax = spec.figure.axes[0]
    assert ax.get_title() == "l2+kl"
    assert pytest.approx(0.1 / 0.9) in [line.get_xdata()[0] for line in ax.get_lines()]  # q = m/(1+m) = rho


def test_the_smoothed_loss_is_a_debiased_ema():
    x = np.full(50, 3.0)
    np.testing.assert_allclose(F._ema(x, 9), x)  # debiasing: a constant stays constant from the first step
    y = np.array([0.0, 1.0, np.nan, 1.0])
    b = 1 - 2 / 4
    m1 = (1 - b) * 0.0
    m2 = b * m1 + (1 - b) * 1.0
    m3 = b * m2 + (1 - b) * 1.0
    np.testing.assert_allclose(F._ema(y, 3), [0.0, m2 / (1 - b ** 2), np.nan, m3 / (1 - b ** 3)])


def test_the_gap_figure_is_each_methods_test_error_minus_the_first_methods_paired_by_seed(mnist_run):
    """Against the run's own per-epoch CSV, paired by hand, with scipy's t quantile for the band."""
    import csv

    from scipy import stats as sps

    rows = list(csv.DictReader((mnist_run / "metrics_epoch.csv").read_text().splitlines()))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ref, other = methods[0], methods[-1]
    err = {(r["method"], int(r["seed"]), int(r["epoch"])): 100.0 * float(r["test_error"]) for r in rows}
    seeds = sorted({int(r["seed"]) for r in rows})
    epochs = sorted({int(r["epoch"]) for r in rows})
    diff = np.array([[err[(other, s, e)] - err[(ref, s, e)] for e in epochs] for s in seeds])
    half = sps.t.ppf(0.975, len(seeds) - 1) * diff.std(axis=0, ddof=1) / np.sqrt(len(seeds))

    spec = F.test_error_gap_per_epoch(digest(load_run(mnist_run)))
    assert spec.name == "test_error_gap" and spec.section == "results" and ref in spec.title
    ax = [a for a in spec.figure.axes if a.get_title() == f"{other} − {ref}"][0]
    mean_line = ax.get_lines()[0]
    np.testing.assert_allclose(mean_line.get_xdata(), epochs)
    np.testing.assert_allclose(mean_line.get_ydata(), diff.mean(axis=0), rtol=1e-9, atol=1e-9)
    band_ys = ax.collections[0].get_paths()[0].vertices[:, 1]
    for lo, hi in zip(diff.mean(axis=0) - half, diff.mean(axis=0) + half):
        assert np.isclose(band_ys, lo, atol=1e-9).any() and np.isclose(band_ys, hi, atol=1e-9).any()
    # one panel per method but the reference, and the zero line in each
    panels = [a for a in spec.figure.axes if a.get_visible() and a.get_title()]
    assert len(panels) == len(methods) - 1
    assert all(any(list(line.get_ydata()) == [0.0, 0.0] for line in a.get_lines()) for a in panels)


def test_no_gap_figure_without_a_second_method(tmp_path):
    from reglab.config import MethodConfig

    from .conftest import mnist_config, write_synthetic_run

    cfg = mnist_config(n_epochs=3).replace(methods=(MethodConfig(name="l2", l2=1e-4),))
    write_synthetic_run(tmp_path, cfg)
    assert F.test_error_gap_per_epoch(digest(load_run(tmp_path))) is None
