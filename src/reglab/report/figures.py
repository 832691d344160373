"""The report's figures, drawn with matplotlib's object API (no pyplot, no global backend).

Every figure function takes a :class:`~reglab.report.digest.Digest` and
returns a :class:`FigureSpec` (or None when the run holds no data for it).
Each method keeps one colour in every figure (``MethodData.color``). Where a
method has several seeds, a line is the mean over seeds and the shaded band
its 95% Student-t interval (``digest.band``); with one seed there is no band.

Smoothing of per-iteration losses is an exponential moving average with
debiasing (as TensorBoard's): ``m_t = b m_{t-1} + (1-b) x_t``, shown as
``m_t / (1 - b^t)``, with ``b = 1 - 2/(w+1)`` for a span ``w`` of about a
fortieth of the logged steps (at least 5), so the curve keeps its shape for
any run length.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from reglab.report.digest import Digest, MethodData, band, median_range, paired_curve_difference
from reglab.results import atomic_write_bytes

PNG_DPI = 110
# a fixed hash salt and no date make the SVG files byte-identical across rebuilds
STYLE = {
    "svg.hashsalt": "reglab",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.6,
}
MAX_RAW_POINTS = 2500  # per raw line; a 900-px-wide panel cannot show more


@dataclass
class FigureSpec:
    name: str            # file stem under figures/
    title: str           # heading in the report
    caption: str         # what the figure shows, how to read it, n and spread
    figure: Figure
    section: str         # "training" | "results" | "inside"


def save(spec: FigureSpec, out_dir: Path) -> tuple[Path, Path]:
    """Write `spec` as PNG and SVG under `out_dir`; returns (png, svg)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context(STYLE):
        for ext, kwargs in (("png", {"dpi": PNG_DPI, "metadata": {"Software": None}}),
                            ("svg", {"metadata": {"Date": None}})):
            buf = io.BytesIO()
            spec.figure.savefig(buf, format=ext, **kwargs)
            path = out_dir / f"{spec.name}.{ext}"
            atomic_write_bytes(path, buf.getvalue())
            paths.append(path)
    return paths[0], paths[1]


def all_figures(d: Digest) -> list[FigureSpec]:
    """Every figure the run's data allows, in report order."""
    makers = (test_error_bars, test_error_gap_per_epoch, val_error_per_method, val_error_overlay, loss_epoch_overlay,
              loss_epoch_per_method, loss_iter_overlay, loss_iter_per_method, training_time,
              decision_boundaries, weight_histograms, hidden_activation)
    with matplotlib.rc_context(STYLE):
        specs = [m(d) for m in makers]
    return [s for s in specs if s is not None]


# ----------------------------------------------------------------------------
# helpers

