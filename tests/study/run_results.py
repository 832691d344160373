"""One run directory against another: the same results, wall-clock times aside (the kill/resume tests' check).

Imported by name by the tests beside it (tests/study is on sys.path as their rootdir).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from reglab.results import read_json, verify_run


def csv_without_wall_time(path: Path) -> list[list[str]]:
    with open(path) as f:
        rows = list(csv.reader(f))
    drop = [i for i, c in enumerate(rows[0]) if c.endswith("time_s")]
    return [[c for i, c in enumerate(r) if i not in drop] for r in rows]


def assert_same_results(run: Path, reference: Path, report: bool = True) -> None:
    """`run` holds what the uninterrupted `reference` holds (wall-clock times aside), and verifies."""
    for name in ("metrics_epoch.csv", "metrics_iter.csv"):
        assert csv_without_wall_time(run / name) == csv_without_wall_time(reference / name), name
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in rows]  # noqa: E731
    assert strip(read_json(run / "summary.json")["variants"]) == strip(read_json(reference / "summary.json")["variants"])
    with np.load(run / "analysis.npz") as a, np.load(reference / "analysis.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k], equal_nan=True), k
    assert read_json(run / "manifest.json")["status"] == "complete"
    assert (run / "report.html").is_file() == report
    assert not (run / ".lock").exists() and not (run / "metrics").exists()
    v = verify_run(run)
    assert v.ok, (v.missing, v.changed, v.extra)
    assert not list(run.rglob(".*.tmp")), "a temp file of an atomic write was left behind"
