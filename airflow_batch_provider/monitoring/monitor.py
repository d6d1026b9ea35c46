"""``JobMonitor``: a job's sampler, alert rules and heartbeat file, for readers in other processes.

While a job runs, ``{records_root}/active/<job>.json`` holds its ids, progress, last resource sample
and active alerts (rewritten at most every ``heartbeat_interval_s``, and at once on start, end and new
alerts); each new alert is also written to ``{records_root}/alerts/YYYY-MM-DD/``. Each heartbeat also adds a
point to the job's bounded series (``series/running/<job>.json``); when the job ends, :meth:`JobMonitor.stop`
writes its history record and series (:mod:`.history`) and removes both running files. All I/O goes through
:class:`~airflow_batch_provider.storage.Location`, so local disks and object stores both work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from airflow_batch_provider.engine.redaction import scrub_message
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.monitoring.alerts import Alert, AlertRules
from airflow_batch_provider.monitoring.sampler import ResourceSampler
from airflow_batch_provider.settings import RECORDS_FOLDER, engine_base_path
from airflow_batch_provider.storage import Location

log = logging.getLogger("airflow_batch_provider.monitoring")

RECORDS_DIR = RECORDS_FOLDER
PROGRESS_KEYS = (
    "event_type",
    "progress_percentage",
    "rows_processed",
    "rows_total",
    "chunks_done",
    "chunks_total",
    "rows_per_second",
    "eta_seconds",
    "phase",
    "phase_index",
    "phases_total",
    "phase_percentage",
)
#: counters the progress events carry in ``extra`` (when > 0) that the heartbeat keeps
EXTRA_KEYS = ("batch_size", "chunks_running", "rows_skipped")


def records_root(base_path: Any = None) -> Location:
    """``{base_path}/_records``; ``base_path=None``: the engine's default base path (``settings``)."""
    if base_path is None:
        base_path = engine_base_path()
    return Location.of(base_path).child(RECORDS_DIR)


def safe_name(job_id: str) -> str:
    """A file name for a job id: percent-encoded, shortened with a hash when long."""
    text = quote(job_id, safe="") or "job"
    if len(text) > 150:
        text = text[:120] + "-" + hashlib.sha256(job_id.encode()).hexdigest()[:16]
    return text


