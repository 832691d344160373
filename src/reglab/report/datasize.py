"""The data-size study's report: test error and generalization gap against training-set size, gains.

Reads only ``datasize.json`` and ``datasize_summary.json`` (written by
``reglab.study.datasize``; each size's own run directory has the usual files and
its own report via ``reglab report <dir>/nXXXXX``). Errors are percent here.

* Test error against n (log x axis): per method the mean over seeds and its 95%
  t-interval band; the reference (no regularization) drawn black and dashed in
  every panel.
* Generalization gap against n: test error minus the final training error (a clean
  pass over the training examples, no dropout).
* Gains: reference test error minus the method's, paired by seed, with the 95% interval
  of the mean difference; significant when Holm's adjusted p over the methods compared at
  that size is below 0.05.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from reglab.config import IMAGE_DATASETS, MethodConfig
from reglab.errors import ReglabError
from reglab.report.digest import PALETTE
from reglab.report.figures import STYLE, FigureSpec, save, set_log_y
from reglab.report.html import PAGE_END, figure_html, page_head, table_html, table_markdown
from reglab.report.tables import Table
from reglab.results import FIGURES_DIR, atomic_write_text, read_json

DATASIZE_FILE = "datasize.json"          # the names reglab.study.datasize writes (the report does not import it)
DATASIZE_SUMMARY = "datasize_summary.json"


def is_datasize_dir(path: str | Path) -> bool:
    return (Path(path) / DATASIZE_FILE).is_file()


def build_datasize_report(root: str | Path) -> Path:
    """Write report.html, figures/ and summary.md of a data-size study; returns report.html's path."""
    root = Path(root)
    meta = read_json(root / DATASIZE_FILE)
    if not (root / DATASIZE_SUMMARY).is_file():
        raise ReglabError(f"{root} is a data-size study without {DATASIZE_SUMMARY} (status "
                          f"{meta.get('status', '?')!r}): not every size has finished. "
                          f"Fix: reglab run --resume {root}")
    summary = read_json(root / DATASIZE_SUMMARY)
    specs = figures(summary)
    embedded = []
    for spec in specs:
        png, _ = save(spec, root / FIGURES_DIR)
        embedded.append((spec, png.read_bytes()))
        spec.figure.clear()
    html = render_html(meta, summary, embedded)
    atomic_write_text(root / "report.html", html)
    atomic_write_text(root / "summary.md", render_markdown(meta, summary))
    return root / "report.html"


# ----------------------------------------------------------------------------
# data

def _methods(summary: dict) -> list[str]:
    """Methods in study order, the reference first."""
    names = list(summary["sizes"][0]["methods"]) if summary["sizes"] else []
    ref = summary["reference"]
    return [ref] + [m for m in names if m != ref] if ref in names else names


def _colors(summary: dict) -> dict[str, str]:
    others = [m for m in _methods(summary) if m != summary["reference"]]
    return {summary["reference"]: "black", **{m: PALETTE[i % len(PALETTE)] for i, m in enumerate(others)}}


