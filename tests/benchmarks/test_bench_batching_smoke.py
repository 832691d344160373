"""benchmarks/bench_batching.py still runs end to end (a few steps); its timings are not checked."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_batching_benchmark_prints_its_ratios_and_writes_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REGLAB_DATA_DIR"}   # random data of MNIST's shape
    out = tmp_path / "batching.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_batching.py"), "--repeats", "1",
                           "--steps", "2", "--seeds", "1", "--pointcloud-epochs", "3", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    (row,) = result["batch_vs_alone"]
    assert row["n_variants"] == 6 and math.isfinite(row["ratios"]["alone/one_batch"]["median"])
    assert "alone/one_batch" in proc.stdout and "compaction:" in proc.stdout
    assert result["compaction"]["train_s"]["compacted"] > 0
