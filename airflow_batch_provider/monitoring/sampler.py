"""Resource samples of a job's process tree, taken by a background thread with psutil.

RSS is summed over the process and its chunk workers (``children(recursive=True)``). Forked workers
share the parent's pages copy-on-write, so that sum counts shared pages once per process and
overestimates the tree's real footprint; PSS (proportional set size) splits shared pages between the
processes that map them and sums exactly, but costs a read of ``/proc/<pid>/smaps_rollup`` per process.
``measure_pss=True`` adds it to every sample (Linux only).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from airflow_batch_provider.engine.progress import RecordView

log = logging.getLogger("airflow_batch_provider.monitoring")

MB = 1024 * 1024


@dataclass(frozen=True)
class ResourceSample(RecordView):
    """One sample. ``cpu_percent``: the tree's CPU, 100 = one core; ``cpu_saturation``: the same over the
    cores this process may run on (100 = all of them busy)."""

    time: float
    cpu_percent: float
    cpu_saturation: float
    rss_mb: float
    pss_mb: float | None
    processes: int
    system_memory_percent: float
    disk_free_mb: float | None


from airflow_batch_provider.machine import usable_cpus  # noqa: E402, F401 - re-exported


def local_disk_free_mb(path: str | None) -> float | None:
    """Free space of the file system holding ``path`` (its nearest existing parent); None if unknown."""
    if not path:
        return None
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        return round(psutil.disk_usage(probe).free / MB, 1)
    except OSError:
        return None


class ResourceSampler:
    """Samples the current process tree every ``interval_s`` seconds in a daemon thread.

    :param interval_s: seconds between samples.
    :param disk_path: a local folder whose file system's free space is sampled (None: not sampled; give
        None for remote storage).
    :param callbacks: callables receiving each :class:`ResourceSample` (in the sampler thread).
    :param measure_pss: also sum PSS over the tree (exact for forked workers, costlier).
    """

    def __init__(
        self,
        interval_s: float = 2.0,
        *,
        disk_path: str | None = None,
        callbacks: Iterable[Callable[[ResourceSample], Any]] = (),
        measure_pss: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self.disk_path = disk_path
        self.callbacks = list(callbacks)
        self.measure_pss = measure_pss
        self.latest: ResourceSample | None = None
        self.peak_rss_mb = 0.0
        self._procs: dict[int, psutil.Process] = {}
        self._cpus = usable_cpus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process()
        try:
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            found = [root]
        # keep Process objects between samples: cpu_percent() measures since the previous call on the object
        alive = {p.pid: self._procs.get(p.pid, p) for p in found}
        self._procs = alive
        return list(alive.values())

    def sample(self) -> ResourceSample:
        """Take one sample now (also usable without the thread)."""
        cpu = rss = 0.0
        pss: float | None = 0.0 if self.measure_pss else None
        procs = self._tree()
        for proc in procs:
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    if pss is not None:
                        pss += getattr(proc.memory_full_info(), "pss", 0)
            except psutil.Error:  # a worker exited between listing and reading it
                continue
        sample = ResourceSample(
            time=time.time(),
            cpu_percent=round(cpu, 1),
            cpu_saturation=round(cpu / self._cpus, 1),
            rss_mb=round(rss / MB, 1),
            pss_mb=None if pss is None else round(pss / MB, 1),
            processes=len(procs),
            system_memory_percent=psutil.virtual_memory().percent,
            disk_free_mb=local_disk_free_mb(self.disk_path),
        )
        self.latest = sample
        self.peak_rss_mb = max(self.peak_rss_mb, sample.rss_mb)
        return sample

    def tree_pss_mb(self) -> float | None:
        """PSS summed over the process tree now (None where the platform reports no PSS)."""
        total = 0
        for proc in self._tree():
            try:
                pss = getattr(proc.memory_full_info(), "pss", None)
            except psutil.Error:  # a worker exited between listing and reading it
                continue
            if pss is None:
                return None
            total += pss
        return round(total / MB, 1)

    def start(self) -> ResourceSampler:
        if self._thread is not None:
            return self
        self._stop.clear()
        self.sample()  # primes cpu_percent and gives readers a first sample at once
        self._thread = threading.Thread(target=self._loop, name="batch-resource-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                sample = self.sample()
            except Exception:  # sampling must never break the job
                log.warning("resource sample failed", exc_info=True)
                continue
            for cb in self.callbacks:
                try:
                    cb(sample)
                except Exception:
                    log.exception("resource sample callback %r failed", cb)

    def __enter__(self) -> ResourceSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
