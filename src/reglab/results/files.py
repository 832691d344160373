"""Atomic files, JSON with non-finite numbers, and the lock: one writer per run directory."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from reglab.errors import ReglabError
from reglab.nonfinite import decode, encode, encode_float

FORMAT = "reglab-run"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FIGURES_DIR = "figures"
REPORT_FILES = (FIGURES_DIR + "/", "report.html", "summary.md")  # what a report build writes (name prefixes)
HEADLINE = ("test_error", "val_error")  # the returned model's errors: summary.json compares them pairwise
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
