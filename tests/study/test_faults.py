"""Nothing lost, nothing crashes: a study killed at random moments, on a full disk, run twice at once.

Every case ends the same way: the run, resumed, holds exactly the metrics (every CSV cell
but wall-clock times), the per-variant summary and the analysis arrays of an uninterrupted
run of the same study, and `reglab verify` finds every file as the manifest recorded it.

The processes are forked from a forkserver with torch imported (tests/study/fault_harness.py),
so a start costs milliseconds, not the seconds of importing torch.

Environment (docs/reliability.md):
    REGLAB_FAULT_KILLS   SIGKILLs in the kill test (default 20)
    REGLAB_FAULT_SEED    seeds the kill schedule (default 14); a failure prints the seed and the moment
    REGLAB_FAULT_DISK    "fsize": fill the "disk" with RLIMIT_FSIZE even where a tmpfs could be mounted
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the forkserver imports fault_harness by name
import fault_harness  # noqa: E402
from run_results import assert_same_results  # noqa: E402

from reglab.results import read_json  # noqa: E402
from reglab.study import runner  # noqa: E402

N_KILLS = int(os.environ.get("REGLAB_FAULT_KILLS", "20"))
SEED = int(os.environ.get("REGLAB_FAULT_SEED", "14"))

STUDY = '''name = "faults"
hidden = [16]
n_epochs = 4
batch_size = 20
seeds = [0, 1]
checkpoint_every = 1
[data]
name = "moons"
n_points = 300
[[methods]]
name = "l2"
l2 = 0.001
[[methods]]
name = "dropout+max_norm"
dropout_hidden = 0.3
max_norm = 2.0
'''


@pytest.fixture(scope="module")
def ctx():
    return fault_harness.context()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    p = tmp_path_factory.mktemp("study") / "study.toml"
    p.write_text(STUDY)
    return p


@pytest.fixture(scope="module")
def reference(ctx, study, tmp_path_factory):
    """An uninterrupted run, with how many atomic writes it made and how long it took."""
    root = tmp_path_factory.mktemp("reference")
    out = root / "run"
    t0 = time.perf_counter()
    p = fault_harness.start(ctx, _run_argv(study, out), str(root / "log"), count_file=str(root / "writes"),
                            write_pattern=".")
    p.join(120)
    assert p.exitcode == 0, (root / "log").read_text()
    seconds = time.perf_counter() - t0
    report_s = (out / "report.html").stat().st_mtime - (out / "summary.json").stat().st_mtime
    return {"dir": out, "seconds": seconds, "seconds_to_complete": max(0.5, seconds - report_s),
            "writes": (root / "writes").read_text().splitlines(),
            "bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file())}


def _run_argv(study: Path, out: Path) -> list[str]:
    return ["run", "--config", str(study), "--out", str(out), "--quiet", "--threads", "1"]


# ----------------------------------------------------------------------------
# SIGKILL at random moments

KILL_KINDS = {  # kind -> (weight, pattern of the files whose writes count; None: a timed kill from outside)
    "timed": (4, None),
    "any write": (3, r"."),
    "checkpoint write": (2, r"/checkpoints/"),
    "report build": (3, r"/figures/|/\.report\.html\.|/\.summary\.md\."),
}
REPORT_ROUNDS = 0.4  # the share of studies that build the report (it takes most of a small study's time)


def test_a_study_killed_at_random_moments_resumes_to_the_uninterrupted_results(ctx, study, reference, tmp_path):
    rng = random.Random(SEED)
    kills: list[tuple[int, str, object]] = []   # (study, kind, moment) of every kill that hit a live process
    rounds = 0
    while len(kills) < N_KILLS:
        rounds += 1
        out = tmp_path / f"round-{rounds}"
        with_report = rng.random() < REPORT_ROUNDS
        kinds = [k for k in KILL_KINDS if with_report or k != "report build"]
        weights = [KILL_KINDS[k][0] for k in kinds]
        no_report = [] if with_report else ["--no-report"]
        # the moments of a study without the report: its share of the uninterrupted run's writes and time
        writes = [w for w in reference["writes"] if with_report or not re.search(KILL_KINDS["report build"][1], w)]
        seconds = reference["seconds"] if with_report else reference["seconds_to_complete"]
        for attempt in range(200):
            kind = rng.choices(kinds, weights)[0]
            pattern = KILL_KINDS[kind][1]
            # a process that died before writing config.json left nothing to resume: start it again
            argv = (["run", "--resume", str(out), "--quiet"] if (out / "config.json").exists()
                    else _run_argv(study, out)) + no_report
            log = str(tmp_path / f"log-{rounds}-{attempt}")
            if pattern is None:
                moment = round(rng.uniform(0.0, seconds), 3)
                p = fault_harness.start(ctx, argv, log)
                p.join(moment)
                if p.exitcode is None:
                    os.kill(p.pid, signal.SIGKILL)
                p.join()
            else:
                moment = rng.randint(1, sum(1 for w in writes if re.search(pattern, w)))
                p = fault_harness.start(ctx, argv, log, kill_at_write=moment, write_pattern=pattern)
                p.join(120)
            if p.exitcode == 0:
                break
            assert p.exitcode == -signal.SIGKILL, (
                f"seed {SEED}, study {rounds}, {kind} at {moment}: exit {p.exitcode}: {Path(log).read_text()}")
            kills.append((rounds, kind, moment))
        assert_same_results(out, reference["dir"], report=with_report)
    by_kind = {k: sum(1 for _, kind, _ in kills if kind == k) for k in KILL_KINDS}
    print(f"\nfault suite: {len(kills)} SIGKILLs survived in {rounds} studies (seed {SEED}): "
          + ", ".join(f"{n} {k}" for k, n in by_kind.items())
          + "; every study resumed to the uninterrupted metrics, summary and analysis arrays")
    assert len(kills) >= N_KILLS


# ----------------------------------------------------------------------------
# damaged checkpoints, on a real run

def _killed_after_epoch(ctx, study, out: Path, epoch: int, log: str) -> None:
    """A run SIGKILLed inside the write of epoch `epoch + 1`'s first metrics shard."""
    p = fault_harness.start(ctx, _run_argv(study, out), log, kill_at_write=epoch + 1,
                            write_pattern=r"/metrics/\.iter-")
    p.join(120)
    assert p.exitcode == -signal.SIGKILL, Path(log).read_text()


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "garbage without digest", "emptied"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(ctx, study, reference, tmp_path, damage):
    out = tmp_path / "run"
    _killed_after_epoch(ctx, study, out, 3, str(tmp_path / "log0"))
    cdir = out / "checkpoints"
    assert sorted(p.name for p in cdir.glob("*.pt")) == ["epoch-00002.pt", "epoch-00003.pt"]
    latest = cdir / "epoch-00003.pt"
    data = latest.read_bytes()
    if damage == "truncated":
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        latest.write_bytes(data[:100] + bytes([data[100] ^ 0x10]) + data[101:])
    elif damage == "garbage without digest":
        (cdir / "epoch-00003.pt.sha256").unlink()
        latest.write_bytes(os.urandom(len(data)))
    else:
        latest.write_bytes(b"")
    p = fault_harness.start(ctx, ["run", "--resume", str(out), "--quiet"], str(tmp_path / "log1"))
    p.join(120)
    log = (tmp_path / "log1").read_text()
    assert p.exitcode == 0, log
    warning = [line for line in log.splitlines() if line.startswith("reglab: warning:")]
    assert len(warning) == 1 and "epoch-00003.pt" in warning[0], log
    assert f"resuming from {cdir / 'epoch-00002.pt'} (epoch 2) instead" in warning[0]
    assert_same_results(out, reference["dir"])


