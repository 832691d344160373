"""The default thread count: free physical cores, measured, at least one."""

import os

import pytest

from reglab import threads
from reglab.threads import CpuReading, choose_threads


@pytest.mark.parametrize("allowed, physical, quota, busy, expected", [
    (2, 2, None, 0.0, 2),      # idle 2-core machine: both cores (1.56x faster than 1 there)
    (2, 2, None, 0.1, 2),      # a little background noise does not cost a core
    (2, 2, None, 0.3, 1),      # a core more than 25% busy is not free
    (2, 2, None, 1.0, 1),      # one core taken by another process
    (2, 2, None, 2.0, 1),      # everything busy: still one thread
    (16, 16, None, 4.6, 11),
    (16, 8, None, 0.0, 8),     # hyper-threads: never above the physical cores
    (16, 16, 3.5, 0.0, 3),     # a cgroup quota of 3.5 CPUs
    (16, 16, 0.5, 0.0, 1),     # a quota below one CPU: one thread
    (1, 1, None, 0.0, 1),
])
def test_the_thread_count_is_the_free_physical_cores_within_the_quota(allowed, physical, quota, busy, expected):
    assert choose_threads(CpuReading(allowed, physical, quota, busy)) == expected


def test_busy_time_is_read_from_the_per_cpu_lines_of_proc_stat_for_the_allowed_cpus_only(monkeypatch, tmp_path):
    snapshots = iter([
        "cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 900 0 0 0 0\ncpu1 0 0 0 1000 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n",
        # over the window: cpu0 fully busy (user 50 + steal 50), cpu1 idle, cpu2 (not ours) busy
        "cpu  0 0 0 0 0 0 0 0\ncpu0 150 0 0 900 0 0 0 50\ncpu1 0 0 0 1100 0 0 0 0\ncpu2 900 0 0 0 0 0 0 0\n",
    ])
    stat = tmp_path / "stat"

    real_path = threads.Path

    def fake_path(p, *rest):
        if str(p) == "/proc/stat":
            stat.write_text(next(snapshots))
            return stat
        return real_path(p, *rest)

    monkeypatch.setattr(threads, "Path", fake_path)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    busy = threads._busy_cpus([0, 1], 0.2)
    assert busy == pytest.approx(1.0)   # 100 busy of 200 jiffies on two CPUs


def test_the_cgroup_quota_is_read_from_cpu_max_and_unlimited_is_none(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads._cgroup_quota(tmp_path) == pytest.approx(1.5)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads._cgroup_quota(tmp_path) is None
    assert threads._cgroup_quota(tmp_path / "absent") is None


def test_this_machines_reading_is_sane_and_gives_a_usable_count():
    r = threads.read_cpus(0.05)
    assert 1 <= r.physical_cores <= r.allowed == len(os.sched_getaffinity(0))
    assert 0.0 <= r.busy <= r.allowed
    assert 1 <= threads.default_threads(0.05) <= r.physical_cores
