"""How many torch threads a run should use: the CPU cores that are actually free now.

A torch run whose threads share cores with other busy processes slows down
many times (each OpenMP parallel region waits for the thread that lost its
core: 3.6-10x measured on the project's 2-core machines), while on an idle
machine every core counts (2 threads train the default study 1.56x faster
than 1). So the default is measured, not fixed:

    usable = min(CPUs in this process's affinity mask, physical cores among them,
                 the cgroup's CPU quota (cpu.max), when one is set)
    busy   = CPUs' worth of time spent by other work on those CPUs over a short
             window (/proc/stat: everything but idle and iowait; steal counts as
             busy: a hypervisor that takes the core away is as bad as a neighbour)
    threads = clamp(floor(usable - busy + SLACK), 1, floor(usable))

``SLACK`` = 0.25: a core counts as free when at least 75% of it is idle.
Never above the physical cores (a second hyper-thread of a core adds nothing to
dense products and halves each thread's cache). ``reglab run --threads N``
overrides all of it. Readings that the platform does not offer fall back to
the next best (no /proc/stat: busy = 0; no topology: physical = logical).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

SLACK = 0.25          # CPUs: a core at most 25% busy still counts as free
SAMPLE_SECONDS = 0.2  # window over which the other work's CPU time is measured


@dataclass(frozen=True)
class CpuReading:
    allowed: int                 # CPUs in this process's affinity mask (logical CPUs)
    physical_cores: int          # distinct (package, core) pairs among them
    quota: float | None          # cgroup CPU quota in CPUs (cpu.max quota / period), None when unlimited
    busy: float                  # CPUs' worth of other work on the allowed CPUs, in [0, allowed]


def choose_threads(r: CpuReading) -> int:
    """Torch threads for a reading: the free physical cores, at least 1 (see the module docstring)."""
    usable = min(float(r.allowed), float(r.physical_cores), r.quota if r.quota else math.inf)
    most = max(1, math.floor(usable))
    return max(1, min(most, math.floor(usable - r.busy + SLACK)))


def default_threads(sample_seconds: float = SAMPLE_SECONDS) -> int:
    """``choose_threads`` of this machine, read now (takes ``sample_seconds``)."""
    return choose_threads(read_cpus(sample_seconds))


def usable_cpus() -> int:
    """The most threads that can run at once: the CPUs in this process's affinity mask, at most the
    cgroup's CPU quota (rounded up), at least 1. An explicit ``--threads`` above it is capped to it."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(allowed, math.ceil(quota) if quota else allowed))


def read_cpus(sample_seconds: float = SAMPLE_SECONDS) -> CpuReading:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return CpuReading(allowed=len(cpus), physical_cores=_physical_cores(cpus), quota=_cgroup_quota(),
                      busy=_busy_cpus(cpus, sample_seconds))


def _physical_cores(cpus: list[int]) -> int:
    cores = set()
    for c in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        try:
            cores.add((topo.joinpath("physical_package_id").read_text().strip(),
                       topo.joinpath("core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by the cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _cpu_times(cpus: list[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over ``cpus`` from /proc/stat, None where it cannot be read."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    busy = total = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
            t = [int(x) for x in fields[1:9]]
            total += sum(t)
            busy += sum(t) - t[3] - t[4]
    return (busy, total) if total else None


def _busy_cpus(cpus: list[int], seconds: float) -> float:
    """CPUs' worth of busy time on ``cpus`` over ``seconds`` (this process sleeps meanwhile)."""
    before = _cpu_times(cpus)
    if before is None:
        return 0.0
    time.sleep(seconds)
    after = _cpu_times(cpus)
    if after is None or after[1] <= before[1]:
        return 0.0
    fraction = (after[0] - before[0]) / (after[1] - before[1])
    return min(len(cpus), max(0.0, fraction * len(cpus)))
