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

This module imports neither the engine nor the report.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
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
from reglab.nonfinite import decode, encode, encode_float

FORMAT = "reglab-run"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
LOCK = ".lock"


# ----------------------------------------------------------------------------
# atomic writes

# a full disk, a full quota, or a file larger than RLIMIT_FSIZE (EFBIG): the same fix
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_error(e: OSError, path: str | Path) -> ReglabError:
    """The one-line error for an OSError raised while writing `path` (disk full, read-only, ...)."""
    path = Path(path)
    why = e.strerror or str(e)
    if e.errno in NO_SPACE:
        return ReglabError(f"cannot write {path}: {why}; the files written before it are intact. Fix: free space "
                           f"on that disk (or raise the quota / file-size limit), then run the command again "
                           "(an interrupted study continues with `reglab run --resume RUN_DIR`).")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ReglabError(f"cannot write {path}: {why}. Fix: choose a folder you can write to, or fix its "
                           "permissions.")
    if e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return ReglabError(f"cannot write {path}: {why} (a part of the path is a file where a folder is needed, "
                           "or the reverse). Fix: choose another path.")
    return ReglabError(f"cannot write {path}: {why}. Fix: check the disk and the path, then run the command again.")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part.

    Any OSError (disk full, quota, read-only folder) becomes one :class:`ReglabError` naming
    `path`; the old file, if any, is left as it was and no temp file stays behind.
    """
    path = Path(path)
    try:
        _atomic_write_bytes(path, data)
    except OSError as e:
        raise write_error(e, path) from None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
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
    """JSON has no NaN/inf: store them as strings "nan", "inf", "-inf" (reglab.nonfinite)."""
    return encode_float(x)


def _sanitize(obj: Any):
    return encode(obj)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """JSON with NaN/inf stored as "nan"/"inf" strings (read back by :func:`read_json`)."""
    text = json.dumps(_sanitize(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _revive(obj: Any):
    """"nan"/"inf"/"-inf" back to floats, except where a name is stored (reglab.nonfinite)."""
    return decode(obj)


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

    The lock is an advisory ``flock`` on ``RUN_DIR/.lock``: the kernel drops it when its
    owner exits, however it exits, so a lock left by a killed process is free for the next
    ``--resume`` and two processes can never both hold it (no pid check, which a reused pid
    or two processes taking over the same stale lock at once would fool). The file holds the
    owner's pid and host, for the message a refused process prints.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        check_out_dir(self.path.parent)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(20):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                    os.close(fd)
                    raise ReglabError(
                        f"run directory {self.path.parent} is in use by another reglab process "
                        f"({owner or 'unknown pid'}). Fix: wait for it to finish, or choose another --out."
                    ) from None
                # a releasing owner unlinks the file before unlocking it: make sure ours is still the one there
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {os.uname().nodename}\n".encode(), 0)
                self._fd = fd
                return
        except OSError as e:
            raise write_error(e, self.path) from None
        raise ReglabError(f"could not take the lock {self.path}. Fix: run the command again.")

    def release(self) -> None:
        if self._fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def check_out_dir(d: str | Path, option: str = "--out", need_bytes: int = 0) -> None:
    """A folder results can be written to: it exists as a folder, or can be created as one, on a
    writable file system with room (reglab.paths.check_folder_to_write)."""
    from reglab.paths import check_folder_to_write
    check_folder_to_write(d, option, need_bytes)


# ----------------------------------------------------------------------------
# CSV helpers

TEXT_COLUMNS = ("method",)   # metrics columns of names: read as text even when a name reads as a number


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
        w.writerow([_format_value(r.get(c, math.nan)) for c in columns])
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
        try:
            with open(p, newline="", encoding="utf-8") as f:
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
                        # a name is text even when it reads as a number (a method called inf or 1)
                        cols[c].append(v if c in TEXT_COLUMNS else _parse_cell(v))
        except (UnicodeDecodeError, csv.Error) as e:
            raise ReglabError(f"{p} is not a readable CSV file ({type(e).__name__}). "
                              "Fix: re-run or resume the study (`reglab verify` lists damaged files).") from None
        except FileNotFoundError:
            raise ReglabError(f"{p} is missing. Fix: re-run or resume the study.") from None
    out: dict[str, np.ndarray] = {}
    for c, vals in cols.items():
        if c in TEXT_COLUMNS:
            out[c] = np.asarray(vals, dtype=object)
        elif all(isinstance(v, int) for v in vals):
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
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(e, self.dir) from None

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
        killed mid-epoch never leaves duplicate or partial rows. The run keeps
        the columns of its first shard: a run begun by an older reglab and
        resumed by a newer one (which may record more metrics) stays one table.
        """
        atomic_write_text(self.dir / "metrics" / f"iter-{epoch:05d}.csv", rows_to_csv(iter_rows))
        atomic_write_text(self.dir / "metrics" / f"epoch-{epoch:05d}.csv",
                          rows_to_csv(epoch_rows, self._first_header("epoch", epoch)))

    def _first_header(self, kind: str, epoch: int) -> list[str] | None:
        """The columns of the run's earliest ``kind`` shard before ``epoch`` (None when there is none)."""
        earlier = sorted(p for p in (self.dir / "metrics").glob(f"{kind}-*.csv") if shard_epoch(p) < epoch)
        if not earlier:
            return None
        with open(earlier[0], newline="") as f:
            header = next(csv.reader(f), None)
        return header or None

    def drop_epochs_after(self, epoch: int) -> None:
        """Remove shards of epochs > `epoch` (written after the checkpoint being resumed)."""
        mdir = self.dir / "metrics"
        if not mdir.is_dir():
            return
        for p in mdir.glob("*.csv"):
            if shard_epoch(p) > epoch:
                p.unlink()

    def update_manifest(self, *, record: tuple[str, ...] | None = None, touch: bool = True, **fields: Any) -> dict:
        """Set `fields` in manifest.json and record the sha256 of the files on disk.

        touch: set "updated" to now (False keeps the time of the last update).
        record: only files whose names start with one of these prefixes get new digests; the
            others keep the ones recorded before (so a writer that did not write a file never
            records a damaged copy of it as if reglab had made it). None: every file.
        """
        p = self.dir / MANIFEST
        manifest = read_json(p) if p.exists() else {"format": FORMAT, "format_version": FORMAT_VERSION,
                                                     "created": now_iso()}
        manifest.update(fields)
        if touch or "updated" not in manifest:
            manifest["updated"] = now_iso()
        manifest["files"] = run_files(self.dir)
        if record is None:
            manifest["sha256"] = {name: self._sha256(name) for name in manifest["files"] if name != MANIFEST}
        elif isinstance(manifest.get("sha256"), dict):
            kept = {k: v for k, v in manifest["sha256"].items() if not k.startswith(record)}
            manifest["sha256"] = kept | {name: self._sha256(name) for name in manifest["files"]
                                         if name.startswith(record) and name != MANIFEST}
        manifest["manifest_sha256"] = manifest_digest(manifest)
        atomic_write_json(p, manifest)
        return manifest

    def _sha256(self, name: str) -> str:
        """The file's digest, computed again only when its size or mtime changed since the last manifest."""
        st = (self.dir / name).stat()
        key = (name, st.st_size, st.st_mtime_ns)
        cache = self.__dict__.setdefault("_digests", {})
        if key not in cache:
            cache[key] = file_sha256(self.dir / name)
        return cache[key]

    def finalize(self, n_epochs: int | None = None) -> None:
        """Consolidate the shards into metrics_epoch.csv and metrics_iter.csv.

        Order of a clean finish: finalize(), update_manifest(status="complete"),
        remove_shards(). The reader trusts the consolidated files only once the
        manifest says complete, so a kill at any point leaves a readable run.
        """
        for kind in ("epoch", "iter"):
            shards = _shards(self.dir, kind)
            lost = sorted(set(range(1, (n_epochs or 0) + 1)) - {shard_epoch(p) for p in shards})
            if lost:
                raise ReglabError(f"{self.dir / 'metrics'} lacks the {kind} metrics of epoch(s) "
                                  f"{', '.join(map(str, lost))}. Fix: start the study again with a new --out.")
            cols = read_csv_columns(shards)
            n = len(next(iter(cols.values()))) if cols else 0
            rows = [{c: cols[c][i] for c in cols} for i in range(n)]
            atomic_write_text(self.dir / f"metrics_{kind}.csv", rows_to_csv(rows, list(cols)))


    def remove_temp_files(self) -> None:
        """Delete the temp files of atomic writes a killed process left (call with the lock held)."""
        for p in self.dir.rglob(".*.tmp"):
            if p.is_file():
                p.unlink()

    def remove_shards(self) -> bool:
        """Delete the per-epoch shards; call only after the manifest says complete. True if there were any."""
        shards = _shards(self.dir, "epoch") + _shards(self.dir, "iter")
        for p in shards:
            p.unlink()
        try:
            (self.dir / "metrics").rmdir()
        except OSError:
            pass
        return bool(shards)


