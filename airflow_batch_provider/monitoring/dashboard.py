"""Dashboard data computed from storage only: heartbeat files, alert records and failure records.

Any process that can read ``{base_path}/_records`` (the API server, a CLI, a test) sees the running jobs;
nothing here reads an in-process registry.
"""

from __future__ import annotations

import calendar
import logging
import os
import time
from typing import Any

import psutil

from airflow_batch_provider.engine.records import Record, get_failure_statistics
from airflow_batch_provider.monitoring.monitor import records_root
from airflow_batch_provider.monitoring.sampler import local_disk_free_mb, usable_cpus
from airflow_batch_provider.storage import Location

log = logging.getLogger("airflow_batch_provider.monitoring")

STALE_AFTER_S = 60.0
DAY = 86400.0
#: how long ``system_summary`` measures the CPU (psutil's first reading of a process is meaningless)
CPU_INTERVAL_S = 0.1


def system_summary(disk_path: str | None = None) -> dict[str, Any]:
    """This machine as psutil sees it (the reader's machine, not necessarily the job's): CPU use over
    ``CPU_INTERVAL_S`` (``cpu_percent``, all CPUs), memory (``memory_percent`` used), load and disk."""
    memory = psutil.virtual_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu_percent": psutil.cpu_percent(interval=CPU_INTERVAL_S),
        "cpu_count": usable_cpus(),
        "load_average": [round(x, 2) for x in load],
        "memory_total_mb": round(memory.total / 2**20),
        "memory_available_mb": round(memory.available / 2**20),
        "memory_percent": memory.percent,
        "disk_free_mb": local_disk_free_mb(disk_path),
        "time": time.time(),
    }


def read_heartbeats(root: Location, stale_after_s: float = STALE_AFTER_S) -> tuple[list[dict], list[dict]]:
    """(active, stale) jobs; a heartbeat older than ``stale_after_s`` belongs to a job that stopped
    without cleaning up (killed, OOM) or whose host lost its storage."""
    active: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    now = time.time()
    folder = root.child("active")
    for name in folder.listdir():
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            beat = folder.child(name).read_json()
        except (OSError, ValueError):  # removed between listing and reading, or not ours
            continue
        if not isinstance(beat, dict):
            continue
        beat["age_s"] = round(now - float(beat.get("updated_at") or 0), 1)
        (stale if beat["age_s"] > stale_after_s else active).append(beat)
    active.sort(key=lambda b: b.get("started_at") or 0)
    return active, stale


def recent_alerts(
    root: Location, hours: float = 24, limit: int = 100, *, now: float | None = None
) -> list[Record]:
    """Alert records of the ``hours`` before ``now`` (default: the clock), newest first (readable as
    ``alert.level`` and ``alert["level"]``)."""
    since = (time.time() if now is None else now) - hours * 3600
    folder = root.child("alerts")
    found: list[Record] = []
    for day in folder.listdir():
        if _day_end(day) < since:
            continue
        for name in folder.child(day).listdir():
            stamp = name.split("-", 1)[0]
            if not stamp.isdigit() or int(stamp) / 1000 < since:
                continue
            try:
                record = folder.child(day, name).read_json()
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                found.append(Record(record))
    found.sort(key=lambda r: r.get("time") or 0, reverse=True)
    return found[:limit]


def _day_end(day: str) -> float:
    try:
        return calendar.timegm(time.strptime(day, "%Y-%m-%d")) + DAY
    except ValueError:
        return 0.0


def _alerts_of(active: list[dict[str, Any]]) -> list[Record]:
    return [Record(alert) for beat in active for alert in beat.get("active_alerts") or ()]


def get_active_alerts(base_path: Any = None, *, stale_after_s: float = STALE_AFTER_S) -> list[Record]:
    """Alerts still active in running jobs (read from their heartbeats), readable as attributes or keys:
    ``alert.level``, ``alert.title``, ``alert.message`` (also ``metric``, ``value``, ``threshold``, ``job_id``)."""
    active, _ = read_heartbeats(records_root(base_path), stale_after_s)
    return _alerts_of(active)


def get_monitoring_dashboard_data(
    base_path: Any = None,
    *,
    hours: float = 24,
    stale_after_s: float = STALE_AFTER_S,
    now: float | None = None,
) -> dict[str, Any]:
    """System summary, active and stale jobs with progress, recent and active alerts, failure statistics.

    ``system_summary`` (the reference API's name; ``system`` is the same dict) holds ``cpu_percent`` and
    ``memory_percent`` among the machine's numbers; alerts read as attributes or keys (``alert.level``)."""
    root = records_root(base_path)
    active, stale = read_heartbeats(root, stale_after_s)
    try:
        failures = get_failure_statistics(root, hours, now=now)
    except Exception:  # noqa: BLE001 - one unreadable part must not blank the dashboard
        log.warning("could not read failure statistics under %s", root.uri, exc_info=True)
        failures = None
    system = system_summary(root.path if root.is_local else None)
    return {
        "records_root": root.uri,
        "system": system,
        "system_summary": system,
        "active_jobs": active,
        "stale_jobs": stale,
        "active_alerts": _alerts_of(active),
        "recent_alerts": recent_alerts(root, hours, now=now),
        "failure_statistics": failures,
        "generated_at": time.time(),
    }
