"""The run directory: the only thing the engine side and the report side share.

Every file describes itself (method, seed, hyperparameters, dataset checksums
and package versions live in JSON beside the arrays); nothing needs the
folder name to be understood. Every write is atomic: the bytes go to a temp
file in the same folder, are flushed to disk, and ``os.replace`` puts them in
place, so a kill leaves either the old file or the new one, never half of one.

Layout (see docs/architecture.md):

    manifest.json        format, study, status (running|complete|interrupted), epochs_done, files, command,
                         sha256 {file: hex digest} of every other file (checked by `reglab verify`)
    config.json/.toml    resolved StudyConfig
    environment.json     python/torch/numpy versions, CPU, threads, GPU
    dataset.json         where the data came from, checksums, split sizes
    variants.json        [{variant, method, seed, hyperparameters}]
    metrics/epoch-XXXX.csv, metrics/iter-XXXX.csv   per-epoch shards while running
    metrics_epoch.csv, metrics_iter.csv             consolidated when the run completes
    analysis.npz         arrays for the report (weight histograms, activations, decision grid)
    timing.json, summary.json, checkpoints/

This package imports neither the engine nor the report.

The package is split by concern: :mod:`reglab.results.files` (atomic writes, JSON, the lock),
:mod:`reglab.results.writer` (CSV metrics, the run writer and its manifest of digests) and
:mod:`reglab.results.reader` (verify and the reader); every name is importable from
``reglab.results`` as before.
"""

from reglab.results.files import (FORMAT, FORMAT_VERSION, MANIFEST, FIGURES_DIR, REPORT_FILES, HEADLINE, LOCK, NO_SPACE, write_error,
                                  atomic_write_bytes, atomic_write_text, atomic_write_json, read_json,
                                  now_iso, pid_alive, RunLock, check_out_dir)
from reglab.results.writer import (TEXT_COLUMNS, rows_to_csv, read_csv_columns, RunWriter, shard_epoch,
                                   run_files, file_sha256, manifest_digest, manifest_intact,
                                   recorded_digests, DamagedFiles, check_unchanged)
from reglab.results.reader import (Verification, verify_run, Run, INT_COLUMNS, load_run)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "MANIFEST", "FIGURES_DIR", "REPORT_FILES", "HEADLINE", "LOCK", "NO_SPACE",
    "write_error", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "read_json", "now_iso",
    "pid_alive", "RunLock", "check_out_dir", "TEXT_COLUMNS", "rows_to_csv", "read_csv_columns", "RunWriter",
    "shard_epoch", "run_files", "file_sha256", "manifest_digest", "manifest_intact", "recorded_digests",
    "DamagedFiles", "check_unchanged", "Verification", "verify_run", "Run", "INT_COLUMNS", "load_run",
]
