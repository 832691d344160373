"""The benchmark script still runs end to end (tiny mode: a few steps); its timings are not checked."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_study.py"


def run_tiny(tmp_path: Path, *extra: str, data_dir: str | None) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if k != "REGLAB_DATA_DIR"}
    if data_dir is not None:
        env["REGLAB_DATA_DIR"] = data_dir
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--threads", "1", "--json", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def test_tiny_benchmark_on_random_data_prints_a_row_per_seed_count_with_finite_timings(tmp_path):
    proc, result = run_tiny(tmp_path, data_dir=None)
    assert "random data of MNIST shape" in proc.stdout
    assert "fairness check skipped" in proc.stdout
    rows = result["configurations"]
    assert [(r["net"], r["n_seeds"], r["n_variants"]) for r in rows] == [("784-32-10", 1, 6), ("784-32-10", 2, 12)]
    for r in rows:
        for key in ("hand_s_per_epoch", "reglab_s_per_epoch", "ratio_median", "reglab_gflops", "gemm_peak_gflops"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r[key])
        assert r["reglab_gflops"] / r["gemm_peak_gflops"] == pytest.approx(r["reglab_fraction_of_peak"])
        assert "| 784-32-10 | %d |" % r["n_seeds"] in proc.stdout
        bf16 = r["bfloat16"]
        for key in ("hand_autocast_s_per_epoch", "reglab_s_per_epoch", "ratio_vs_hand_fp32_median",
                    "ratio_vs_hand_autocast_median", "gemm_peak_gflops"):
            assert math.isfinite(bf16[key]) and bf16[key] > 0, (key, bf16[key])
        assert r["hand_s_per_epoch"] / bf16["reglab_s_per_epoch"] == pytest.approx(
            bf16["ratio_vs_hand_fp32_median"])      # one repeat: the median is that repeat's ratio
    assert "bfloat16 products (reglab --matmul-dtype bfloat16" in proc.stdout
    assert result["fairness"] is None


def test_no_bfloat16_times_float32_only(tmp_path):
    proc, result = run_tiny(tmp_path, "--seeds", "1", "--no-bfloat16", data_dir=None)
    assert result["configurations"][0]["bfloat16"] is None
    assert "bfloat16 products" not in proc.stdout


def test_the_table9_cpu_net_is_timed_with_that_presets_methods(tmp_path):
    proc, result = run_tiny(tmp_path, "--nets", "table9-cpu", "--seeds", "1", "--no-bfloat16", data_dir=None)
    [row] = result["configurations"]
    assert (row["net"], row["n_seeds"], row["n_variants"]) == ("784-512-512-10", 1, 6)
    assert math.isfinite(row["reglab_s_per_epoch"]) and row["reglab_s_per_epoch"] > 0
    assert "mnist_table9_cpu()'s values" in proc.stdout


@pytest.mark.slow
def test_tiny_benchmark_on_mnist_runs_the_fairness_check_for_all_six_methods(tmp_path):
    data_dir = os.environ.get("REGLAB_DATA_DIR")
    if not data_dir:
        pytest.skip("REGLAB_DATA_DIR is not set: the fairness check needs MNIST")
    proc, result = run_tiny(tmp_path, "--seeds", "1", data_dir=data_dir)
    fairness = result["fairness"]
    assert [m["method"] for m in fairness["methods"]] == [
        "l2", "l2+l1_late", "l2+kl", "max_norm", "dropout+l2", "dropout+max_norm"]
    for m in fairness["methods"]:
        assert len(m["hand_test_error"]) == len(m["reglab_test_error"]) == fairness["n_seeds"]
        # a few hundred steps on 2,000 examples must already beat chance (90% error) by far, both ways
        assert max(m["hand_test_error"] + m["reglab_test_error"]) < 0.5, m
    bf16 = fairness["bfloat16"]
    assert bf16["matmul_dtype"] == "bfloat16"
    assert [m["hand_test_error"] for m in bf16["methods"]] == [m["hand_test_error"] for m in fairness["methods"]]
    assert max(e for m in bf16["methods"] for e in m["reglab_test_error"]) < 0.5
    assert proc.stdout.count("verdict:") == 2


def test_profile_script_reports_the_step_time_and_the_matrix_product_share():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_engine.py"), "--net", "tiny",
                           "--seeds", "1", "--steps", "2", "--rows", "3", "--threads", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "784-32-10, 6 method-seeds, 1 threads: step" in proc.stdout
    assert "matrix products" in proc.stdout and "aten::" in proc.stdout


def test_shard_benchmark_reports_both_ways_and_their_ratio():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_shards.py"), "--net", "tiny",
                           "--seeds", "1", "--steps", "2", "--repeats", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "784-32-10, 6 method-seeds: one trainer" in proc.stdout and "2 shards" in proc.stdout


def test_chunk_benchmark_reports_one_batch_against_chunks_and_their_ratio():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_chunks.py"), "--net", "tiny",
                           "--seeds", "2", "--steps", "2", "--repeats", "1", "--threads", "1", "--budget-mib", "0.8"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "784-32-10, 12 method-seeds, 1 threads: one batch" in proc.stdout
    assert "3 chunks of [4, 4, 4] variants" in proc.stdout and "ratio" in proc.stdout


def test_chunk_benchmark_times_other_widths_and_chunks_under_the_engines_minimum():
    """--hidden keeps --net's methods on other widths; --min-variants lets chunks of 2 through (the engine's
    minimum, 4, would step these 12 variants as one batch); a malformed width is a one-line error."""
    script = str(ROOT / "benchmarks" / "bench_chunks.py")
    proc = subprocess.run([sys.executable, script, "--net", "tiny", "--hidden", "16,16", "--seeds", "2", "--steps", "2",
                           "--repeats", "1", "--threads", "1", "--budget-mib", "0.2", "--min-variants", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "784-16-16-10, 12 method-seeds, 1 threads: one batch" in proc.stdout
    assert "6 chunks of [2, 2, 2, 2, 2, 2] variants" in proc.stdout
    bad = subprocess.run([sys.executable, script, "--hidden", "16,x"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    assert bad.returncode == 2 and "--hidden: must be positive integers separated by commas" in bad.stderr