def test_no_readable_checkpoint_is_one_clear_error_and_changes_nothing(ctx, study, tmp_path, capsys):
    from reglab.cli import main
    out = tmp_path / "run"
    _killed_after_epoch(ctx, study, out, 3, str(tmp_path / "log0"))
    for p in (out / "checkpoints").glob("*.pt"):
        p.write_bytes(p.read_bytes()[:50])
    before = _tree_digest(out)
    assert main(["run", "--resume", str(out), "--quiet", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"reglab: no readable checkpoint in {out / 'checkpoints'} ")
    assert "epoch-00003.pt: damaged" in err and "epoch-00002.pt: damaged" in err and "Fix: " in err
    after = _tree_digest(out)
    # only the manifest's status and time change ("interrupted"), the lock and the killed process's
    # temp file go; every other byte stays
    changed = {k for k in before if before[k] != after.get(k)}
    assert {k for k in changed if not k.endswith(".tmp")} <= {"manifest.json", ".lock"}


def _tree_digest(d: Path) -> dict[str, str]:
    import hashlib
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


# ----------------------------------------------------------------------------
# a full disk

def _can_mount_tmpfs(where: Path) -> bool:
    if os.environ.get("REGLAB_FAULT_DISK") == "fsize":  # exercise the fallback where tmpfs would work
        return False
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(where)], check=True)
    return ok


DISK_FRACTIONS = (0.03, 0.5, 0.95)


