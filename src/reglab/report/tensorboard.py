"""TensorBoard event files from a run directory's files: ``RUN_DIR/tensorboard/<method>/seed-<s>/``.

One TensorBoard run per variant, so TensorBoard overlays methods and seeds. The scalars are
the run directory's own columns under their own names (errors are fractions in [0, 1], losses
nats per example), rounded to float32, TensorBoard's scalar type (its default loader shows no
float64 scalars); the CSVs keep the float64 values:

* ``iteration/loss``, ``iteration/loss_data``, ``iteration/loss_penalty`` at step = optimizer
  update (every ``log_every``-th, as metrics_iter.csv holds them);
* ``epoch/<column>`` for every metric of metrics_epoch.csv (train/val/test loss and error,
  ``lr``, ``momentum``, ``sparsity`` = fraction of weights with |w| < 1e-3, ``weight_norm`` = sqrt(sum w^2)
  over all weights (no biases), ``mean_activation``,
  ``epoch_time_s`` ...) at step = epoch;
* ``weights/abs`` (analysis.npz, complete runs): the histogram of the final |w| over all weights
  (no biases) in the run's log-spaced bins, at step = last epoch; its sum and sum of squares are
  estimated from the bin midpoints, as the run stores counts only;
* ``hyperparameters`` (text): the method's settings and the seed.

Non-finite values (a variant after it stopped early or diverged) are left out, not drawn.
The same function serves ``reglab run --tensorboard`` at the end of a run and ``reglab report
RUN_DIR --tensorboard`` afterwards; it reads only the run's files (never the engine) and replaces
an earlier ``tensorboard/`` folder whole, so a kill leaves the old folder or the new one.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from pathlib import Path

import numpy as np

from reglab.errors import ReglabError
from reglab.results import Run

TENSORBOARD_DIR = "tensorboard"
NOT_METRICS = ("epoch", "variant", "method", "seed", "active", "diverged")  # bookkeeping columns of the CSVs
ITERATION_METRICS = ("loss", "loss_data", "loss_penalty")
INSTALL = "pip install 'reglab[tensorboard]' (in a clone: pip install -e '.[tensorboard]')"


def require_tensorboard() -> None:
    """Raise the one-line error when the tensorboard package (torch's SummaryWriter needs it) is absent."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ReglabError("TensorBoard event files need the tensorboard package, which is not installed. "
                          f"Fix: {INSTALL}, or drop --tensorboard / tensorboard = true.")


def run_name(method: str, seed: int) -> str:
    """The TensorBoard run (sub-folder of RUN_DIR/tensorboard) of one variant."""
    return f"{method}/seed-{seed}"


def write_tensorboard(run: Run) -> Path:
    """Write the event files of `run` (see the module docstring); returns RUN_DIR/tensorboard."""
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    final = run.dir / TENSORBOARD_DIR
    tmp = run.dir / f".{TENSORBOARD_DIR}-{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    epochs, iters = run.epoch_rows, run.iter_rows
    metrics = [c for c in epochs if c not in NOT_METRICS and np.issubdtype(epochs[c].dtype, np.number)]
    hist = run.analysis.get("weight_hist") if run.complete else None
    edges = run.analysis.get("weight_hist_edges")
    last_epoch = int(epochs["epoch"].max()) if len(epochs.get("epoch", ())) else 0
    try:
        for v in run.variants:
            writer = SummaryWriter(log_dir=str(tmp / run_name(v["method"], v["seed"])))
            try:
                for step, *values in _rows(iters, v["variant"], ("step", *ITERATION_METRICS)):
                    for name, value in zip(ITERATION_METRICS, values):
                        _scalar(writer, f"iteration/{name}", value, step)
                for epoch, *values in _rows(epochs, v["variant"], ("epoch", *metrics)):
                    for name, value in zip(metrics, values):
                        _scalar(writer, f"epoch/{name}", value, epoch)
                if hist is not None and edges is not None and np.isfinite(hist[v["variant"]]).all():
                    _histogram(writer, "weights/abs", hist[v["variant"]], edges, last_epoch)
                writer.add_text("hyperparameters", _settings_table(v), 0)
            finally:
                writer.close()
        old = run.dir / f".{TENSORBOARD_DIR}-{os.getpid()}.old"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _rows(columns: dict[str, np.ndarray], variant: int, names: tuple[str, ...]):
    """The `names` columns of one variant's rows, row by row (nothing for a run without rows yet)."""
    if len(columns.get("variant", ())) == 0:
        return iter(())
    mine = columns["variant"] == variant
    return zip(*(columns[c][mine] for c in names))


def _scalar(writer, tag: str, value, step) -> None:
    value = float(value)
    if math.isfinite(value):
        writer.add_scalar(tag, value, int(step))


def _histogram(writer, tag: str, counts: np.ndarray, edges: np.ndarray, step: int) -> None:
    """|w| counts in bins [edges[i], edges[i+1]) as a TensorBoard histogram (bucket i ends at edges[i+1])."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n <= 0:
        return
    mid = 0.5 * (edges[:-1] + edges[1:])
    used = np.flatnonzero(counts)
    writer.add_histogram_raw(tag, min=float(edges[used[0]]), max=float(edges[used[-1] + 1]), num=int(n),
                             sum=float((counts * mid).sum()), sum_squares=float((counts * mid ** 2).sum()),
                             bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(), global_step=step)


def _settings_table(variant: dict) -> str:
    """The variant's method settings as a Markdown table (TensorBoard renders text as Markdown)."""
    rows = [f"| seed | {variant['seed']} |"]
    rows += [f"| {k} | {v} |" for k, v in variant.get("hyperparameters", {}).items()]
    return "| setting | value |\n|---|---|\n" + "\n".join(rows)
