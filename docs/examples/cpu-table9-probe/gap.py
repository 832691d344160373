"""Per-epoch test-error gaps of a run, paired by seed: where does Table 9's ranking appear?

    python docs/examples/cpu-table9-probe/gap.py RUN_DIR [RUN_DIR ...] [--against l2] [--metric test_error]

Reads RUN_DIR's per-epoch metrics (finished or not: the epoch shards of an interrupted run too; several
RUN_DIRs: runs of one study that trained different seeds, joined) and prints,
for each epoch, every method's mean over seeds and its paired difference from `--against` with the 95%
Student-t interval over seeds (reglab.stats's convention), in percentage points.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os

import numpy as np
from scipy import stats


def epoch_rows(run_dir: str) -> list[dict]:
    """Every per-epoch row: the consolidated CSV of a finished run, else the shards of an unfinished one."""
    done = os.path.join(run_dir, "metrics_epoch.csv")
    files = [done] if os.path.exists(done) else sorted(glob.glob(os.path.join(run_dir, "metrics", "epoch-*.csv")))
    rows = []
    for f in files:
        with open(f, newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="+", help="a run directory, or several runs of one study with different seeds")
    p.add_argument("--against", default="l2")
    p.add_argument("--metric", default="test_error")
    args = p.parse_args()
    table: dict[tuple[int, str], dict[int, float]] = {}
    for r in (r for run_dir in args.run_dir for r in epoch_rows(run_dir)):
        cell = table.setdefault((int(r["epoch"]), r["method"]), {})
        if int(r["seed"]) in cell:
            raise SystemExit(f"gap.py: {r['method']} seed {r['seed']} is in more than one of the runs: join runs "
                             "that trained different seeds")
        cell[int(r["seed"])] = 100 * float(r[args.metric])
    methods = list(dict.fromkeys(m for _, m in table))
    for epoch in sorted({e for e, _ in table}):
        ref = table[(epoch, args.against)]
        cells = []
        for m in methods:
            vals = table.get((epoch, m), {})
            seeds = sorted(set(vals) & set(ref))
            mean = np.mean([vals[s] for s in seeds])
            if m == args.against:
                cells.append(f"{m} {mean:.2f}")
                continue
            d = np.array([vals[s] - ref[s] for s in seeds])
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
            cells.append(f"{m} {mean:.2f} ({d.mean():+.2f} +- {half:.2f})")
        print(f"epoch {epoch:3d}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