def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes_once_space_is_back(
        ctx, study, reference, tmp_path):
    """ENOSPC from a small tmpfs when root may mount one (CI), else EFBIG from RLIMIT_FSIZE."""
    mnt = tmp_path / "disk"
    tmpfs = _can_mount_tmpfs(mnt)
    failed_at = []
    largest = max(f.stat().st_size for f in reference["dir"].rglob("*") if f.is_file())
    for i, fraction in enumerate(DISK_FRACTIONS):
        limit = None
        if tmpfs:
            size_k = max(8, int(fraction * reference["bytes"] / 1024))
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(mnt)], check=True)
            out = mnt / "run"
        else:
            limit = max(1024, int(fraction * largest))  # one file larger than this fails with EFBIG
            out = tmp_path / f"run-{i}"
        try:
            log = tmp_path / f"log-{i}"
            p = fault_harness.start(ctx, _run_argv(study, out), str(log), fsize_limit=limit)
            p.join(120)
            text = log.read_text().strip()
            assert p.exitcode == 2, text
            assert text.count("\n") == 0 and text.startswith(f"reglab: cannot write {out}/"), text
            assert ("No space left on device" if tmpfs else "File too large") in text
            assert "the files written before it are intact. Fix: free space" in text
            failed_at.append(text.split()[3].removeprefix(f"{out}/").rstrip(":"))
            assert not list(out.rglob(".*.tmp")), "a failed atomic write left its temp file"
            if (out / "checkpoints" / "latest").exists():  # the checkpoint it points at is sound
                name = (out / "checkpoints" / "latest").read_text().strip()
                cfg = runner.study_from_dict(read_json(out / "config.json"))
                assert runner._read_checkpoint(out / "checkpoints" / name, cfg)[1] is None
            if tmpfs:  # space is back
                subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
            argv = (["run", "--resume", str(out), "--quiet"] if (out / "config.json").exists()
                    else _run_argv(study, out))
            p = fault_harness.start(ctx, argv, str(log))
            p.join(120)
            assert p.exitcode == 0, f"disk at {fraction:.0%}, failed at {failed_at[-1]}: {log.read_text()}"
            assert_same_results(out, reference["dir"])
        finally:
            if tmpfs:
                subprocess.run(["umount", str(mnt)], check=True)
    print(f"\nfault suite: {len(failed_at)} disk-full cases ({'ENOSPC, tmpfs' if tmpfs else 'EFBIG, RLIMIT_FSIZE'}), "
          f"failing at {', '.join(failed_at)}; each resumed to the uninterrupted results")
    assert len(set(failed_at)) >= 2, failed_at  # the limits hit different files


# ----------------------------------------------------------------------------
# two processes, one run directory

def test_a_second_run_on_the_same_out_is_refused_and_a_killed_ones_lock_is_taken_over(
        ctx, study, reference, tmp_path, capsys):
    from reglab.cli import main
    out = tmp_path / "run"
    slow = tmp_path / "slow.toml"
    slow.write_text(STUDY.replace("n_epochs = 4", "n_epochs = 4000"))
    first = fault_harness.start(ctx, _run_argv(slow, out), str(tmp_path / "log"))
    try:
        deadline = time.time() + 60
        while not (out / "metrics" / "epoch-00001.csv").exists():
            assert first.exitcode is None and time.time() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.01)
        for argv in (_run_argv(slow, out), ["run", "--resume", str(out), "--quiet"]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0, err
            assert err.startswith(f"reglab: run directory {out} is in use by another reglab process ({first.pid} ")
        assert first.exitcode is None  # untouched by the refusals
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.join()
    assert (out / ".lock").read_text().startswith(f"{first.pid} ")  # stale: its owner is dead

    # two resumes race for the stale lock: one trains, the other is refused (or finds the run complete)
    cut = tmp_path / "cut"
    _killed_after_epoch(ctx, study, cut, 2, str(tmp_path / "log0"))
    racers = [fault_harness.start(ctx, ["run", "--resume", str(cut), "--quiet"], str(tmp_path / f"race-{i}"))
              for i in range(2)]
    for r in racers:
        r.join(120)
    logs = [(tmp_path / f"race-{i}").read_text().strip() for i in range(2)]
    assert sorted(r.exitcode for r in racers) in ([0, 2], [0, 0]), logs
    if [r.exitcode for r in racers].count(2) == 1:
        assert "is in use by another reglab process" in logs[[r.exitcode for r in racers].index(2)]
    assert_same_results(cut, reference["dir"])


def test_a_second_tune_on_the_same_storage_is_refused_and_a_killed_ones_lock_is_taken_over(ctx, tmp_path, capsys):
    from reglab.cli import main
    out = tmp_path / "tune"
    tune = ["tune", "pointcloud", "--smoke", "--methods", "l2", "--out", str(out), "--quiet", "--threads", "1"]
    first = fault_harness.start(ctx, tune + ["--trials", "100000"], str(tmp_path / "log"))
    try:
        deadline = time.time() + 60
        while not (out / "optuna.db").exists():
            assert first.exitcode is None and time.time() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.01)
        assert main(tune + ["--trials", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{out} is in use by another reglab process ({first.pid} " in err, err
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.join()
    assert (out / ".lock").exists()
    assert main(tune + ["--trials", "1"]) == 0  # the stale lock is taken over; the storage resumes
    capsys.readouterr()
    assert read_json(out / "tune.json")["status"] == "complete" and not (out / ".lock").exists()
