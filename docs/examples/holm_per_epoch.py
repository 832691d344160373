"""At which epoch Table 9's tiers become significant in a run: per epoch, every pair of the run's
methods compared paired by seed, Holm-corrected over all pairs at that epoch.

    python docs/examples/holm_per_epoch.py RUN_DIR [RUN_DIR ...] [--metric test_error] [--every 5] [--methods A,B]

Reads RUN_DIR/metrics_epoch.csv, or a running or interrupted run's RUN_DIR/metrics/epoch-*.csv (one row
per variant and epoch; rows of a variant that had stopped, `active` 0, are left out). Several RUN_DIRs
are joined: runs of one study that trained different seeds (a seed of a method in two of them is an
error). `--methods A,B,...` keeps only those methods: the family is then their pairs. At each epoch the
metric of seed s of A is paired with seed s of B (same data order) for each of the k (k - 1) / 2 pairs
of the run's k methods: the
paired t-test's p (reglab.stats.paired_comparison, scipy's ttest_rel) and Holm's step-down adjusted p
over that family of pairs (reglab.stats.holm_adjust), as summary.json has them for the last epoch.

Prints a Markdown table, one row every `--every` epochs (and the last): for each pair issue 18 names
that the run has (dropout+max_norm, dropout+l2 and max_norm, each against l2, l2+l1_late and l2+kl),
A - B in percentage points (mean over seeds) and Holm's p; * marks p_holm < 0.05 (either sign). The last
lines name, per pair, the first epoch from which A is significantly below B (A - B < 0, p_holm < 0.05) at
every later epoch.

    python docs/examples/holm_per_epoch.py RUN_DIR --by-seeds [--epoch N]

How many seeds a difference needs: at one epoch (the last by default), the same family of pairs over the
run's first n seeds (in ascending seed order) for every n from 3 to all of them (2 seeds leave the
t-test one degree of freedom), and per named pair the smallest n from which A is significantly below B
with every larger n. A study with more seeds than it needs is read this way to size the next one;
the seeds are taken in a fixed order, never chosen by their results.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reglab.stats import holm_adjust, paired_comparison

BETTER = ("dropout+max_norm", "dropout+l2", "max_norm")
L2_FAMILY = ("l2", "l2+l1_late", "l2+kl")
MIN_SEEDS = 3     # --by-seeds' smallest count: with 2 the paired t-test has one degree of freedom


def read_epochs(run_dirs: Path | Sequence[Path], metric: str, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """All epoch rows (epoch, method, seed, `metric`) of one run directory, or of several runs of one
    study with different seeds joined (a variant's numbers depend on its method, its seed and the data
    order, not on the other variants), active variants only: a running or interrupted run's
    metrics/epoch-*.csv (the truth while they exist), else a finished run's metrics_epoch.csv (the shards
    merged). `methods`: only these (the family is then their pairs)."""
    dirs = [run_dirs] if isinstance(run_dirs, Path) else list(run_dirs)
    rows = pd.concat([_read_run(d, metric) for d in dirs], ignore_index=True)
    if methods:
        have = list(dict.fromkeys(rows["method"]))
        missing = [m for m in methods if m not in have]
        if missing:
            raise ValueError(f"no method {missing[0]!r} in the run; its methods are {', '.join(have)}")
        rows = rows[rows["method"].isin(methods)]
    twice = rows[rows.duplicated(["epoch", "method", "seed"])]
    if len(twice):
        first = twice.iloc[0]
        raise ValueError(f"{first['method']} seed {first['seed']} is in more than one of the runs: join runs "
                         "that trained different seeds")
    return rows


def _read_run(run_dir: Path, metric: str) -> pd.DataFrame:
    files = sorted((run_dir / "metrics").glob("epoch-*.csv")) or sorted(run_dir.glob("metrics_epoch.csv"))
    if not files:
        raise FileNotFoundError(f"no metrics_epoch.csv or metrics/epoch-*.csv under {run_dir}: "
                                "pass a study's run directory")
    rows = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    if metric not in rows.columns:
        raise KeyError(f"{metric!r} is not a column of the epoch metrics; they are {', '.join(rows.columns)}")
    if "active" in rows.columns:
        rows = rows[rows["active"] == 1]
    return rows[["epoch", "method", "seed", metric]]


def _holm_family(methods: list[str], values: dict[str, dict[int, float]]) -> dict:
    """{(A, B): comparison with p_holm} over every pair of `methods` that `values` ({method: {seed:
    value}}) holds, each paired over the seeds both have, Holm-adjusted as one family."""
    pairs = [(a, b) for a, b in itertools.combinations(methods, 2) if a in values and b in values]
    comparisons = []
    for a, b in pairs:
        seeds = sorted(set(values[a]) & set(values[b]))
        comparisons.append(paired_comparison([values[a][s] for s in seeds], [values[b][s] for s in seeds]))
    return dict(zip(pairs, holm_adjust(comparisons)))


def _values(at: pd.DataFrame, metric: str) -> dict[str, dict[int, float]]:
    return {m: dict(zip(g["seed"], g[metric])) for m, g in at.groupby("method")}


def holm_by_epoch(run_dir: Path | Sequence[Path], metric: str = "test_error",
                  methods: Sequence[str] | None = None) -> tuple[list[str], dict[int, dict]]:
    """(methods in the run's order, {epoch: {(A, B): comparison with p_holm}}) over every pair."""
    rows = read_epochs(run_dir, metric, methods)
    methods = list(dict.fromkeys(rows["method"]))
    by_epoch = {int(epoch): _holm_family(methods, _values(at, metric))
                for epoch, at in rows.groupby("epoch", sort=True)}
    return methods, by_epoch


def holm_by_seed_count(run_dir: Path | Sequence[Path], metric: str = "test_error", epoch: int | None = None,
                       methods: Sequence[str] | None = None) -> tuple[list[str], int, dict[int, dict]]:
    """(methods, the epoch read, {n: {(A, B): comparison with p_holm}}): the family of every pair over
    the run's first n seeds (ascending seed numbers), for n = 3 .. all seeds, at `epoch` (default the
    last)."""
    rows = read_epochs(run_dir, metric, methods)
    epochs = sorted(int(e) for e in rows["epoch"].unique())
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
        raise ValueError(f"the run has no epoch {epoch}; its epochs are {epochs[0]}..{epochs[-1]}")
    at = rows[rows["epoch"] == epoch]
    methods = list(dict.fromkeys(rows["method"]))
    seeds = sorted(int(s) for s in at["seed"].unique())
    if len(seeds) < MIN_SEEDS:
        raise ValueError(f"--by-seeds needs a run with at least {MIN_SEEDS} seeds; this one has {len(seeds)}")
    values = _values(at, metric)
    by_count = {}
    for n in range(MIN_SEEDS, len(seeds) + 1):
        first = set(seeds[:n])
        by_count[n] = _holm_family(methods, {m: {s: v for s, v in vs.items() if s in first}
                                             for m, vs in values.items()})
    return methods, epoch, by_count


def _named_pairs(methods: list[str]) -> list[tuple[str, str]]:
    pairs = [(a, b) for a in BETTER for b in L2_FAMILY if a in methods and b in methods]
    if not pairs:
        raise ValueError(f"the run has none of the pairs this script reports ({', '.join(BETTER)} against "
                         f"{', '.join(L2_FAMILY)}); its methods are {', '.join(methods)}")
    return pairs


def _lookup(at: dict, a: str, b: str) -> tuple[float | None, float | None]:
    """(A - B mean difference, p_holm) whichever way round the family holds the pair."""
    if (a, b) in at:
        c, sign = at[(a, b)], 1.0
    elif (b, a) in at:
        c, sign = at[(b, a)], -1.0
    else:
        return None, None
    m = c["mean_difference"]
    return (None if m is None else sign * m), c.get("p_holm")


def _significantly_below(m: float | None, q: float | None) -> bool:
    return m is not None and q is not None and m < 0.0 and q < 0.05


def _cell(at: dict, a: str, b: str) -> str:
    m, q = _lookup(at, a, b)
    if m is None:
        return "-"
    star = " *" if q is not None and q < 0.05 else ""
    return f"{100 * m:+.2f} (p {'-' if q is None else f'{q:.2g}'}){star}"


def _since(keys: list[int], at: dict[int, dict], a: str, b: str) -> int | None:
    """The first key from which A is significantly below B at that key and every later one."""
    below = [_significantly_below(*_lookup(at[k], a, b)) for k in keys]
    return next((keys[i] for i in range(len(keys)) if all(below[i:])), None)


def _pair_table(title: str, key: str, keys: list[int], at: dict[int, dict], pairs: list[tuple[str, str]]) -> list[str]:
    """A Markdown table: one row per key (epoch or seed count), one column per named pair, then a blank line."""
    return [title, "", f"| {key} | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " |",
            "|---:|" + "---|" * len(pairs),
            *(f"| {k} | " + " | ".join(_cell(at[k], a, b) for a, b in pairs) + " |" for k in keys), ""]


def table(run_dir: Path | Sequence[Path], metric: str = "test_error", every: int = 5,
          methods: Sequence[str] | None = None) -> str:
    methods, by_epoch = holm_by_epoch(run_dir, metric, methods)
    pairs = _named_pairs(methods)
    epochs = sorted(by_epoch)
    shown = [e for e in epochs if e % every == 0 or e == epochs[-1]]
    n_pairs = len(next(iter(by_epoch.values())))
    lines = _pair_table(f"{metric}, A - B in pp (mean over seeds, paired by seed) and Holm's p over the {n_pairs} "
                        "pairs at each epoch; * p_holm < 0.05", "epoch", shown, by_epoch, pairs)
    for a, b in pairs:
        since = _since(epochs, by_epoch, a, b)
        lines.append(f"{a} below {b}: " + ("not significant at the last epoch" if since is None
                                            else f"significant at every epoch from {since} on"))
    return "\n".join(lines)


def seeds_table(run_dir: Path | Sequence[Path], metric: str = "test_error", epoch: int | None = None,
                methods: Sequence[str] | None = None) -> str:
    methods, epoch, by_count = holm_by_seed_count(run_dir, metric, epoch, methods)
    pairs = _named_pairs(methods)
    counts = sorted(by_count)
    n_pairs = len(by_count[counts[-1]])
    lines = _pair_table(f"{metric} at epoch {epoch}, the run's first n seeds: A - B in pp (mean over seeds, paired "
                        f"by seed) and Holm's p over the {n_pairs} pairs; * p_holm < 0.05", "seeds", counts, by_count,
                        pairs)
    for a, b in pairs:
        since = _since(counts, by_count, a, b)
        lines.append(f"{a} below {b}: " + (f"not significant with all {counts[-1]} seeds" if since is None
                                            else f"significant only with all {since} seeds" if since == counts[-1]
                                            else f"significant with the first {since} seeds and with every "
                                                 "larger count"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="+",
                        help="a study's run directory, or several runs of one study that trained different "
                             "seeds (joined: each seed of each method once)")
    parser.add_argument("--metric", default="test_error", help="a column of metrics_epoch.csv (default test_error)")
    parser.add_argument("--every", type=int, default=5, help="print every N-th epoch and the last (default 5)")
    parser.add_argument("--by-seeds", action="store_true",
                        help="one row per count of the run's first seeds, at one epoch, instead of per epoch")
    parser.add_argument("--epoch", type=int, default=None, help="with --by-seeds: the epoch to read (default the last)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated: compare only these methods, a family of their pairs (default all)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be a positive number of epochs, got {args.every}")
    if args.epoch is not None and not args.by_seeds:
        parser.error("--epoch goes with --by-seeds (the per-epoch table reads every epoch)")
    try:
        methods = args.methods.split(",") if args.methods else None
        print(seeds_table(args.run_dir, args.metric, args.epoch, methods) if args.by_seeds
              else table(args.run_dir, args.metric, args.every, methods))
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"holm_per_epoch: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
