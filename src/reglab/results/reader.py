"""Reading a run: `reglab verify`'s check of every recorded digest, and the reader the report uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reglab.errors import ReglabError
from reglab.results.files import FORMAT, FORMAT_VERSION, MANIFEST, read_json
from reglab.results.writer import TEXT_COLUMNS, read_csv_columns, _shards, run_files, file_sha256, manifest_intact

@dataclass
class Verification:
    """What `reglab verify` found: files missing, changed or extra against manifest.json."""

    dir: Path
    checked: list[str]
    missing: list[str]
    changed: list[str]
    extra: list[str]
    status: str = "complete"        # the manifest's: a running or interrupted run has files newer than it

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.extra)


def verify_run(run_dir: str | Path) -> Verification:
    """Compare every file of `run_dir` with the sha256 digests its manifest recorded.

    A run directory written before digests were recorded (no ``sha256`` in the manifest) is
    one clear error: there is nothing to compare against.
    """
    d = Path(run_dir)
    manifest = _read_manifest(d)
    digests = manifest.get("sha256")
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise ReglabError(f"{d / MANIFEST} records no sha256 digests (the run was written by an older reglab). "
                          "Fix: nothing to verify against; re-run the study to get a verifiable run directory.")
    on_disk = set(run_files(d)) - {MANIFEST}
    missing, changed = [], []
    if not manifest_intact(manifest):
        changed.append(MANIFEST)
    for name, want in sorted(digests.items()):
        p = d / name
        if not p.is_file():
            missing.append(name)
        elif file_sha256(p) != want:
            changed.append(name)
    extra = sorted(on_disk - set(digests))
    return Verification(dir=d, checked=sorted(digests), missing=missing, changed=changed, extra=extra,
                        status=str(manifest.get("status", "?")))


# ----------------------------------------------------------------------------
# reader

@dataclass
class Run:
    """Everything a run directory holds, read without importing the engine."""

    dir: Path
    manifest: dict
    config: dict
    variants: list[dict]
    epoch_rows: dict[str, np.ndarray]       # columns of metrics_epoch.csv (or its shards)
    iter_rows: dict[str, np.ndarray]        # columns of metrics_iter.csv (or its shards)
    summary: dict | None = None
    timing: dict | None = None
    environment: dict | None = None
    dataset: dict | None = None
    analysis: dict[str, np.ndarray] = field(default_factory=dict)
    regularizers: dict | None = None        # regularizers.json: plugins used, each used regularizer's formula

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"

    @property
    def methods(self) -> list[str]:
        seen: list[str] = []
        for v in self.variants:
            if v["method"] not in seen:
                seen.append(v["method"])
        return seen


INT_COLUMNS = ("epoch", "variant", "seed", "step")   # metrics columns of whole numbers (the rest: floats)


def _typed(cols: dict[str, np.ndarray], where: Path) -> dict[str, np.ndarray]:
    """`cols` when every column has its kind of values; a damaged cell is one ReglabError, not garbage."""
    for c, values in cols.items():
        want_int = c in INT_COLUMNS
        if c in TEXT_COLUMNS or (values.dtype.kind in "iu" if want_int else values.dtype.kind in "iuf"):
            continue
        bad = next((v for v in values if not isinstance(v, (int, float)) or (want_int and not isinstance(v, int))),
                   values[0] if len(values) else "?")
        raise ReglabError(f"{where} has {bad!r} in column {c!r}, which holds {'whole ' if want_int else ''}"
                          "numbers. Fix: re-run or resume the study (`reglab verify` lists damaged files).")
    return cols


def _read_manifest(d: Path) -> dict:
    """The manifest of run directory `d`; a missing, empty or foreign directory is one clear error."""
    if not d.exists():
        raise ReglabError(f"run directory {d} does not exist. Fix: give the folder `reglab run` wrote "
                          "(it prints it), e.g. runs/mnist-quick-<time>.")
    if not d.is_dir():
        raise ReglabError(f"{d} is not a directory. Fix: give the run directory, not a file in it.")
    if not os.access(d, os.R_OK | os.X_OK):
        raise ReglabError(f"run directory {d} is not readable. Fix: check its permissions.")
    mp = d / MANIFEST
    if not mp.exists():
        if not any(d.iterdir()):
            raise ReglabError(f"run directory {d} is empty. Fix: run a study first (`reglab run`).")
        raise ReglabError(f"{d} is not a reglab run directory (no {MANIFEST}). "
                          "Fix: give a folder written by `reglab run`.")
    manifest = read_json(mp)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ReglabError(f"{mp} is not a reglab run manifest. Fix: give a folder written by `reglab run`.")
    if not isinstance(manifest.get("format_version", 0), int):
        raise ReglabError(f"{mp} has no valid format_version. Fix: give a folder written by `reglab run`.")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ReglabError(f"{d} was written by a newer reglab (format {manifest['format_version']}). "
                          "Fix: upgrade reglab.")
    return manifest


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; a missing, empty or foreign directory is one clear error."""
    d = Path(run_dir)
    manifest = _read_manifest(d)
    config = read_json(d / "config.json")
    variants = read_json(d / "variants.json")

    def metrics(kind: str) -> dict[str, np.ndarray]:
        single = d / f"metrics_{kind}.csv"
        if manifest.get("status") == "complete" and single.exists():
            return _typed(read_csv_columns([single]), single)
        # running or interrupted: the shards are the truth
        return _typed(read_csv_columns(_shards(d, kind)), d / "metrics" / f"{kind}-*.csv")

    def optional_json(name: str):
        p = d / name
        return read_json(p) if p.exists() else None

    analysis: dict[str, np.ndarray] = {}
    ap = d / "analysis.npz"
    if ap.exists():
        try:
            with np.load(ap, allow_pickle=False) as z:
                analysis = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - a damaged zip raises zipfile, zlib, EOF, OS and value errors
            raise ReglabError(f"{ap} is unreadable ({type(e).__name__}). Fix: re-run or resume the study "
                              "(`reglab verify` lists damaged files).") from None

    return Run(dir=d, manifest=manifest, config=config, variants=variants,
               epoch_rows=metrics("epoch"), iter_rows=metrics("iter"),
               summary=optional_json("summary.json"), timing=optional_json("timing.json"),
               environment=optional_json("environment.json"), dataset=optional_json("dataset.json"),
               analysis=analysis, regularizers=optional_json("regularizers.json"))
