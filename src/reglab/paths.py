"""Path arguments checked before any work starts: one line naming the argument and the fix.

What the operating system would otherwise report as a traceback half-way through a run
(``OSError: [Errno 36] File name too long``, ``EROFS``, ``ENOSPC``, ``ENOTDIR``) is checked
up front, for every path a command is given:

* the path is representable: no NUL byte, encodable in the file system's encoding;
* it is at most ``PATH_MAX - 1`` bytes long and each component at most ``NAME_MAX`` bytes
  (the file system's own limits, read with ``pathconf`` where the path would be created);
* a folder to write into exists as a folder or can be created as one (no file where a folder
  is wanted, anywhere on the way), on a file system that is writable, not read-only, and has
  at least :data:`MIN_FREE_BYTES` (or what the caller says it needs) free.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from reglab.errors import ReglabError

PATH_MAX = 4096                 # Linux's limit on a whole path, in bytes (including the final NUL)
NAME_MAX = 255                  # bytes per component where pathconf cannot say
# what a run writes before its first epoch (config, variants, environment, dataset, manifest: a few KiB).
# Not more: a disk that fills later is reported by the write that fails, with the resume hint
# (tests/study/test_faults.py fills small disks on purpose and must reach that line).
MIN_FREE_BYTES = 8 * 2**10


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def check_path(path: str | os.PathLike, option: str) -> Path:
    """`path` as a Path when the system can represent it; else one ReglabError naming `option`."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise ReglabError(f"{option} must be a path; got {type(path).__name__}.") from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise ReglabError(f"{option} is empty. Fix: give a path, e.g. {option} runs/mine.")
    if "\0" in text:
        raise ReglabError(f"{option} {_shown(text)} contains a NUL byte, which no path can hold. "
                          "Fix: remove it.")
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raise ReglabError(f"{option} {_shown(text)} cannot be written in this system's file name encoding "
                          f"({sys.getfilesystemencoding()}). Fix: use other characters (letters, digits, - _ .).") \
            from None
    if len(raw) >= PATH_MAX:
        raise ReglabError(f"{option} is {len(raw)} bytes long; paths are limited to {PATH_MAX - 1} bytes. "
                          "Fix: choose a shorter path.")
    limit = _name_max(Path(text))
    for part in Path(text).parts:
        n = len(os.fsencode(part))
        if n > limit and part != os.sep:
            raise ReglabError(f"{option}: the name {_shown(part)} is {n} bytes long; this file system allows "
                              f"{limit} bytes per name. Fix: choose a shorter {option}.")
    return Path(text)


def _name_max(p: Path) -> int:
    """NAME_MAX of the file system the path would be created on (its nearest existing ancestor)."""
    try:
        return os.pathconf(_nearest_existing(p), "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX


def _nearest_existing(p: Path) -> Path:
    for candidate in (p, *p.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:   # e.g. a component too long for the file system: checked by the caller
            continue
    return Path(".")


def check_folder_to_write(path: str | os.PathLike, option: str, need_bytes: int = 0) -> Path:
    """`path` as a Path when results can be written there (it is created later when missing)."""
    d = check_path(path, option)
    if d.exists() and not d.is_dir():
        raise ReglabError(f"{d} is a file, not a folder. Fix: give a folder for the results (it is created "
                          f"when missing), e.g. another {option}.")
    for parent in d.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ReglabError(f"{d} cannot be created: {parent} is a file, not a folder. "
                                  f"Fix: choose another {option}.")
            break
    target = d if d.exists() else _nearest_existing(d)
    try:
        fs = os.statvfs(target)
    except OSError:
        fs = None
    if fs is not None and fs.f_flag & os.ST_RDONLY:
        raise ReglabError(f"{d} cannot be written: {target} is not writable (a read-only file system). "
                          f"Fix: choose a folder on a writable disk ({option}).")
    if not os.access(target, os.W_OK | os.X_OK):
        raise ReglabError(f"{d} cannot be written: {target} is not writable. Fix: choose a folder you can "
                          f"write to ({option}), or fix its permissions.")
    need = max(MIN_FREE_BYTES, int(need_bytes))
    if fs is not None and fs.f_bavail * fs.f_frsize < need:
        free = fs.f_bavail * fs.f_frsize
        raise ReglabError(f"{option} {_shown(str(d))}: its file system has {format_bytes(free)} free; the run needs "
                          f"about {format_bytes(need)}. Fix: free some space or choose a folder on another disk.")
    return d


def format_bytes(n: float) -> str:
    """`n` bytes in B, KiB, MiB, GiB ... (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
