"""Airflow metrics from a job's progress events (``airflow.sdk.observability.stats``: StatsD or OpenTelemetry,
as ``[metrics]`` configures).

Metric names (prefix ``batch_provider.``): ``rows_processed`` and ``chunks_processed`` (counters, by the
increase since the previous event), ``chunk_seconds`` (timer: the mean wall time per chunk between two
events, times the workers running), ``chunk_failures`` (counter of ``retry`` and ``failed`` events),
``rows_skipped`` (counter, when events carry ``rows_skipped``), ``peak_memory_mb`` (gauge: the highest
process-tree RSS seen at an event, chunk workers included), and ``jobs_completed``/``jobs_failed``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

PREFIX = "batch_provider"


class BatchMetricsCallback:
    """A progress callback that emits Airflow metrics. Cheap: events arrive at most every few seconds.

    :param tags: tags on every metric (dropped by plain StatsD; kept by Datadog/InfluxDB tagging and OTel).
    :param workers: workers running in parallel, to turn wall time per chunk into time per chunk.
    :param stats: the stats object (default ``airflow.sdk.observability.stats``).
    """

    def __init__(self, tags: Mapping[str, str] | None = None, *, workers: int = 1, stats: Any = None) -> None:
        self.tags = dict(tags or {})
        self.workers = max(1, workers)
        self.stats = stats
        self.peak_memory_mb = 0.0
        self._rows = self._chunks = self._skipped = 0
        self._last: float | None = None

    def _stats(self) -> Any:
        if self.stats is None:
            from airflow.sdk.observability import stats

            self.stats = stats
        return self.stats

    def __call__(self, event: Any) -> None:
        stats = self._stats()
        now = float(event.get("timestamp") or time.time())
        kind = event.get("event_type")
        rows = int(event.get("rows_processed") or 0)
        chunks = int(event.get("chunks_done") or 0)
        if kind == "started":  # resumed rows and chunks are not this run's work
            self._rows, self._chunks, self._last = rows, chunks, now
        self._counters(stats, rows, chunks, now, event.get("extra") or {})
        if kind in ("retry", "failed"):
            stats.incr(f"{PREFIX}.chunk_failures", tags=self.tags)
        if kind in ("completed", "failed"):
            stats.incr(f"{PREFIX}.jobs_{kind}", tags=self.tags)
        self.peak_memory_mb = max(self.peak_memory_mb, _tree_rss_mb(), _self_peak_mb())
        stats.gauge(f"{PREFIX}.peak_memory_mb", round(self.peak_memory_mb, 1), tags=self.tags)

    def _counters(self, stats: Any, rows: int, chunks: int, now: float, extra: Mapping[str, Any]) -> None:
        if rows > self._rows:
            stats.incr(f"{PREFIX}.rows_processed", count=rows - self._rows, tags=self.tags)
        if chunks > self._chunks:
            done = chunks - self._chunks
            stats.incr(f"{PREFIX}.chunks_processed", count=done, tags=self.tags)
            if self._last is not None and now > self._last:
                per_chunk = (now - self._last) * self.workers / done
                stats.timing(f"{PREFIX}.chunk_seconds", timedelta(seconds=per_chunk), tags=self.tags)
        skipped = int(extra.get("rows_skipped") or 0)
        if skipped > self._skipped:
            stats.incr(f"{PREFIX}.rows_skipped", count=skipped - self._skipped, tags=self.tags)
            self._skipped = skipped
        self._rows, self._chunks = max(rows, self._rows), max(chunks, self._chunks)
        self._last = now


def _tree_rss_mb() -> float:
    import psutil

    root = psutil.Process()
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def _self_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
