"""Facts about the machine a job runs on, computed in one place (bottom layer: no Airflow, no pandas)."""

from __future__ import annotations

import math
import os

CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def _cgroup_cpus(path: str = CGROUP_CPU_MAX) -> int | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max`` holds ``quota period`` or ``max period``)."""
    try:
        with open(path) as fh:
            quota, _, period = fh.read().strip().partition(" ")
    except OSError:
        return None
    if quota in ("", "max"):
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period or 100000)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(cpus, quota) if quota else cpus)
