"""Do two finished runs of one study agree on the seeds they share? Every value, every epoch.

    python docs/examples/same_seeds.py RUN_A RUN_B

Reads each run's metrics_epoch.csv and metrics_iter.csv and compares, for the (method, seed) pairs both
runs trained, every column of every epoch (losses, errors, weight norm, sparsity, activations, lr, flags)
and every logged training step, exactly (no tolerance). The timing columns (epoch_time_s, eval_time_s)
and the variant's index (its position in the batch) are left out. Each variant's arithmetic does not
depend on how many others share the batch, so a run with more seeds should repeat a run with fewer on the
seeds they share, bit for bit. Exit status 1 when a value differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

LEFT_OUT = ("variant", "epoch_time_s", "eval_time_s")


def shared_rows(frame: pd.DataFrame, seeds: list[int], keys: list[str]) -> pd.DataFrame:
    """The rows of ``seeds``, without the columns left out, in a fixed order."""
    rows = frame[frame.seed.isin(seeds)].drop(columns=[c for c in LEFT_OUT if c in frame.columns])
    return rows.sort_values(keys).reset_index(drop=True)


def differing(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, int]:
    """Column -> how many cells differ (NaN equal to NaN); every column when the shapes differ."""
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        return {"(shape)": max(len(a), len(b))}
    diff = (a != b) & ~(a.isna() & b.isna())
    return {c: int(diff[c].sum()) for c in a.columns if diff[c].any()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    args = p.parse_args(argv)
    epoch = [pd.read_csv(d / "metrics_epoch.csv") for d in (args.run_a, args.run_b)]
    seeds = sorted(set(epoch[0].seed) & set(epoch[1].seed))
    keys = ["epoch", "method", "seed"]
    a, b = (shared_rows(e, seeds, keys) for e in epoch)
    bad_epoch = differing(a, b)
    print(f"seeds both runs trained: {seeds}")
    print(f"metrics_epoch.csv: {len(a)} rows x {a.shape[1]} columns, cells differing: {sum(bad_epoch.values())}"
          + (f" {bad_epoch}" if bad_epoch else ""))
    # the step log names variants by index: map them to (method, seed) through each run's epoch rows
    steps = []
    for d, e in zip((args.run_a, args.run_b), epoch):
        names = e[["variant", "method", "seed"]].drop_duplicates()
        steps.append(shared_rows(pd.read_csv(d / "metrics_iter.csv").merge(names, on="variant"), seeds,
                                 ["step", "method", "seed"]))
    bad_steps = differing(*steps)
    print(f"metrics_iter.csv: {len(steps[0])} rows x {steps[0].shape[1]} columns, cells differing: "
          f"{sum(bad_steps.values())}" + (f" {bad_steps}" if bad_steps else ""))
    return 1 if bad_epoch or bad_steps else 0


if __name__ == "__main__":
    sys.exit(main())
