"""Per-epoch test-error gaps of a run, paired by seed: where does Table 9's ranking appear?

    python docs/examples/cpu-table9-probe/gap.py RUN_DIR [RUN_DIR ...] [--against l2] [--metric test_error]

Reads RUN_DIR's per-epoch metrics (finished or not: the epoch shards of an interrupted run too; several
RUN_DIRs: runs of one study that trained different seeds, joined) and prints,
for each epoch, every method's mean over seeds and its paired difference from `--against` with the 95%
Student-t interval over seeds (reglab.stats's convention), in percentage points.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # docs/examples: holm_per_epoch's reader
from holm_per_epoch import read_epochs  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="+", help="a run directory, or several runs of one study with different seeds")
    p.add_argument("--against", default="l2")
    p.add_argument("--metric", default="test_error")
    args = p.parse_args()
    try:        # a seed of a method in two runs, a missing run or metric: one line
        rows = read_epochs([Path(d) for d in args.run_dir], args.metric)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise SystemExit(f"gap.py: {e.args[0] if e.args else e}")
    table: dict[tuple[int, str], dict[int, float]] = {}
    for epoch, method, seed, value in rows.itertuples(index=False):
        table.setdefault((int(epoch), method), {})[int(seed)] = 100 * float(value)
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