def shard_epoch(p: Path) -> int:
    try:
        return int(p.stem.split("-")[1])
    except (IndexError, ValueError):
        return -1


def _shards(run_dir: Path, kind: str) -> list[Path]:
    mdir = run_dir / "metrics"
    if not mdir.is_dir():
        return []
    return sorted((p for p in mdir.glob(f"{kind}-*.csv") if shard_epoch(p) >= 0), key=shard_epoch)


def run_files(run_dir: Path) -> list[str]:
    """Every file of a run directory (relative, sorted) but hidden ones: the lock and temp files."""
    return sorted(str(q.relative_to(run_dir)) for q in run_dir.rglob("*")
                  if q.is_file() and not any(part.startswith(".") for part in q.relative_to(run_dir).parts))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's content but this digest itself (keys sorted, compact JSON)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(_sanitize(body), sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_intact(manifest: Any) -> bool:
    """False when the manifest records its own digest and its content no longer matches it."""
    if not isinstance(manifest, dict) or "manifest_sha256" not in manifest:
        return isinstance(manifest, dict)
    return manifest["manifest_sha256"] == manifest_digest(manifest)


def recorded_digests(run_dir: str | Path) -> dict[str, str]:
    """The sha256 digests manifest.json holds ({} for a run written before they were recorded).

    A manifest whose own digest does not match its content is :class:`DamagedFiles`.
    """
    p = Path(run_dir) / MANIFEST
    manifest = read_json(p) if p.exists() else {}
    if not manifest_intact(manifest):
        raise DamagedFiles(f"{p} changed after reglab wrote it (its manifest_sha256 no longer matches). "
                           "Fix: restore it from a copy, or start the study again with a new --out.")
    digests = manifest.get("sha256") if isinstance(manifest, dict) else None
    return {k: v for k, v in digests.items() if isinstance(v, str)} if isinstance(digests, dict) else {}


class DamagedFiles(ReglabError):
    """Files a run keeps differ from the digests recorded when they were written."""


def check_unchanged(run_dir: str | Path, digests: dict[str, str], names: Iterable[str]) -> None:
    """Raise a ReglabError when a file of `names` that `digests` records is missing or differs from it.

    A resume calls this on the files it keeps before it records new digests, so damage to
    them is reported instead of being written into the manifest as if reglab had made it.
    """
    d = Path(run_dir)
    bad = [n for n in sorted(set(names)) if n in digests
           and (not (d / n).is_file() or file_sha256(d / n) != digests[n])]
    if bad:
        raise DamagedFiles(f"{', '.join(str(d / n) for n in bad)} changed or went missing after reglab wrote "
                          f"{'it' if len(bad) == 1 else 'them'} (sha256 differs from {MANIFEST}; `reglab verify "
                          f"{d}` lists every such file). Fix: restore the file from a copy, or start the study "
                          "again with a new --out.")


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
               analysis=analysis)