def _grid(n: int, *, ncols: int = 3, w: float = 3.6, h: float = 2.7, sharey: bool = False,
          sharex: bool = True, xlabel: str = ""):
    """A figure with one panel per method; `xlabel` goes on the lowest panel of each column."""
    ncols = 2 if (n == 4 and ncols == 3) else max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(w * ncols, h * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    flat = list(axes.flat[:n])
    for i, ax in enumerate(flat):
        if i + ncols >= n:
            ax.set_xlabel(xlabel)
            ax.xaxis.set_tick_params(labelbottom=True)
    return fig, flat


def set_log_y(ax) -> None:
    """Log y axis labelled at 1-2-5 steps, so a range under two decades still gets readable ticks."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks cost seconds of layout and add nothing here


def _method_ticks(ax, methods: list[MethodData]) -> None:
    many = len(methods) > 6 or max(len(m.name) for m in methods) > 18
    ax.set_xticks(np.arange(len(methods)), [m.name for m in methods], rotation=25 if many else 0,
                  ha="right" if many else "center", rotation_mode="anchor" if many else "default")
    ax.grid(axis="x", visible=False)


def _has(values: np.ndarray) -> bool:
    return values.size > 0 and bool(np.isfinite(values).any())


BAND_ALPHA = 0.18          # one method per panel
OVERLAY_BAND_ALPHA = 0.08  # many methods on one axis: stacked bands would turn grey and hide the lines


def _plot_band(ax, x, values: np.ndarray, color: str, label: str | None = None, *, ls: str = "-",
               scale: float = 1.0, lw: float | None = None, alpha: float = BAND_ALPHA):
    """Mean over seeds as a line, 95% t-interval as a band (several seeds only)."""
    mean, lo, hi = band(values * scale)
    ax.plot(x, mean, color=color, ls=ls, label=label, lw=lw, zorder=3)
    if values.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0, zorder=2)


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    """Debiased exponential moving average of a 1-D series; NaN stays NaN (and does not spread)."""
    b = 1.0 - 2.0 / (span + 1.0)
    out = np.full_like(x, np.nan, dtype=float)
    m, t = 0.0, 0
    for i, v in enumerate(x):
        if not np.isfinite(v):
            continue
        t += 1
        m = b * m + (1.0 - b) * v
        out[i] = m / (1.0 - b ** t)
    return out


def _span(n_points: int) -> int:
    return max(5, n_points // 40)


def _thin(n: int) -> slice:
    return slice(None, None, max(1, math.ceil(n / MAX_RAW_POINTS)))


def _mark_l1_switch(ax, m: MethodData, x_at_switch: float | None):
    if m.l1_switch_fraction is None or x_at_switch is None:
        return
    ax.axvline(x_at_switch, color="0.35", ls="--", lw=1.0)


def _seeds_note(d: Digest) -> str:
    ns = sorted({m.n_seeds for m in d.methods})
    if ns == [1]:
        return "One seed per method, so no spread is shown."
    n = "/".join(map(str, ns))
    return f"Lines are the mean over {n} seeds; shaded bands the 95% t-interval of that mean."


def _legend_below(fig: Figure, axes, ncol: int | None = None):
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol or min(len(labels), 6),
                   frameon=False)


def _key_below(fig: Figure, entries: list[tuple[str, dict]]) -> None:
    """A legend of neutral (grey) line styles: in per-method panels, colour already names the method."""
    handles = [Line2D([], [], **({"color": "0.3"} | style)) for _, style in entries]
    fig.legend(handles, [label for label, _ in entries], loc="outside lower center", ncol=len(entries),
               frameon=False)


def _epochs(d: Digest) -> np.ndarray:
    n = d.methods[0].curves["val_error"].shape[1] if d.methods else 0
    return np.arange(1, n + 1)


def _any_curve(d: Digest, key: str) -> bool:
    return any(_has(m.curves[key]) for m in d.methods)


# ----------------------------------------------------------------------------
# training curves

def loss_iter_per_method(d: Digest) -> FigureSpec | None:
    methods = [m for m in d.methods if _has(m.iter_loss_data)]
    if not methods:
        return None
    fig, axes = _grid(len(methods), sharey=True, xlabel="step")
    key = [("raw minibatch loss", {"alpha": 0.35, "lw": 0.8}), ("smoothed (EMA)", {"lw": 2.0})]
    for ax, m in zip(axes, methods):
        steps = m.iter_steps
        thin = _thin(len(steps))
        span = _span(len(steps))
        for k in range(m.n_seeds):
            ax.plot(steps[thin], m.iter_loss_data[k][thin], color=m.color, alpha=0.18, lw=0.6)
        smooth = np.vstack([_ema(row, span) for row in m.iter_loss_data])
        _plot_band(ax, steps, smooth, m.color, lw=2.0)
        if _has(m.iter_loss_penalty) and np.nanmax(np.abs(m.iter_loss_penalty)) > 0:
            pen = np.vstack([_ema(row, span) for row in m.iter_loss_penalty])
            ax.plot(steps, np.nanmean(pen, axis=0), color="0.25", ls=":", lw=1.4)
        if d.steps_per_epoch and m.l1_switch_fraction is not None:
            _mark_l1_switch(ax, m, m.l1_switch_fraction * d.n_epochs * d.steps_per_epoch)
        ax.set_title(m.name, color=m.color, fontweight="bold")
        set_log_y(ax)
    axes[0].set_ylabel("cross-entropy (nats/example)")
    if any(_has(m.iter_loss_penalty) and np.nanmax(np.abs(m.iter_loss_penalty)) > 0 for m in methods):
        key.append(("penalty term (smoothed)", {"ls": ":", "lw": 1.4}))
    if any(m.l1_switch_fraction is not None for m in methods):
        key.append(("L1 switches on", {"ls": "--", "lw": 1.0}))
    _key_below(fig, key)
    cap = ("Minibatch cross-entropy (the data term, log scale) at every logged step: raw values faint (one line "
           "per seed), debiased exponential moving average bold.")
    if len(key) > 2 and key[2][0].startswith("penalty"):
        cap += " The dotted line is the penalty term the method adds to the objective (same units)."
    if any(m.l1_switch_fraction is not None for m in methods):
        cap += " The dashed line marks the step where late L1 switches on."
    return FigureSpec("loss_iter_per_method", "Training loss per iteration, per method", cap + " " + _seeds_note(d),
                      fig, "training")


def loss_iter_overlay(d: Digest) -> FigureSpec | None:
    methods = [m for m in d.methods if _has(m.iter_loss_data)]
    if not methods:
        return None
    fig = Figure(figsize=(8.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for m in methods:
        smooth = np.vstack([_ema(row, _span(len(m.iter_steps))) for row in m.iter_loss_data])
        _plot_band(ax, m.iter_steps, smooth, m.color, m.name, alpha=OVERLAY_BAND_ALPHA)
    set_log_y(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/example)")
    fig.legend(loc="outside right upper", frameon=False)
    return FigureSpec(
        "loss_iter_overlay", "Training loss per iteration, all methods",
        "Smoothed minibatch cross-entropy of every method on one axis (log scale). Dropout methods see a noisier, "
        "thinned network during training, so their training loss sits higher. " + _seeds_note(d),
        fig, "training")


def loss_epoch_per_method(d: Digest) -> FigureSpec | None:
    if not (_any_curve(d, "train_loss") or _any_curve(d, "val_loss")):
        return None
    x = _epochs(d)
    fig, axes = _grid(len(d.methods), sharey=True, xlabel="epoch")
    for ax, m in zip(axes, d.methods):
        _plot_band(ax, x, m.curves["train_loss"], m.color, ls="-")
        _plot_band(ax, x, m.curves["val_loss"], m.color, ls="--")
        _mark_l1_switch(ax, m, _l1_epoch(d, m))
        ax.set_title(m.name, color=m.color, fontweight="bold")
        set_log_y(ax)
    axes[0].set_ylabel("cross-entropy (nats/example)")
    key = [("training", {}), ("validation", {"ls": "--"})]
    if any(m.l1_switch_fraction is not None for m in d.methods):
        key.append(("L1 switches on", {"ls": "--", "lw": 1.0, "color": "0.35"}))
    _key_below(fig, key)
    cap = ("Training loss (solid: mean minibatch cross-entropy over the epoch, as trained) and validation loss "
           "(dashed: cross-entropy on the validation split after the epoch), log scale. Validation loss rising "
           "while training loss falls is overfitting.")
    if any(_f(m.hyperparameters, "dropout_input") > 0 or _f(m.hyperparameters, "dropout_hidden") > 0
           for m in d.methods):
        cap += (" With dropout the training loss is that of the thinned networks, so it can sit above the "
                "validation loss.")
    if any(_f(m.hyperparameters, "gaussian_dropout_input") > 0 or _f(m.hyperparameters, "gaussian_dropout_hidden") > 0
           for m in d.methods):
        cap += " With Gaussian dropout the training loss is that of the noisy networks."
    if any(_f(m.hyperparameters, "dropconnect") > 0 for m in d.methods):
        cap += " With DropConnect the training loss is that of the networks with masked weights."
    if any(_f(m.hyperparameters, "label_smoothing") > 0 for m in d.methods):
        cap += (" With label smoothing the training loss is the smoothed cross-entropy it minimises (never below "
                "the entropy of the smoothed targets); the validation loss is the plain one.")
    return FigureSpec("loss_epoch_per_method", "Training and validation loss per epoch, per method",
                      cap + " " + _seeds_note(d), fig, "training")


def _f(hp: dict, key: str) -> float:
    try:
        return float(hp.get(key) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def loss_epoch_overlay(d: Digest) -> FigureSpec | None:
    if not (_any_curve(d, "train_loss") or _any_curve(d, "val_loss")):
        return None
    x = _epochs(d)
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("train_loss", "val_loss"), ("training loss", "validation loss")):
        for m in d.methods:
            _plot_band(ax, x, m.curves[key], m.color, m.name, alpha=OVERLAY_BAND_ALPHA)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        set_log_y(ax)
    axes[0].set_ylabel("cross-entropy (nats/example)")
    _legend_below(fig, axes[:1])
    return FigureSpec(
        "loss_epoch_overlay", "Training and validation loss per epoch, all methods (the comparison)",
        "Left: training loss; right: validation loss, every method on the same axes (log scale). "
        + _seeds_note(d), fig, "training")


def _l1_epoch(d: Digest, m: MethodData) -> float | None:
    f = m.l1_switch_fraction
    return None if f is None else f * d.n_epochs


def val_error_per_method(d: Digest) -> FigureSpec | None:
    if not _any_curve(d, "val_error"):
        return None
    x = _epochs(d)
    fig, axes = _grid(len(d.methods), sharey=True, xlabel="epoch")
    stopped = False
    for ax, m in zip(axes, d.methods):
        _plot_band(ax, x, m.curves["val_error"], m.color, scale=100.0)
        for k in range(m.n_seeds):
            f = m.finals[k]
            e = f.get("best_epoch")
            if e and np.isfinite(m.curves["val_error"][k, int(e) - 1]):
                ax.plot([e], [100.0 * m.curves["val_error"][k, int(e) - 1]], marker="*", ms=9, color=m.color,
                        mec="black", mew=0.6, ls="none")
            if m.early_stopping and f.get("stop_epoch") and not f.get("diverged"):
                stopped = True
                ax.axvline(float(f["stop_epoch"]), color=m.color, ls="-.", lw=1.0)
        _mark_l1_switch(ax, m, _l1_epoch(d, m))
        ax.set_title(m.name, color=m.color, fontweight="bold")
    axes[0].set_ylabel("validation error (%)")
    _zoom_errors(axes, [m.curves["val_error"] * 100.0 for m in d.methods])
    key = [("validation error", {}),
           ("best-validation epoch (per seed)", {"marker": "*", "ms": 9, "ls": "none", "mec": "black"})]
    if stopped:
        key.append(("early stop (per seed)", {"ls": "-.", "lw": 1.0}))
    if any(m.l1_switch_fraction is not None for m in d.methods):
        key.append(("L1 switches on", {"ls": "--", "lw": 1.0, "color": "0.35"}))
    _key_below(fig, key)
    cap = ("Validation error after each epoch. Stars mark each seed's best-validation epoch (where the method's "
           "monitored value, validation loss unless set otherwise, was best: the model of the “best-val” "
           "columns).")
    if stopped:
        cap += " Dash-dotted lines mark the epoch in which early stopping halted a seed."
    if any(m.l1_switch_fraction is not None for m in d.methods):
        cap += " The dashed line marks where late L1 switches on."
    return FigureSpec("val_error_per_method", "Validation error per epoch, per method", cap + " " + _seeds_note(d),
                      fig, "training")


def val_error_overlay(d: Digest) -> FigureSpec | None:
    if not _any_curve(d, "val_error"):
        return None
    x = _epochs(d)
    fig = Figure(figsize=(8.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for m in d.methods:
        _plot_band(ax, x, m.curves["val_error"], m.color, m.name, scale=100.0, alpha=OVERLAY_BAND_ALPHA)
    _zoom_errors([ax], [m.curves["val_error"] * 100.0 for m in d.methods])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error (%)")
    fig.legend(loc="outside right upper", frameon=False)
    return FigureSpec("val_error_overlay", "Validation error per epoch, all methods",
                      "Validation error of every method on one axis. " + _seeds_note(d), fig, "training")


def _zoom_errors(axes, arrays: list[np.ndarray]) -> None:
    """Set the y range to show the later epochs: the first epochs' errors would flatten the rest."""
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    if finite.size == 0:
        return
    lows = [np.nanmin(a) for a in arrays if np.isfinite(a).any()]
    tails = []
    for a in arrays:
        cols = np.flatnonzero(np.isfinite(a).any(axis=0))
        if len(cols):
            tails.append(np.nanmax(a[:, cols[len(cols) // 3:]]))
    lo, hi = min(lows), max(tails)
    pad = 0.15 * (hi - lo) + 1e-3
    for ax in axes:
        ax.set_ylim(max(0.0, lo - pad), hi + 2 * pad)


# ----------------------------------------------------------------------------
# results

def test_error_bars(d: Digest) -> FigureSpec | None:
    methods = [m for m in d.methods if m.stats["test_error_last"]["n"] > 0]
    if not methods:
        return None
    paper = d.paper
    fig = Figure(figsize=(max(6.0, 1.25 * len(methods) + 2.5), 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(methods))
    width = 0.38
    for offset, key, hatch in ((-width / 2, "test_error_last", None), (width / 2, "test_error_best_val", "///")):
        for i, m in enumerate(methods):
            s = m.stats[key]
            if s["mean"] is None:
                continue
            mean = 100.0 * s["mean"]
            err = None
            if s["ci95"] is not None:
                err = [[mean - 100.0 * s["ci95"][0]], [100.0 * s["ci95"][1] - mean]]
            ax.bar(x[i] + offset, mean, width, color=m.color, alpha=0.85 if hatch is None else 0.45,
                   hatch=hatch, edgecolor="black", lw=0.6, yerr=err, capsize=3, error_kw={"lw": 1.0})
            pts = [100.0 * v for v in s["values"] if v is not None]
            ax.plot(np.full(len(pts), x[i] + offset), pts, "o", ms=3, color="black", alpha=0.6)
    handles = [Patch(facecolor="0.55", edgecolor="black", lw=0.6, label="last epoch"),
               Patch(facecolor="0.85", edgecolor="black", lw=0.6, hatch="///", label="best-validation epoch"),
               Line2D([], [], marker="o", ms=3, color="black", alpha=0.6, ls="none", label="one seed")]
    if paper:
        px = [i for i, m in enumerate(methods) if m.name in paper]
        handles += ax.plot([x[i] + width + 0.05 for i in px], [paper[methods[i].name] for i in px], "D", ms=7,
                           color="white", mec="black", mew=1.4, ls="none", label="Srivastava et al. 2014, Table 9")
    _method_ticks(ax, methods)
    ax.set_ylabel("test error (%)")
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    ns = sorted({m.stats["test_error_last"]["n"] for m in methods})
    cap = (f"Test error per method: mean over {'/'.join(map(str, ns))} seed(s) as bars (solid: after the last "
           "epoch; hatched: at the best-validation epoch, where the method's monitored validation value was best), "
           "95% t-interval as error bars, each seed as a "
           "dot.")
    if paper:
        cap += (" White diamonds: the published test errors of Srivastava et al. (2014), Table 9, for a "
                "784-1024-1024-2048-10 net trained for about 1M updates — compare the ranking, not the level, "
                "unless this run used that net and budget.")
    return FigureSpec("test_error", "Test error per method", cap, fig, "results")


def test_error_gap_per_epoch(d: Digest) -> FigureSpec | None:
    """Each method's test error minus the first method's after every epoch, paired by seed: when a
    difference appears, and whether it is still growing at the end of the budget."""
    ref = d.methods[0] if d.methods else None
    if ref is None or not _any_curve(d, "test_error"):
        return None
    gaps = {m.name: 100.0 * paired_curve_difference(m, ref, "test_error") for m in d.methods[1:]}
    others = [m for m in d.methods[1:] if _has(gaps[m.name])]
    if not others:
        return None
    x = _epochs(d)
    fig, axes = _grid(len(others), sharey=True, xlabel="epoch")
    tails = []   # the band's ends over the later half of the epochs: the y range
    for ax, m in zip(axes, others):
        gap = gaps[m.name]
        _plot_band(ax, x[:gap.shape[1]], gap, m.color)
        val = 100.0 * paired_curve_difference(m, ref, "val_error")
        if _has(val):
            ax.plot(x[:val.shape[1]], band(val)[0], color=m.color, ls="--", lw=1.0, zorder=3)
        ax.axhline(0.0, color="0.35", lw=0.8, zorder=1)
        ax.set_title(f"{m.name} − {ref.name}", color=m.color, fontweight="bold")
        mean, lo, hi = band(gap)
        late = slice(len(mean) // 2, None)
        tails += [v for v in (*lo[late], *hi[late], *mean[late]) if np.isfinite(v)]
    if tails:
        lo, hi = min(min(tails), 0.0), max(max(tails), 0.0)
        pad = 0.1 * (hi - lo) + 0.02
        axes[0].set_ylim(lo - pad, hi + pad)
    axes[0].set_ylabel(f"test error − {ref.name}'s (pp)")
    _key_below(fig, [(f"test error − {ref.name}'s (mean over seeds, 95% t-band)", {}),
                     ("the same on validation error", {"ls": "--", "lw": 1.0}),
                     ("no difference", {"lw": 0.8, "color": "0.35"})])
    ns = sorted({gaps[m.name].shape[0] for m in others})
    cap = (f"Each method's test error minus {ref.name}'s after every epoch, in percentage points, paired by seed "
           f"(the same seed starts every method from the same weights): the line is the mean over the "
           f"{'/'.join(map(str, ns))} seed(s) both methods have, the band its 95% t-interval; dashed, the same "
           f"difference on validation error. Below zero is better than {ref.name}. A band that leaves zero and "
           "stays away shows the budget at which that difference is seen; one still falling at the last epoch "
           "says more epochs would widen it. The y range shows the later half of the epochs. Read this "
           "to size a study, not to pick an epoch (the test split must not choose anything: pick on validation).")
    return FigureSpec("test_error_gap", f"Test error against {ref.name}, per epoch", cap, fig, "results")


def training_time(d: Digest) -> FigureSpec | None:
    methods = [m for m in d.methods if m.time_s]
    if not methods:
        return None
    t = d.timing
    whole = [(label, t[key]) for label, key in (("each method alone\n(sum)", "sum_of_methods_alone_s"),
                                                 ("whole study,\nbatched", "study_train_s"))
             if t.get(key) is not None]
    fig = Figure(figsize=(max(6.0, 1.1 * len(methods) + 2.0) + (2.6 if whole else 0.0), 3.8), layout="constrained")
    if whole:
        ax, ax_all = fig.subplots(1, 2, width_ratios=[max(3, len(methods)), 1.6])
    else:
        ax, ax_all = fig.subplots(), None
    x = np.arange(len(methods))
    spread = False
    for i, m in enumerate(methods):
        med, lo, hi = median_range(m.time_s)
        err = None
        if len(m.time_s) > 1:
            spread = True
            err = [[med - lo], [hi - med]]
        ax.bar(x[i], med, 0.6, color=m.color, alpha=0.85, edgecolor="black", lw=0.6, yerr=err, capsize=3)
        if len(m.time_s) > 1:
            ax.plot(np.full(len(m.time_s), x[i]), m.time_s, "o", ms=3, color="black", alpha=0.6)
    _method_ticks(ax, methods)
    ax.set_ylabel("training time (s)")
    ax.set_title("each method trained alone")
    if ax_all is not None:
        ax_all.bar(np.arange(len(whole)), [v for _, v in whole], 0.6, color=["0.75", "0.35"][-len(whole):],
                   edgecolor="black", lw=0.6)
        ax_all.set_xticks(np.arange(len(whole)), [label for label, _ in whole])
        ax_all.grid(axis="x", visible=False)
        ax_all.set_title("the whole study")
        for i, (_, v) in enumerate(whole):
            ax_all.annotate(_fmt_seconds(v), (i, v), ha="center", va="bottom", xytext=(0, 2),
                            textcoords="offset points")
    cap = "Training time of each method with all its seeds, estimated as if it had been trained alone"
    n_rep = max(len(m.time_s) for m in methods)
    cap += (f": bars are the median of {n_rep} timings (dots), error bars their range [min, max]." if spread
            else " (one measurement per method, so no spread).")
    if t.get("note"):
        cap += f" How: {t['note']}."
    if t.get("study_train_s") is not None:
        cap += (f" Right: the whole study, every variant trained together as one batched model, spent "
                f"{_fmt_seconds(t['study_train_s'])} training")
        if t.get("study_wall_s") is not None:
            cap += f" ({_fmt_seconds(t['study_wall_s'])} wall clock including evaluation and writing)"
        cap += "."
        if t.get("batching_speedup"):
            cap += f" Batching made it {t['batching_speedup']:.1f}× faster than training the methods one by one."
    return FigureSpec("training_time", "Training time", cap, fig, "results")


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


# ----------------------------------------------------------------------------
# inside the networks

def decision_boundaries(d: Digest) -> FigureSpec | None:
    a = d.run.analysis
    if not all(k in a for k in ("grid_xx", "grid_yy", "grid_probs")):
        return None
    xx, yy, probs = a["grid_xx"], a["grid_yy"], a["grid_probs"]
    aspect = float(np.ptp(yy)) / max(float(np.ptp(xx)), 1e-12)
    fig, axes = _grid(len(d.methods), ncols=min(4, len(d.methods)), w=3.3, h=3.3 * aspect + 0.5,
                      sharex=False)
    cmap = matplotlib.colormaps["RdBu_r"]
    image = None
    for ax, m in zip(axes, d.methods):
        p = probs[m.variants[0]]
        image = ax.contourf(xx, yy, p, levels=np.linspace(0, 1, 11), cmap=cmap, alpha=0.45)
        # the other seeds' boundaries as thin lines show how much the boundary moves with the seed
        for v in m.variants[1:]:
            ax.contour(xx, yy, probs[v], levels=[0.5], colors="0.25", linewidths=0.7, linestyles="--")
        ax.contour(xx, yy, p, levels=[0.5], colors="black", linewidths=1.8)
        _points(ax, a, "x_train", "y_train", "o", 14)
        _points(ax, a, "x_val", "y_val", "^", 22)
        ax.set_title(f"{m.name} (seed {m.seeds[0]})", color=m.color, fontweight="bold")
        ax.set_xlim(xx.min(), xx.max())
        ax.set_ylim(yy.min(), yy.max())
        ax.set_aspect("equal")
        ax.grid(False)
    fig.colorbar(image, ax=axes, shrink=0.8, label="predicted P(class 1)")
    point = {"ls": "none", "mec": "black", "mew": 0.5}
    key = [("class 0 (training)", point | {"marker": "o", "color": CLASS_COLORS[0]}),
           ("class 1 (training)", point | {"marker": "o", "color": CLASS_COLORS[1]}),
           ("validation (triangles)", point | {"marker": "^", "color": "white"}),
           ("boundary P = 0.5", {"color": "black", "lw": 1.8})]
    n_other = max(m.n_seeds for m in d.methods) - 1
    if n_other:
        key.append(("other seeds' boundaries", {"color": "0.25", "lw": 0.7, "ls": "--"}))
    _key_below(fig, key)
    cap = ("Decision boundary of each method on the 2-D data: the background is the predicted probability of "
           "class 1, the black line P = 0.5 for the first seed")
    cap += f", dashed lines the boundaries of the other {n_other} seed(s)." if n_other else "."
    cap += " Circles: training points; triangles: validation points; fill colour is the true class."
    return FigureSpec("decision_boundaries", "Decision boundaries", cap, fig, "inside")


CLASS_COLORS = ("#2166AC", "#B2182B")


def _points(ax, a: dict, xkey: str, ykey: str, marker: str, size: float):
    if xkey not in a or ykey not in a:
        return
    x, y = a[xkey], a[ykey].astype(int)
    colors = np.where(y == 1, CLASS_COLORS[1], CLASS_COLORS[0])
    ax.scatter(x[:, 0], x[:, 1], c=colors, marker=marker, s=size, edgecolors="black", linewidths=0.5)


def weight_histograms(d: Digest) -> FigureSpec | None:
    a = d.run.analysis
    if "weight_hist" not in a or "weight_hist_edges" not in a:
        return None
    hist, edges = a["weight_hist"].astype(float), a["weight_hist_edges"].astype(float)
    log_x = bool(edges[0] <= 0 < edges[1]) and _log_spaced(edges[1:])
    plot_edges = edges.copy()
    if log_x:
        plot_edges[0] = edges[1] * edges[1] / edges[2]  # the [0, e1) bin drawn as one more log-width bin
    fig, axes = _grid(len(d.methods), sharey=True, xlabel="|w|")
    ref = d.methods[0]
    ref_frac = _fractions(hist[ref.variants])
    for ax, m in zip(axes, d.methods):
        frac = _fractions(hist[m.variants])
        ax.stairs(frac, plot_edges, color=m.color, alpha=0.2, fill=True)
        ax.stairs(frac, plot_edges, color=m.color, lw=1.8)
        if m is not ref:
            ax.stairs(ref_frac, plot_edges, color="0.45", lw=1.0, ls="--")
        ax.set_title(m.name, color=m.color, fontweight="bold")
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
    axes[0].set_ylabel("fraction of weights")
    _key_below(fig, [("this method", {"lw": 1.8}), (f"{ref.name} (reference)", {"color": "0.45", "ls": "--"})])
    cap = ("Distribution of weight magnitudes |w| over all layers after training (fraction of weights per bin, "
           "mean over seeds")
    cap += ("; log-spaced bins, the leftmost bin also holding exact zeros)." if log_x else ").")
    cap += (" L1 pushes mass towards 0; max-norm caps the length of each unit's incoming weight vector, "
            f"cutting the right tail. Dashed grey: {ref.name}, for comparison.")
    return FigureSpec("weight_histograms", "Weight magnitudes", cap, fig, "inside")


def _log_spaced(e: np.ndarray) -> bool:
    if len(e) < 3 or np.any(e <= 0):
        return False
    r = e[1:] / e[:-1]
    return bool(np.allclose(r, r[0], rtol=1e-3)) and r[0] > 1.0


def _fractions(h: np.ndarray) -> np.ndarray:
    tot = h.sum(axis=1, keepdims=True)
    return np.mean(h / np.where(tot > 0, tot, 1.0), axis=0)


def kl_least_penalty_activation(rho: float) -> float:
    """The mean activation m at which reglab's KL penalty is least: q(m) = m/(1+m) = rho, so rho/(1-rho).

    reglab.engine.regularizers.squash maps a ReLU unit's mean activation into (0, 1) before the KL.
    """
    return rho / (1.0 - rho)


def hidden_activation(d: Digest) -> FigureSpec | None:
    a = d.run.analysis
    if "hidden_mean_activation" not in a:
        return None
    kl = [m for m in d.methods if float(m.hyperparameters.get("kl_beta", 0) or 0) > 0]
    if not kl:
        return None
    act = a["hidden_mean_activation"].astype(float)
    others = [m for m in d.methods if m not in kl][:1]
    fig, axes = _grid(len(kl), ncols=2, w=4.8, h=3.2, sharex=False)
    for ax, m in zip(axes, kl):
        rho = float(m.hyperparameters.get("kl_rho", 0.05))
        target = kl_least_penalty_activation(rho)
        vals = act[m.variants].ravel()
        pool = np.concatenate([vals] + [act[o.variants].ravel() for o in others])
        pool = pool[np.isfinite(pool)]
        hi = float(np.quantile(pool, 0.99)) if pool.size else 1.0
        bins = np.linspace(0.0, max(hi, 2 * target) * 1.05, 40)
        for o in others:
            ax.hist(np.clip(act[o.variants].ravel(), 0, bins[-1]), bins=bins, color=o.color, alpha=0.35,
                    label=f"{o.name} (no KL)", density=True)
        ax.hist(np.clip(vals, 0, bins[-1]), bins=bins, color=m.color, alpha=0.75, label=m.name, density=True)
        ax.axvline(target, color="black", ls="--", lw=1.4, label=f"target ρ/(1−ρ) = {target:.3g} (ρ = {rho:g})")
        ax.axvline(float(np.nanmean(vals)), color=m.color, ls="-", lw=1.6,
                   label=f"{m.name} mean = {np.nanmean(vals):.3g}")
        ax.set_title(m.name, color=m.color, fontweight="bold")
        ax.set_xlabel("mean activation of a first-layer hidden unit")
        ax.set_ylabel("density")
        ax.legend(frameon=False)
    n_units = act.shape[1]
    cap = (f"Mean ReLU output of each of the {n_units} first-layer hidden units over the training data (every seed "
           "pooled; the last bin also holds larger values) for the KL-sparsity method. The penalty compares ρ "
           "with q = m/(1+m), the unit's mean activation m squashed into (0, 1), so it pulls each unit towards "
           "m = ρ/(1−ρ) (dashed).")
    if others:
        cap += f" {others[0].name}, without the penalty, shown faint for comparison."
    return FigureSpec("hidden_activation", "Hidden-unit activation under KL sparsity", cap, fig, "inside")
