"""A run directory as pandas DataFrames, for notebooks: ``reglab.load_run(RUN_DIR).epochs``.

Three long-format tables, one row per (variant, epoch), (variant, logged step) and variant::

    run = reglab.load_run("runs/mnist-quick-<time>")
    run.epochs       # method, seed, epoch, variant, train_loss, train_error, val_loss, val_error, test_loss,
                     # test_error, sparsity, mean_activation, lr, momentum, ... (metrics_epoch.csv)
    run.iterations   # method, seed, step, epoch, variant, loss_data, loss_penalty, loss (metrics_iter.csv)
    run.summary      # method, seed, variant, test_error, val_error, returned_model, diverged, ... (summary.json)
    run.epochs.groupby(["method", "epoch"]).val_error.mean().unstack("method").plot()

Units are the run directory's: errors are fractions in [0, 1], losses nats per example, ``lr`` the
learning rate of the last step of the epoch; a variant that stopped early or diverged has NaN
metrics after it stopped. Several runs: :func:`load_runs` stacks them with a ``run`` column.

The tables are read through :func:`reglab.results.load_run`, the report's own reader, so a
DataFrame and the report never disagree on a value; pandas only shapes them. (That reader stays
hand-written rather than ``pandas.read_csv``, which the runner would also need mid-run to
consolidate shards: it must refuse a shard whose header or row length is off, where read_csv pads
a short row with NaN and concat unions differing headers; it must never turn a method named ``NA``
or ``null`` into a missing value; and it reads floats back bit-identically on every pandas version,
which pandas 2's default parser did not promise.)
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path

import pandas as pd

from reglab import results
from reglab.errors import ReglabError

BOOL_COLUMNS = ("active", "diverged")  # stored as 1/0 in the CSVs
TABLES = ("epochs", "iterations", "summary")
PARQUET_DIR = "parquet"


class RunFrames:
    """One run directory: its tables as DataFrames, plus its config, manifest and report path.

    Path-like (``os.fspath(run)`` is its directory), so ``reglab.build_report(run)`` works.
    """

    def __init__(self, run: results.Run):
        self.raw = run                   # the reglab.results.Run the frames come from
        self.dir: Path = run.dir
        self.config: dict = run.config
        self.manifest: dict = run.manifest

    def __fspath__(self) -> str:
        return os.fspath(self.dir)

    def __repr__(self) -> str:
        status = self.manifest.get("status", "?")
        return (f"<reglab run {self.manifest.get('study', '?')!r} at {self.dir}: {status}, "
                f"{len(self.methods)} methods x {len(self.config.get('seeds', []))} seeds>")

    @property
    def complete(self) -> bool:
        return self.raw.complete

    @property
    def methods(self) -> list[str]:
        return self.raw.methods

    @property
    def report(self) -> Path | None:
        """report.html, or None when it has not been built (``reglab.build_report(run)`` builds it)."""
        p = self.dir / "report.html"
        return p if p.is_file() else None

    @cached_property
    def epochs(self) -> pd.DataFrame:
        """One row per (variant, epoch): the columns of metrics_epoch.csv, method and seed first."""
        return _first(_frame(self.raw.epoch_rows), ["method", "seed", "epoch", "variant"])

    @cached_property
    def iterations(self) -> pd.DataFrame:
        """One row per (variant, logged step): step, epoch, loss_data, loss_penalty, loss (nats/example)."""
        df = _frame(self.raw.iter_rows)
        if len(df):
            by_variant = {v["variant"]: (v["method"], v["seed"]) for v in self.raw.variants}
            df.insert(0, "seed", df["variant"].map(lambda v: by_variant[v][1]))
            df.insert(0, "method", df["variant"].map(lambda v: by_variant[v][0]))
        return _first(df, ["method", "seed", "step", "epoch", "variant"])

    @cached_property
    def summary(self) -> pd.DataFrame:
        """One row per variant from summary.json: the returned model's test_error and val_error, the last
        epoch's metrics (``last_*``), best_epoch, stop_epoch, diverged. Empty until the run completes."""
        rows = (self.raw.summary or {}).get("variants", [])
        df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["method", "seed", "variant"])
        return _first(df, ["method", "seed", "variant", "test_error", "val_error", "returned_model", "diverged"])

    def to_parquet(self, directory: str | Path | None = None) -> list[Path]:
        """Write epochs, iterations and summary as ``<table>.parquet`` (default folder RUN_DIR/parquet/)."""
        return write_parquet({t: getattr(self, t) for t in TABLES},
                             Path(directory) if directory is not None else self.dir / PARQUET_DIR)


