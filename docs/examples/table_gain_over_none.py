"""Each method's gain over `none` in a run's summary.json, paired by seed, Holm-corrected.

    python docs/examples/table_gain_over_none.py RUN_DIR

Prints the Markdown table of docs/studies.md's table-study results: per method the test error of
the model it returns (mean over seeds, 95% Student-t interval), and the gain over `none`
(none - method, percentage points of test error, paired by seed: seed s of `none` against seed s
of the method, same data order), its 95% interval (not corrected), the paired t-test's p and
Holm's step-down p over the family of every method compared with `none` -- the same statistics
as the data-size study's (reglab.study.datasize.summarize), from reglab.stats. * marks
p_holm < 0.05. It reads only the run's summary.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reglab.stats import describe, holm_adjust, paired_comparison

REFERENCE = "none"


def gain_table(run_dir: Path) -> str:
    summary = json.loads((run_dir / "summary.json").read_text())
    by_seed: dict[str, dict[int, float]] = {}
    for row in summary["variants"]:
        error = row.get("test_error")
        by_seed.setdefault(row["method"], {})[int(row["seed"])] = float("nan") if error is None else float(error)
    seeds = sorted(by_seed[REFERENCE])
    others = [m for m in by_seed if m != REFERENCE]
    gains = holm_adjust([paired_comparison([by_seed[REFERENCE][s] for s in seeds], [by_seed[m][s] for s in seeds])
                         for m in others])
    pct = lambda x: f"{100 * x:.2f}"                      # noqa: E731
    signed = lambda x: f"{100 * x:+.2f}"                   # noqa: E731
    lines = [f"| method | test error % (mean [95% CI], {len(seeds)} seeds) | gain over none, pp (mean [95% CI]) "
             "| p | p_holm |", "|---|---|---|---|---|"]
    for m in [REFERENCE] + others:
        d = describe([by_seed[m][s] for s in seeds])
        err = f"{pct(d['mean'])} [{pct(d['ci95'][0])}, {pct(d['ci95'][1])}]" if d["ci95"] else pct(d["mean"])
        if m == REFERENCE:
            lines.append(f"| {m} | {err} | - | - | - |")
            continue
        g = gains[others.index(m)]
        ci = f"[{signed(g['ci95'][0])}, {signed(g['ci95'][1])}]" if g["ci95"] else "(n < 2)"
        star = " *" if g.get("significant_holm") else ""
        p = "-" if g["p_value"] is None else f"{g['p_value']:.2g}"
        q = "-" if g["p_holm"] is None else f"{g['p_holm']:.2g}"
        lines.append(f"| {m} | {err} | {signed(g['mean_difference'])} {ci}{star} | {p} | {q} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/examples/table_gain_over_none.py RUN_DIR")
    print(gain_table(Path(sys.argv[1])))
