"""Runs `reglab` in processes forked from a forkserver that has torch and reglab imported already.

A fresh `python -m reglab` spends seconds importing torch; the fault tests start dozens of
processes, so they fork them instead: each child calls :func:`reglab.cli.main` with the argv
given, exactly as the console script does, and exits with its status. A child can be told to
kill itself with SIGKILL inside its n-th atomic file write whose path matches a pattern
(between writing the bytes and the fsync + rename that would make them visible), or to run
under a file-size limit. The parent can also SIGKILL it at any moment.

This module is imported by name in the forkserver, so it lives beside the tests, not in them.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sys

PRELOAD = ["fault_harness", "torch", "numpy", "matplotlib", "matplotlib.pyplot", "reglab.cli",
           "reglab.study.cli", "reglab.study.runner", "reglab.engine", "reglab.report", "reglab.data",
           "reglab.tune.cli", "optuna"]


def context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start(ctx, argv: list[str], log: str, *, kill_at_write: int | None = None, write_pattern: str = "",
          count_file: str | None = None, fsize_limit: int | None = None):
    """Start `reglab ARGV` in a forked child; stdout and stderr go to `log`.

    kill_at_write: SIGKILL inside the n-th atomic write of a file whose temp path matches `write_pattern`.
    count_file: when the child ends normally, the temp path of each such write, one a line.
    fsize_limit: RLIMIT_FSIZE in bytes (a larger file fails with EFBIG).
    """
    p = ctx.Process(target=_child, args=(argv, log, kill_at_write, write_pattern, count_file, fsize_limit))
    p.start()
    return p


def _child(argv, log, kill_at_write, write_pattern, count_file, fsize_limit) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if fsize_limit is not None:
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump, as Python's default

    # the per-method timing after a study is not under test here and takes seconds per method
    from reglab.study import runner
    runner.TIMING_MIN_SECONDS = 0.0
    runner.TIMING_MAX_EPOCHS = 1

    if kill_at_write is not None or count_file is not None:
        pattern = re.compile(write_pattern)
        real_fsync = os.fsync
        seen: list[str] = []

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if pattern.search(path):
                seen.append(path)
                if len(seen) == kill_at_write:
                    os.kill(os.getpid(), signal.SIGKILL)  # the bytes are written, not yet renamed into place
            real_fsync(fd)

        os.fsync = fsync

    from reglab.cli import main
    rc = main(argv)
    if count_file is not None:
        with open(count_file, "w") as f:
            f.write("".join(p + "\n" for p in seen))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