def _series(summary: dict, method: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, lo, hi) in percent of `key` (test_error | train_error | gap) over the sizes."""
    n, mean, lo, hi = [], [], [], []
    for s in summary["sizes"]:
        d = s["methods"].get(method, {}).get(key)
        if not d or d.get("mean") is None:
            continue
        n.append(s["n_train"])
        mean.append(100 * d["mean"])
        ci = d.get("ci95") or [d["mean"], d["mean"]]
        lo.append(100 * ci[0])
        hi.append(100 * ci[1])
    return np.array(n, dtype=float), np.array(mean), np.array(lo), np.array(hi)


def _gain(size: dict, method: str) -> dict | None:
    return next((g for g in size["gains"] if g["method"] == method), None)


# ----------------------------------------------------------------------------
# figures

def figures(summary: dict) -> list[FigureSpec]:
    with matplotlib.rc_context(STYLE):
        return [f for f in (error_vs_size(summary), gap_vs_size(summary), gain_vs_size(summary)) if f is not None]


def _size_axis(ax, sizes: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training examples (log scale)")


def _per_method_panels(summary: dict, key: str, ylabel: str, log_y: bool) -> Figure:
    methods = [m for m in _methods(summary) if m != summary["reference"]]
    colors = _colors(summary)
    sizes = [s["n_train"] for s in summary["sizes"]]
    ncols = 3
    nrows = math.ceil(len(methods) / ncols)
    fig = Figure(figsize=(11.0, 2.9 * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    rn, rm, rlo, rhi = _series(summary, summary["reference"], key)
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, methods):
        ax.plot(rn, rm, color="black", ls="--", lw=1.3, label=f"{summary['reference']} (reference)", zorder=3)
        ax.fill_between(rn, rlo, rhi, color="black", alpha=0.10, lw=0)
        n, mean, lo, hi = _series(summary, m, key)
        ax.plot(n, mean, "o-", color=colors[m], ms=3.5, label=m, zorder=4)
        ax.fill_between(n, lo, hi, color=colors[m], alpha=0.18, lw=0)
        _size_axis(ax, sizes)
        if log_y:
            set_log_y(ax)
        ax.set_title(m)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper right", frameon=False)
    return fig


def error_vs_size(summary: dict) -> FigureSpec | None:
    if not summary["sizes"]:
        return None
    fig = _per_method_panels(summary, "test_error", "test error (%)", log_y=True)
    n_seeds = _n_seeds(summary)
    cap = (f"Test error (%, log scale) of the returned model against the number of training examples (log scale): "
           f"each panel one method, line the mean of {n_seeds} seeds, band its 95% Student-t interval; the black "
           f"dashed line and grey band are {summary['reference']} (no regularization), the same in every panel. "
           f"Every size trained {summary['n_steps']:,} updates.")
    return FigureSpec("test_error_vs_size", "Test error against training-set size", cap, fig, "results")


def gap_vs_size(summary: dict) -> FigureSpec | None:
    if not summary["sizes"]:
        return None
    fig = _per_method_panels(summary, "gap", "test − train error (pp)", log_y=False)
    cap = ("Generalization gap: test error minus the final training error (a clean pass over that size's training "
           f"examples, no dropout), in percentage points, against the number of training examples; mean of "
           f"{_n_seeds(summary)} seeds with its 95% interval; black dashed: {summary['reference']}.")
    return FigureSpec("gap_vs_size", "Generalization gap against training-set size", cap, fig, "results")


def gain_vs_size(summary: dict) -> FigureSpec | None:
    methods = [m for m in _methods(summary) if m != summary["reference"]]
    if not summary["sizes"] or not methods:
        return None
    colors = _colors(summary)
    sizes = [s["n_train"] for s in summary["sizes"]]
    fig = Figure(figsize=(9.5, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.axhline(0.0, color="black", lw=0.9)
    k = len(methods)
    for i, m in enumerate(methods):
        shift = 1.0 + 0.05 * (i - (k - 1) / 2)   # side by side in log x
        xs, ys, err, sig = [], [], [[], []], []
        for s in summary["sizes"]:
            g = _gain(s, m)
            if g is None or g["mean_difference"] is None or g["ci95"] is None:
                continue
            xs.append(s["n_train"] * shift)
            ys.append(100 * g["mean_difference"])
            err[0].append(100 * (g["mean_difference"] - g["ci95"][0]))
            err[1].append(100 * (g["ci95"][1] - g["mean_difference"]))
            sig.append(bool(g.get("significant_holm")))
        if not xs:
            continue
        ax.errorbar(xs, ys, yerr=err, fmt="-", color=colors[m], lw=1.0, capsize=2, label=m, alpha=0.9)
        ax.scatter(xs, ys, s=[28 if x else 14 for x in sig], color=colors[m], zorder=4,
                   edgecolors=["black" if x else "none" for x in sig], linewidths=0.8)
    _size_axis(ax, sizes)
    ax.set_ylabel(f"gain over {summary['reference']} (pp, test error)")
    ax.legend(loc="upper right", frameon=False, ncol=2)
    cap = (f"Each method's gain over {summary['reference']}: its test error subtracted from {summary['reference']}'s, "
           f"paired by seed (positive: the method is better), in percentage points, with the 95% interval of the mean "
           f"difference over {_n_seeds(summary)} seeds. Large, black-edged points: significant after Holm's correction "
           "over the methods compared at that size (p (Holm) < 0.05). Points are spread sideways to stay apart.")
    return FigureSpec("gain_vs_size", "Gain over no regularization, with 95% intervals", cap, fig, "results")


def _n_seeds(summary: dict) -> int:
    ns = [d["test_error"]["n"] for s in summary["sizes"] for d in s["methods"].values()]
    return max(ns) if ns else 0


# ----------------------------------------------------------------------------
# tables and text

def gain_table(summary: dict) -> Table:
    sizes = summary["sizes"]
    methods = [m for m in _methods(summary) if m != summary["reference"]]
    columns = ["Method"] + [f"n = {s['n_train']:,}" for s in sizes]
    rows, colors = [], _colors(summary)
    for m in methods:
        row = [m]
        for s in sizes:
            g = _gain(s, m)
            if g is None or g["mean_difference"] is None:
                row.append("—")
                continue
            cell = f"{100 * g['mean_difference']:+.2f}"
            if g["ci95"]:
                cell += f" [{100 * g['ci95'][0]:+.2f}, {100 * g['ci95'][1]:+.2f}]"
            if g.get("significant_holm"):
                cell += " *"
            row.append(cell)
        rows.append(row)
    notes = [f"Gain over {summary['reference']} in percentage points of test error ({summary['reference']} − method, "
             f"paired by seed; positive: the method is better), with the 95% Student-t interval of the mean difference "
             f"over {_n_seeds(summary)} seeds. * : significant after Holm's step-down correction over the "
             f"{len(methods)} methods compared at that size (p (Holm) < 0.05); the raw and adjusted p are in "
             f"{DATASIZE_SUMMARY}."]
    return Table(columns, rows, notes, row_colors=[colors[m] for m in methods])


def error_table(summary: dict) -> Table:
    sizes = summary["sizes"]
    columns = ["Method"] + [f"n = {s['n_train']:,}" for s in sizes]
    rows, colors = [], _colors(summary)
    methods = _methods(summary)
    for m in methods:
        row = [m]
        for s in sizes:
            d = s["methods"].get(m, {}).get("test_error")
            if not d or d.get("mean") is None:
                row.append("—")
            elif d.get("ci95_half_width") is None:
                row.append(f"{100 * d['mean']:.2f}")
            else:
                row.append(f"{100 * d['mean']:.2f} ± {100 * d['ci95_half_width']:.2f}")
        rows.append(row)
    notes = [f"Test error (%), mean ± half-width of the 95% Student-t interval over {_n_seeds(summary)} seeds, of the "
             "model each method returns (after the last update; for early stopping, at its best validation epoch)."]
    return Table(columns, rows, notes, row_colors=[colors[m] for m in methods],
                 emphasis=[m == summary["reference"] for m in methods])


def significance_sentences(summary: dict) -> list[str]:
    """One sentence per method: at which sizes its gain is significant (Holm), from the data."""
    out = []
    ref = summary["reference"]
    for m in [m for m in _methods(summary) if m != ref]:
        better, worse, neither = [], [], []
        for s in summary["sizes"]:
            g = _gain(s, m)
            if g is None or g["mean_difference"] is None or g.get("significant_holm") is None:
                continue
            label = f"{s['n_train']:,}"
            if g["significant_holm"] and g["mean_difference"] > 0:
                better.append(f"{label} (by {100 * g['mean_difference']:.2f} pp)")
            elif g["significant_holm"]:
                worse.append(f"{label} (by {-100 * g['mean_difference']:.2f} pp)")
            else:
                neither.append(label)
        parts = []
        if better:
            parts.append(f"significantly better than {ref} at n = {', '.join(better)}")
        if worse:
            parts.append(f"significantly worse at n = {', '.join(worse)}")
        if neither:
            parts.append(f"not distinguishable from {ref} at n = {', '.join(neither)}")
        if parts:
            out.append(f"{m}: " + "; ".join(parts) + ".")
    return out


def _lead(summary: dict) -> str:
    return (f"Each method against {summary['reference']} (no regularization), paired by seed; significant means "
            f"Holm-adjusted p < 0.05 over the methods compared at that size.")


# ----------------------------------------------------------------------------
# page

def render_html(meta: dict, summary: dict, figures_png: list[tuple[FigureSpec, bytes]]) -> str:
    study = meta["study"]
    base = study["base"]
    sizes = summary["sizes"]
    size_list = ", ".join(f"{s['n_train']:,}" for s in sizes)
    parts = page_head(f"reglab report: {summary['study']}") + [
        f"<h1>reglab report: {escape(summary['study'])}</h1>",
        f'<p class="sub">Dataset {escape(str(base["data"]["name"]))} · {len(_methods(summary))} methods × '
        f"{_n_seeds(summary)} seeds · training sets of {size_list} examples · "
        f"{study['n_steps']:,} updates each</p>",
        '<h2 id="results">Results</h2>',
        f'<p class="headline">{escape(_lead(summary))}</p>',
        "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in significance_sentences(summary)) + "</ul>",
        "<h3>Gain over no regularization (pp of test error)</h3>", table_html(gain_table(summary)),
        "<h3>Test error (%)</h3>", table_html(error_table(summary)),
    ]
    parts += [figure_html(spec, png) for spec, png in figures_png]
    parts += ['<h2 id="setup">Setup</h2>', f"<p>{escape(setup_text(meta, summary))}</p>",
              '<ul class="formulas">' + "".join(f"<li>{escape(x)}</li>" for x in method_lines(meta)) + "</ul>"]
    if meta.get("command"):
        parts.append(f"<pre>{escape(str(meta['command']))}</pre>")
    parts.append("<p>Each size is an ordinary run directory (config, metrics, summary.json, checkpoints); "
                 "build its own report with <code>reglab report DIR</code>: "
                 + ", ".join(f"<code>{escape(s['run'])}</code>" for s in sizes) + ".</p>")
    parts.append(PAGE_END)
    return "\n".join(parts) + "\n"


def setup_text(meta: dict, summary: dict) -> str:
    study = meta["study"]
    base = study["base"]
    image = base["data"]["name"] in IMAGE_DATASETS
    d_in, n_classes = (784 if base["data"].get("resolution", 28) == 28 else 49, 10) if image else (2, 2)
    layers = "-".join(str(x) for x in [d_in, *base["hidden"], n_classes])
    return (f"{layers} ReLU net, {base['optimizer']} at batch {base['batch_size']}; every method's settings are "
            f"those of the base study (config.toml in each size's directory). Every size trains "
            f"{study['n_steps']:,} updates (not to early stopping: the same compute at every size, and no stopping "
            f"rule regularizes the reference); a subset of n examples is the first n/{n_classes} of each class of the "
            f"training split, tiled to {study['epoch_examples']:,} examples per epoch so that every size is "
            f"evaluated every {study['epoch_examples'] // base['batch_size']:,} updates; the largest size is the "
            "whole training split. Validation and test splits are the same whole splits at every size.")


def method_lines(meta: dict) -> list[str]:
    """Each method's settings that differ from MethodConfig's defaults (the same at every size)."""
    defaults = MethodConfig(name="-").__dict__
    out = []
    for m in meta["study"]["base"]["methods"]:
        changed = [f"{k} = {v}" for k, v in m.items() if k != "name" and k in defaults and v != defaults[k]
                   and not (v == "inf" and defaults[k] == math.inf)]
        out.append(f"{m['name']}: " + (", ".join(changed) or "defaults"))
    return out


def render_markdown(meta: dict, summary: dict) -> str:
    lines = [f"# reglab report: {summary['study']}", "", _lead(summary), ""]
    lines += [f"- {x}" for x in significance_sentences(summary)]
    lines += ["", "## Gain over no regularization (pp of test error)", "", table_markdown(gain_table(summary)),
              "## Test error (%)", "", table_markdown(error_table(summary)), "## Setup", "", setup_text(meta, summary), ""]
    lines += [f"- {x}" for x in method_lines(meta)]
    if meta.get("command"):
        lines += ["", "```", str(meta["command"]), "```"]
    return "\n".join(lines) + "\n"
