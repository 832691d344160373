"""At which epoch Table 9's tiers become significant in a run: per epoch, every pair of the run's
methods compared paired by seed, Holm-corrected over all pairs at that epoch.

    python docs/examples/holm_per_epoch.py RUN_DIR [--metric test_error] [--every 5]

Reads RUN_DIR/metrics/epoch-*.csv (one row per variant and epoch, as a study writes them; rows of a
variant that had stopped, `active` 0, are left out). At each epoch the metric of seed s of A is paired
with seed s of B (same data order) for each of the k (k - 1) / 2 pairs of the run's k methods: the
paired t-test's p (reglab.stats.paired_comparison, scipy's ttest_rel) and Holm's step-down adjusted p
over that family of pairs (reglab.stats.holm_adjust), as summary.json has them for the last epoch.

Prints a Markdown table, one row every `--every` epochs (and the last): for each pair issue 18 names
that the run has (dropout+max_norm, dropout+l2 and max_norm, each against l2, l2+l1_late and l2+kl),
A - B in percentage points (mean over seeds) and Holm's p; * marks p_holm < 0.05 (either sign). The last
lines name, per pair, the first epoch from which A is significantly below B (A - B < 0, p_holm < 0.05) at
every later epoch.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd

from reglab.stats import holm_adjust, paired_comparison

BETTER = ("dropout+max_norm", "dropout+l2", "max_norm")
L2_FAMILY = ("l2", "l2+l1_late", "l2+kl")


def read_epochs(run_dir: Path, metric: str) -> pd.DataFrame:
    """All epoch rows of `run_dir` (epoch, method, seed, `metric`), active variants only."""
    files = sorted((run_dir / "metrics").glob("epoch-*.csv"))
    if not files:
        raise FileNotFoundError(f"no metrics/epoch-*.csv under {run_dir}: pass a study's run directory")
    rows = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    if metric not in rows.columns:
        raise KeyError(f"{metric!r} is not a column of the epoch metrics; they are {', '.join(rows.columns)}")
    if "active" in rows.columns:
        rows = rows[rows["active"] == 1]
    return rows[["epoch", "method", "seed", metric]]


def holm_by_epoch(run_dir: Path, metric: str = "test_error") -> tuple[list[str], dict[int, dict]]:
    """(methods in the run's order, {epoch: {(A, B): comparison with p_holm}}) over every pair."""
    rows = read_epochs(run_dir, metric)
    methods = list(dict.fromkeys(rows["method"]))
    by_epoch: dict[int, dict] = {}
    for epoch, at in rows.groupby("epoch", sort=True):
        values = {m: dict(zip(g["seed"], g[metric])) for m, g in at.groupby("method")}
        pairs = [(a, b) for a, b in itertools.combinations(methods, 2) if a in values and b in values]
        comparisons = []
        for a, b in pairs:
            seeds = sorted(set(values[a]) & set(values[b]))
            comparisons.append(paired_comparison([values[a][s] for s in seeds], [values[b][s] for s in seeds]))
        by_epoch[int(epoch)] = dict(zip(pairs, holm_adjust(comparisons)))
    return methods, by_epoch


def _named_pairs(methods: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in BETTER for b in L2_FAMILY if a in methods and b in methods]


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


def table(run_dir: Path, metric: str = "test_error", every: int = 5) -> str:
    methods, by_epoch = holm_by_epoch(run_dir, metric)
    pairs = _named_pairs(methods)
    if not pairs:
        raise ValueError(f"the run has none of the pairs this script reports ({', '.join(BETTER)} against "
                         f"{', '.join(L2_FAMILY)}); its methods are {', '.join(methods)}")
    epochs = sorted(by_epoch)
    shown = [e for e in epochs if e % every == 0 or e == epochs[-1]]
    n_pairs = len(next(iter(by_epoch.values())))
    lines = [f"{metric}, A - B in pp (mean over seeds, paired by seed) and Holm's p over the {n_pairs} pairs "
             "at each epoch; * p_holm < 0.05", "",
             "| epoch | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " |",
             "|---:|" + "---|" * len(pairs)]
    for e in shown:
        cells = []
        for a, b in pairs:
            m, q = _lookup(by_epoch[e], a, b)
            if m is None:
                cells.append("-")
                continue
            star = " *" if q is not None and q < 0.05 else ""
            cells.append(f"{100 * m:+.2f} (p {'-' if q is None else f'{q:.2g}'}){star}")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines.append("")
    for a, b in pairs:
        below = [_significantly_below(*_lookup(by_epoch[e], a, b)) for e in epochs]
        since = next((epochs[i] for i in range(len(epochs)) if all(below[i:])), None)
        lines.append(f"{a} below {b}: " + ("not significant at the last epoch" if since is None
                                            else f"significant at every epoch from {since} on"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--metric", default="test_error", help="a column of metrics/epoch-*.csv (default test_error)")
    parser.add_argument("--every", type=int, default=5, help="print every N-th epoch and the last (default 5)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be a positive number of epochs, got {args.every}")
    try:
        print(table(args.run_dir, args.metric, args.every))
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"holm_per_epoch: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
