"""The run directory: the only thing the engine side and the report side share.

Every file describes itself (method, seed, hyperparameters, dataset checksums
and package versions live in JSON beside the arrays); nothing needs the
folder name to be understood. Every write is atomic: the bytes go to a temp
file in the same folder, are flushed to disk, and ``os.replace`` puts them in
place, so a kill leaves either the old file or the new one, never half of one.

Layout (see docs/architecture.md):

    manifest.json        format, study, status (running|complete|interrupted), epochs_done, files, command
    config.json/.toml    resolved StudyConfig
    environment.json     python/torch/numpy versions, CPU, threads, GPU
    dataset.json         where the data came from, checksums, split sizes
    variants.json        [{variant, method, seed, hyperparameters}]
    metrics/epoch-XXXX.csv, metrics/iter-XXXX.csv   per-epoch shards while running
    metrics_epoch.csv, metrics_iter.csv             consolidated when the run completes
    analysis.npz         arrays for the report (weight histograms, activations, decision grid)
    timing.json, summary.json, checkpoints/

This module imports neither the engine nor the report.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from reglab.errors import ReglabError

FORMAT = "reglab-run"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
LOCK = ".lock"


# ----------------------------------------------------------------------------
# atomic writes

def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for sharing like any file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return _finite_or_str(float(obj))
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return [_json_default(x) if not isinstance(x, (int, str, bool)) else x for x in obj.tolist()]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _finite_or_str(x: float):
    """JSON has no NaN/inf: store them as strings "nan", "inf", "-inf"."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _sanitize(obj: Any):
    if isinstance(obj, float):
        return _finite_or_str(obj)
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _sanitize(obj.tolist())
    if isinstance(obj, np.generic):
        return _sanitize(obj.item())
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """JSON with NaN/inf stored as "nan"/"inf" strings (read back by :func:`read_json`)."""
    text = json.dumps(_sanitize(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _revive(obj: Any):
    if obj == "nan":
        return math.nan
    if obj == "inf":
        return math.inf
    if obj == "-inf":
        return -math.inf
    if isinstance(obj, dict):
        return {k: _revive(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_revive(v) for v in obj]
    return obj


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return _revive(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ReglabError(f"{path} is missing. Fix: point at a complete reglab run directory.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReglabError(f"{path} is not valid JSON ({e}). Fix: re-run or resume the study.") from None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------
# lock: one writer per run directory

def pid_alive(pid: object) -> bool:
    """Whether another process with this pid runs on this host (our own pid counts as not)."""
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


class RunLock:
    """Exclusive lock on a run directory, held while a process writes it.

    The lock file holds the owner's pid and host. A lock whose pid no longer
    runs on this host is stale (the owner was killed) and is taken over, so
    ``--resume`` after a SIGKILL works; a live owner makes the lock refuse.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {os.uname().nodename}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._owner_alive():
                    raise ReglabError(
                        f"run directory {self.path.parent} is in use by another reglab process "
                        f"({self.path.read_text().strip() or 'unknown pid'}). "
                        "Fix: wait for it to finish, or choose another --out."
                    ) from None
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self._held = True
            return
        raise ReglabError(f"could not take the lock {self.path}. Fix: remove it if no reglab process runs.")

    def _owner_alive(self) -> bool:
        try:
            pid_s, _, host = self.path.read_text().strip().partition(" ")
            pid = int(pid_s)
        except (OSError, ValueError):
            return False  # unreadable or half-written lock: its writer died between open and write
        if host and host != os.uname().nodename:
            return True  # cannot check another host's processes: assume it runs
        return pid_alive(pid)

    def release(self) -> None:
        if self._held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self._held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------
# CSV helpers

def _format_value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))  # repr round-trips float64 exactly
    return str(v)


def rows_to_csv(rows: list[dict], columns: list[str] | None = None) -> str:
    """CSV text with a header; floats written so they read back bit-identical."""
    if not rows:
        return ""
    columns = columns or list(rows[0].keys())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_format_value(r[c]) for c in columns])
    return buf.getvalue()


def _parse_cell(s: str):
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)  # accepts "nan", "inf"
    except ValueError:
        return s


def read_csv_columns(paths: Iterable[Path]) -> dict[str, np.ndarray]:
    """Concatenate CSV files with the same header into columns of numpy arrays."""
    header: list[str] | None = None
    cols: dict[str, list] = {}
    for p in paths:
        with open(p, newline="") as f:
            reader = csv.reader(f)
            try:
                h = next(reader)
            except StopIteration:
                continue
            if header is None:
                header = h
                cols = {c: [] for c in header}
            elif h != header:
                raise ReglabError(f"{p} has columns {h}, expected {header}. Fix: the run directory mixes "
                                  "files of different runs; re-run the study.")
            for row in reader:
                if len(row) != len(header):
                    raise ReglabError(f"{p} has a row of {len(row)} cells, expected {len(header)}. "
                                      "Fix: re-run or resume the study.")
                for c, v in zip(header, row):
                    cols[c].append(_parse_cell(v))
    out: dict[str, np.ndarray] = {}
    for c, vals in cols.items():
        if all(isinstance(v, int) for v in vals):
            out[c] = np.asarray(vals, dtype=np.int64)
        elif all(isinstance(v, (int, float)) for v in vals):
            out[c] = np.asarray(vals, dtype=np.float64)
        else:
            out[c] = np.asarray([str(v) for v in vals], dtype=object)
    return out


# ----------------------------------------------------------------------------
# writer

class RunWriter:
    """Writes a run directory. The runner holds a :class:`RunLock` while using it."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.dir / name

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.dir / name, obj)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.dir / name, text)

    def write_npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.dir / name, buf.getvalue())

    def write_epoch(self, epoch: int, epoch_rows: list[dict], iter_rows: list[dict]) -> None:
        """One epoch's metrics as two shards, each written atomically.

        Re-running an epoch after a resume overwrites its shards, so a run
        killed mid-epoch never leaves duplicate or partial rows.
        """
        atomic_write_text(self.dir / "metrics" / f"iter-{epoch:05d}.csv", rows_to_csv(iter_rows))
        atomic_write_text(self.dir / "metrics" / f"epoch-{epoch:05d}.csv", rows_to_csv(epoch_rows))

    def drop_epochs_after(self, epoch: int) -> None:
        """Remove shards of epochs > `epoch` (written after the checkpoint being resumed)."""
        mdir = self.dir / "metrics"
        if not mdir.is_dir():
            return
        for p in mdir.glob("*.csv"):
            if _shard_epoch(p) > epoch:
                p.unlink()

    def update_manifest(self, **fields: Any) -> dict:
        p = self.dir / MANIFEST
        manifest = read_json(p) if p.exists() else {"format": FORMAT, "format_version": FORMAT_VERSION,
                                                     "created": now_iso()}
        manifest.update(fields)
        manifest["updated"] = now_iso()
        manifest["files"] = sorted(str(q.relative_to(self.dir)) for q in self.dir.rglob("*")
                                   if q.is_file() and not q.name.startswith("."))
        atomic_write_json(p, manifest)
        return manifest

    def finalize(self) -> None:
        """Consolidate the shards into metrics_epoch.csv and metrics_iter.csv.

        Order of a clean finish: finalize(), update_manifest(status="complete"),
        remove_shards(). The reader trusts the consolidated files only once the
        manifest says complete, so a kill at any point leaves a readable run.
        """
        for kind in ("epoch", "iter"):
            shards = _shards(self.dir, kind)
            cols = read_csv_columns(shards)
            n = len(next(iter(cols.values()))) if cols else 0
            rows = [{c: cols[c][i] for c in cols} for i in range(n)]
            atomic_write_text(self.dir / f"metrics_{kind}.csv", rows_to_csv(rows, list(cols)))


    def remove_shards(self) -> None:
        """Delete the per-epoch shards; call only after the manifest says complete."""
        for p in _shards(self.dir, "epoch") + _shards(self.dir, "iter"):
            p.unlink()
        try:
            (self.dir / "metrics").rmdir()
        except OSError:
            pass


def _shard_epoch(p: Path) -> int:
    try:
        return int(p.stem.split("-")[1])
    except (IndexError, ValueError):
        return -1


def _shards(run_dir: Path, kind: str) -> list[Path]:
    mdir = run_dir / "metrics"
    if not mdir.is_dir():
        return []
    return sorted((p for p in mdir.glob(f"{kind}-*.csv") if _shard_epoch(p) >= 0), key=_shard_epoch)


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


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; a missing, empty or foreign directory is one clear error."""
    d = Path(run_dir)
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
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ReglabError(f"{d} was written by a newer reglab (format {manifest['format_version']}). "
                          "Fix: upgrade reglab.")
    config = read_json(d / "config.json")
    variants = read_json(d / "variants.json")

    def metrics(kind: str) -> dict[str, np.ndarray]:
        single = d / f"metrics_{kind}.csv"
        if manifest.get("status") == "complete" and single.exists():
            return read_csv_columns([single])
        return read_csv_columns(_shards(d, kind))  # running or interrupted: the shards are the truth

    def optional_json(name: str):
        p = d / name
        return read_json(p) if p.exists() else None

    analysis: dict[str, np.ndarray] = {}
    ap = d / "analysis.npz"
    if ap.exists():
        try:
            with np.load(ap, allow_pickle=False) as z:
                analysis = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ReglabError(f"{ap} is unreadable ({e}). Fix: re-run or resume the study.") from None

    return Run(dir=d, manifest=manifest, config=config, variants=variants,
               epoch_rows=metrics("epoch"), iter_rows=metrics("iter"),
               summary=optional_json("summary.json"), timing=optional_json("timing.json"),
               environment=optional_json("environment.json"), dataset=optional_json("dataset.json"),
               analysis=analysis)