class RunSet:
    """Several runs stacked: each table has a first column ``run`` naming the run its rows come from."""

    def __init__(self, runs: Mapping[str, RunFrames]):
        self.runs: dict[str, RunFrames] = dict(runs)

    def __repr__(self) -> str:
        return f"<reglab runs: {', '.join(self.runs)}>"

    def _stack(self, table: str) -> pd.DataFrame:
        parts = [getattr(r, table).assign(run=label) for label, r in self.runs.items()]
        return _first(pd.concat(parts, ignore_index=True), ["run"])

    @cached_property
    def epochs(self) -> pd.DataFrame:
        return self._stack("epochs")

    @cached_property
    def iterations(self) -> pd.DataFrame:
        return self._stack("iterations")

    @cached_property
    def summary(self) -> pd.DataFrame:
        return self._stack("summary")


def load_run(run_dir: str | os.PathLike) -> RunFrames:
    """Read a run directory (complete, running or interrupted) as DataFrames; see the module docstring."""
    return RunFrames(results.load_run(run_dir))


def load_runs(run_dirs: Iterable[str | os.PathLike] | Mapping[str, str | os.PathLike]) -> RunSet:
    """Several run directories; ``run`` is the mapping's key, else each folder's name (its path when
    two share a name), e.g. ``load_runs({"dropout 0.5": a, "dropout 0.3": b}).summary``."""
    if isinstance(run_dirs, Mapping):
        labelled = {str(k): Path(v) for k, v in run_dirs.items()}
    else:
        paths = [Path(p) for p in run_dirs]
        names = [p.name for p in paths]
        use_names = len(set(names)) == len(names)
        labelled = {(p.name if use_names else str(p)): p for p in paths}
        if len(labelled) != len(paths):
            raise ReglabError("load_runs got the same run directory twice. Fix: list each run once.")
    if not labelled:
        raise ReglabError("load_runs got no run directories. Fix: pass a list of folders `reglab run` wrote.")
    return RunSet({label: load_run(p) for label, p in labelled.items()})


def write_parquet(tables: Mapping[str, pd.DataFrame], directory: Path) -> list[Path]:
    """Each table to ``directory/<name>.parquet`` (atomically); needs pyarrow."""
    require_pyarrow()
    written = []
    for name, df in tables.items():
        buf = io.BytesIO()
        df.to_parquet(buf, engine="pyarrow", index=False)
        path = directory / f"{name}.parquet"
        results.atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written


def require_pyarrow() -> None:
    """Raise the one-line error when pyarrow (pandas' Parquet engine) is absent."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ReglabError("writing Parquet needs the pyarrow package, which is not installed. "
                          "Fix: pip install 'reglab[parquet]' (in a clone: pip install -e '.[parquet]').") from None


def _frame(columns: dict) -> pd.DataFrame:
    df = pd.DataFrame({k: v for k, v in columns.items()})
    for c in BOOL_COLUMNS:
        if c in df and len(df):
            df[c] = df[c].astype(bool)
    return df


def _first(df: pd.DataFrame, leading: list[str]) -> pd.DataFrame:
    """`df` with the `leading` columns it has first, in that order, then the rest as they were."""
    lead = [c for c in leading if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]
