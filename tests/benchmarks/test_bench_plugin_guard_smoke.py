"""benchmarks/bench_plugin_guard.py still runs end to end (a few steps); its timings are not checked."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_guard_benchmark_trains_the_plugin_both_ways_and_writes_the_ratio(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REGLAB_DATA_DIR"}   # random data of MNIST's shape
    out = tmp_path / "guard.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_plugin_guard.py"), "--repeats", "1",
                           "--steps", "2", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["study"]["n_variants"] == 6
    assert math.isfinite(result["study"]["guarded/unguarded"]["median"])
    assert result["call"]["us_per_call"]["guarded"] > 0 and "guarded / unguarded" in proc.stdout