class JobMonitor:
    """Samples resources, evaluates alert rules and keeps a heartbeat file while a job runs.

    Use ``start()``, pass ``on_event`` as a progress callback, ``stop()`` in ``finally`` (or ``with``).

    :param job_id: the job's id (the operator's is ``dag/run/task/map_index``).
    :param base_path: where ``_records`` lives (default: the engine's default base path).
    :param output_uri: the job folder, shown on the dashboard; its free disk space is sampled when local.
    :param labels: ``dag_id``, ``run_id``, ``task_id``, ``map_index`` when known.
    :param rules: an :class:`AlertRules` (copied for this run) or a mapping of thresholds (see
        :meth:`AlertRules.from_value`; it may also hold ``sample_interval_s`` and ``heartbeat_interval_s``,
        which override the parameters below). Thresholds not given: the defaults, with ``memory_limit_mb``
        and ``timeout_seconds`` from ``config``.
    :param alert_callbacks: callables receiving each new :class:`Alert`.
    :param records_path: the ``_records`` folder itself (overrides ``base_path``; the engine passes its own).
    """

    def __init__(
        self,
        job_id: str,
        *,
        base_path: Any = None,
        output_uri: str | None = None,
        labels: Mapping[str, Any] | None = None,
        config: Any = None,
        rules: AlertRules | Mapping[str, Any] | None = None,
        alert_callbacks: Iterable[Callable[[Alert], Any]] = (),
        sample_interval_s: float = 2.0,
        heartbeat_interval_s: float = 5.0,
        records_path: Any = None,
    ) -> None:
        self.job_id = job_id
        self.records_path = records_path
        self.base_path = base_path
        self.output_uri = output_uri
        self.labels = dict(labels or {})
        self.config = config
        if isinstance(rules, Mapping):
            rules = dict(rules)
            sample_interval_s = _interval(rules, "sample_interval_s", sample_interval_s)
            heartbeat_interval_s = _interval(rules, "heartbeat_interval_s", heartbeat_interval_s)
        self.rules = AlertRules.from_value(rules, job_id, config=config)
        self.alert_callbacks = list(alert_callbacks)
        self.sample_interval_s = sample_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._lock = threading.RLock()
        self._progress: dict[str, Any] = {}
        self._last_write = 0.0
        self._sampler: ResourceSampler | None = None
        self._started_at: float | None = None
        self._series: Any = None
        self._ended = False

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> JobMonitor:
        self.root = Location.of(self.records_path) if self.records_path else records_root(self.base_path)
        self.heartbeat = self.root.child("active", safe_name(self.job_id) + ".json")
        from airflow_batch_provider.monitoring import history  # imports this module

        self._series = history.Series()
        self.series_file = history.running_series(self.root, self.job_id)
        self.rules.callbacks = [self._record_alert, *self.rules.callbacks, *self.alert_callbacks]
        self._started_at = time.time()
        self._sampler = ResourceSampler(
            self.sample_interval_s, disk_path=self._local_output(), callbacks=[self.on_sample]
        )
        self._sampler.start()
        self._write(force=True)
        return self

    def stop(self, result: Any = None, error: BaseException | None = None) -> None:
        """Stop sampling, write the job's history record (:meth:`finish`) and remove the heartbeat and the
        running series (the job is no longer active). ``result``: the :class:`JobResult`; ``error``: what
        ended the job otherwise (a cancellation is ``stopped``, anything else ``failed``)."""
        if self._sampler is not None:
            self._sampler.stop()
        heartbeat = getattr(self, "heartbeat", None)
        if heartbeat is None or self._ended:
            return
        self._ended = True
        self.finish(result, error)
        for loc in (heartbeat, self.series_file):
            try:
                loc.remove()
            except Exception:  # noqa: BLE001 - a stale heartbeat is reported as stale, never fatal
                log.warning("could not remove %s", getattr(loc, "uri", loc), exc_info=True)

    def __enter__(self) -> JobMonitor:
        return self.start()

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        self.stop(error=error)

    def finish(self, result: Any = None, error: BaseException | None = None) -> dict[str, Any] | None:
        """Write ``jobs/YYYY-MM-DD/<ended ms>-<hash>.json`` (the UTC date of the end) and its series; never
        raises (monitoring must not fail the job). Returns the record, None when it could not be written."""
        from airflow_batch_provider.exceptions import JobCancelledError
        from airflow_batch_provider.monitoring import history

        ended = time.time()
        with self._lock:
            snapshot = self.snapshot()
            snapshot["updated_at"] = ended
            self._series.add(history.point_of(snapshot), force=True)
            series = list(self._series.points)
        progress = snapshot["progress"]
        state = (
            "success" if error is None else "stopped" if isinstance(error, JobCancelledError) else "failed"
        )
        summary = result.to_dict() if result is not None and hasattr(result, "to_dict") else {}
        extra = summary.get("extra") or {}
        record = {
            **{k: snapshot.get(k) for k in ("job_id", "dag_id", "run_id", "task_id", "map_index")},
            "try_number": self.labels.get("try_number"),
            "state": state,
            "started_at": self._started_at,
            "ended_at": ended,
            "duration_s": round(ended - (self._started_at or ended), 3),
            "rows_in": summary.get("rows_in", progress.get("rows_processed")),
            "rows_out": summary.get("rows_out"),
            "rows_quarantined": extra.get("rows_quarantined"),  # bad rows, in quarantine/
            "rows_skipped": extra.get("rows_skipped"),  # rows of chunks skipped whole, listed in skipped/
            "chunks_total": summary.get("chunks_total", progress.get("chunks_total")),
            "chunks_done": summary.get("chunks_processed", progress.get("chunks_done")),
            "chunks_resumed": summary.get("chunks_resumed"),
            "chunks_skipped": summary.get("chunks_skipped"),
            "generation": summary.get("generation"),
            "output_uri": self.output_uri,
            "report_uri": summary.get("report_uri"),
            "error_type": type(error).__name__ if error is not None else None,
            "error": scrub_message(str(error), limit=500) if error is not None else None,
            "progress": progress,
            "peak_rss_mb": snapshot.get("peak_rss_mb"),
            "points": len(series),
        }
        try:
            history.write_job_record(self.root, _clean(record), _clean(series))
        except Exception:  # noqa: BLE001 - monitoring must never fail the job
            log.warning("could not write the history record of %s", self.job_id, exc_info=True)
            return None
        return record

    # -- inputs --------------------------------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """A progress callback: keeps the latest progress, evaluates the progress rules."""
        with self._lock:
            self._progress = {k: event.get(k) for k in PROGRESS_KEYS}
            extra = event.get("extra") or {}
            self._progress.update({k: extra.get(k) for k in EXTRA_KEYS})
            self._progress["message"] = scrub_message(event.get("message"), limit=300)  # the dashboard's
            self._progress["timestamp"] = event.get("timestamp")
            fired = self.rules.on_event(event)
            kind = str(event.get("event_type") or "")
            terminal = kind in ("started", "completed", "failed") or kind.startswith("phase_")
            self._write(force=terminal or bool(fired))

    def on_sample(self, sample: Any) -> None:
        """A sampler callback: evaluates the resource rules. The RSS sum counts pages that forked workers share
        with the parent once per process, so above the memory threshold the tree's PSS (exact, costlier) is
        measured and decides."""
        threshold = self.rules.memory_threshold_mb
        if (
            threshold is not None
            and self._sampler is not None
            and sample.pss_mb is None
            and sample.rss_mb > threshold
        ):
            sample = dataclasses.replace(sample, pss_mb=self._sampler.tree_pss_mb())
            self._sampler.latest = sample
        with self._lock:
            fired = self.rules.on_sample(sample)
            self._write(force=bool(fired))

    @property
    def peak_rss_mb(self) -> float:
        return self._sampler.peak_rss_mb if self._sampler else 0.0

    # -- records -------------------------------------------------------------------------------------
    def _local_output(self) -> str | None:
        if not self.output_uri:
            return None
        loc = Location.of(self.output_uri)
        return loc.path if loc.is_local else None

    def snapshot(self) -> dict[str, Any]:
        sample = self._sampler.latest if self._sampler else None
        return {
            "job_id": self.job_id,
            **{k: self.labels.get(k) for k in ("dag_id", "run_id", "task_id", "map_index", "try_number")},
            "output_uri": self.output_uri,
            "started_at": self._started_at,
            "progress": dict(self._progress),
            "resources": sample.to_dict() if sample else None,
            "peak_rss_mb": self.peak_rss_mb,
            "active_alerts": [a.to_dict() for a in self.rules.active.values()],
            "updated_at": time.time(),
        }

    def _write(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.heartbeat_interval_s:
            return
        self._last_write = now
        from airflow_batch_provider.monitoring.history import point_of

        snapshot = _clean(self.snapshot())
        self._series.add(point_of(snapshot), force=self._series.points == [])
        try:
            self.heartbeat.write_json(snapshot)
            self.series_file.write_json(_clean(self._series.points))
        except Exception:  # noqa: BLE001 - monitoring must never fail the job
            log.warning("could not write the heartbeat %s", self.heartbeat.uri, exc_info=True)

    def _record_alert(self, alert: Alert) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime(alert.time))
        name = f"{int(alert.time * 1000)}-{uuid.uuid4().hex[:8]}.json"  # the failure records' naming
        record = {**alert.to_dict(), **{k: self.labels.get(k) for k in ("dag_id", "run_id", "task_id")}}
        record["message"] = scrub_message(record.get("message"), limit=None)
        try:
            self.root.child("alerts", day, name).write_json(_clean(record))
        except Exception:  # noqa: BLE001
            log.warning("could not record alert %r", alert.title, exc_info=True)


def _interval(settings: dict[str, Any], key: str, default: float) -> float:
    value = settings.pop(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"alert_rules: {key}={value!r} must be a number of seconds above 0")
    return float(value)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (heartbeats are written with allow_nan=False)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
