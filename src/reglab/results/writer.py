"""Writing a run: CSV metrics, the shards, the writer and its manifest of file digests."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from reglab.errors import ReglabError
from reglab.results.files import FORMAT, FORMAT_VERSION, MANIFEST, write_error, atomic_write_bytes, atomic_write_text, _json_default, _sanitize, atomic_write_json, read_json, now_iso

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
