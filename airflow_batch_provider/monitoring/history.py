"""Job history: what a job did, kept after it ends, and its heartbeat time series; read from storage only.

Layout under the records root (``{base_path}/_records``)::

    jobs/2026-12-07/1796383712345-1a2b3c4d.json    one finished job (try): ids, state, rows, chunks, duration,
                                                   locations, final progress; <ended ms>-<hash of job id>.json
    series/2026-12-07/1796383712345-1a2b3c4d.json  its heartbeat series (same name), at most MAX_POINTS points
    series/running/<job>.json                      the series of a running job, rewritten with its heartbeat

The day folder is the UTC date of the record's own end time, and the names are those of the failure records,
so the records retention (``records_days``, :mod:`airflow_batch_provider.engine.retention`) prunes history too.
The hash in a name is the job id's: every try of a job shares it, and a job page finds its records by listing
names, not by reading every record. Everything goes through :class:`~airflow_batch_provider.storage.Location`,
so S3 and other fsspec stores work. No Airflow imports.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_batch_provider.engine.records import Record, get_job_failure_history
from airflow_batch_provider.monitoring.dashboard import STALE_AFTER_S, read_heartbeats, recent_alerts
from airflow_batch_provider.monitoring.monitor import safe_name
from airflow_batch_provider.storage import Location

log = logging.getLogger("airflow_batch_provider.monitoring")

JOBS = "jobs"
SERIES = "series"
RUNNING = "running"
#: a series keeps at most this many points: when full, every other point goes and the spacing doubles
MAX_POINTS = 500
#: the chunk map shows at most this many cells (``truncated`` says how many more there were)
MAX_CELLS = 5000
STATES = ("running", "stale", "success", "failed", "stopped")
CHUNK_STATES = ("done", "resumed", "running", "retried", "failed", "quarantined", "pending")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME_RE = re.compile(r"^(\d+)-([0-9a-f]{8})\.json$")
_DAY = 86400.0
#: the keys of a job in the list (the record without its series)
SUMMARY_KEYS = (
    "job_id",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    "state",
    "started_at",
    "ended_at",
    "duration_s",
    "rows_in",
    "rows_out",
    "rows_quarantined",
    "rows_skipped",
    "chunks_total",
    "chunks_done",
    "chunks_resumed",
    "output_uri",
    "error_type",
    "error",
)


class Series:
    """A bounded time series: points are kept at a spacing that doubles each time ``max_points`` is reached
    (every other point is dropped), so a job of any length keeps between ``max_points / 2`` and
    ``max_points`` points spread over its whole run. ``add(point, force=True)`` always keeps the point
    (a job's first and last ones)."""

    def __init__(self, max_points: int | None = None) -> None:
        max_points = MAX_POINTS if max_points is None else max_points
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {max_points}")
        self.max_points = max_points
        self.points: list[dict[str, Any]] = []
        self.stride = 1
        self._seen = 0

    def add(self, point: Mapping[str, Any], *, force: bool = False) -> None:
        self._seen += 1
        if not force and (self._seen - 1) % self.stride:
            return
        self.points.append(dict(point))
        if len(self.points) > self.max_points:
            last = self.points[-1]
            self.points = self.points[:-1:2] + [last]
            self.stride *= 2


def point_of(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """One series point from a heartbeat snapshot: time, progress, rows, rate, memory, CPU, batch size, phase."""
    progress = snapshot.get("progress") or {}
    res = snapshot.get("resources") or {}
    return {
        "t": round(float(snapshot.get("updated_at") or time.time()), 3),
        "pct": progress.get("progress_percentage"),
        "rows": progress.get("rows_processed"),
        "rps": progress.get("rows_per_second"),
        "chunks": progress.get("chunks_done"),
        "pss_mb": res.get("pss_mb"),
        "rss_mb": res.get("rss_mb"),
        "cpu": res.get("cpu_percent"),
        "batch_size": progress.get("batch_size"),
        "phase": progress.get("phase"),
    }


def job_hash(job_id: str) -> str:
    return hashlib.sha256(str(job_id).encode("utf-8", "surrogatepass")).hexdigest()[:8]


def day_of(ts: float) -> str:
    """The UTC date of an epoch time, as day folders are named (never the local time zone)."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def record_name(record: Mapping[str, Any]) -> tuple[str, str]:
    """(day folder, file name) of a finished job's record, from its own ``ended_at``."""
    ended = float(record["ended_at"])
    return day_of(ended), f"{int(ended * 1000)}-{job_hash(record['job_id'])}.json"


def running_series(root: Location, job_id: str) -> Location:
    return root.child(SERIES, RUNNING, safe_name(job_id) + ".json")


def write_job_record(root: Location, record: Mapping[str, Any], series: list[dict[str, Any]]) -> Location:
    """Write a finished job's record and its series; returns the record's location."""
    day, name = record_name(record)
    root.child(SERIES, day, name).write_json(series)
    target = root.child(JOBS, day, name)
    target.write_json(dict(record))
    return target


def _day_end(day: str) -> float:
    return calendar.timegm(time.strptime(day, "%Y-%m-%d")) + _DAY


def _record_names(
    root: Location, since: float | None, digest: str | None = None
) -> Iterable[tuple[str, str]]:
    folder = root.child(JOBS)
    for day in folder.listdir():
        if not _DAY_RE.match(day) or (since is not None and _day_end(day) < since):
            continue
        for name in folder.child(day).listdir():
            m = _NAME_RE.match(name)
            if m is None or (digest is not None and m.group(2) != digest):
                continue
            if since is None or int(m.group(1)) / 1000 >= since:
                yield day, name


def _read(loc: Location) -> dict[str, Any] | None:
    try:
        value = loc.read_json()
    except (OSError, ValueError):  # removed by retention between listing and reading, or not ours
        return None
    return value if isinstance(value, dict) else None


def finished_jobs(root: Location, since: float | None = None, limit: int | None = None) -> list[Record]:
    """Finished jobs whose record ended at or after ``since`` (all without it); with ``limit``, the ``limit``
    that ended last (names are listed, only those records are read)."""
    found = []
    names = sorted(_record_names(root, since), key=lambda dn: int(dn[1].split("-", 1)[0]), reverse=True)
    for day, name in names if limit is None else names[: max(0, limit)]:
        record = _read(root.child(JOBS, day, name))
        if record is not None:
            found.append(Record({**record, "record": f"{day}/{name}"}))
    return found


def _running(beat: Mapping[str, Any], state: str) -> Record:
    progress = beat.get("progress") or {}
    started = beat.get("started_at")
    return Record(
        {
            **{k: beat.get(k) for k in ("job_id", "dag_id", "run_id", "task_id", "map_index", "output_uri")},
            "try_number": beat.get("try_number"),
            "state": state,
            "started_at": started,
            "ended_at": None,
            "duration_s": round(float(beat.get("updated_at") or 0) - float(started), 1) if started else None,
            "rows_in": progress.get("rows_processed"),
            "rows_out": None,
            "chunks_total": progress.get("chunks_total"),
            "chunks_done": progress.get("chunks_done"),
            "progress": dict(progress),
            "resources": beat.get("resources"),
            "heartbeat_age_s": beat.get("age_s"),
        }
    )


def list_jobs(
    root: Location,
    *,
    days: float = 7,
    dag_id: str | None = None,
    state: str | None = None,
    allowed: Any = None,
    now: float | None = None,
    stale_after_s: float = STALE_AFTER_S,
    limit: int | None = None,
) -> list[Record]:
    """Running, stale and finished jobs of the last ``days``, newest first (by start, running ones first on a
    tie). ``allowed``: a predicate on a job's ``dag_id`` (the caller's authorization), None for all.
    ``limit``: at most that many finished records are read (those that ended last)."""
    since = (time.time() if now is None else now) - float(days) * _DAY
    active, stale = read_heartbeats(root, stale_after_s)
    jobs = [_running(b, "running") for b in active] + [_running(b, "stale") for b in stale]
    for record in finished_jobs(root, since, limit):
        jobs.append(Record({k: record.get(k) for k in SUMMARY_KEYS} | {"progress": record.get("progress")}))
    jobs = [
        j
        for j in jobs
        if (dag_id is None or j.get("dag_id") == dag_id)
        and (state is None or j.get("state") == state)
        and (allowed is None or allowed(j.get("dag_id")))
    ]
    jobs.sort(key=lambda j: (float(j.get("started_at") or j.get("ended_at") or 0), j["ended_at"] is None))
    return jobs[::-1]


def find_job(
    root: Location, job_id: str, try_number: int | None = None, *, stale_after_s: float = STALE_AFTER_S
) -> tuple[Record, list[dict[str, Any]]] | None:
    """A job (a running one's heartbeat first, else its newest finished record, or the record of
    ``try_number``) and its series; None when there is none."""
    active, stale = read_heartbeats(root, stale_after_s)
    for beats, state in ((active, "running"), (stale, "stale")):
        for beat in beats:
            if beat.get("job_id") == job_id and try_number in (None, beat.get("try_number")):
                series = _read_list(running_series(root, job_id))
                return Record({**_running(beat, state), "active_alerts": beat.get("active_alerts")}), series
    matches = []
    for day, name in _record_names(root, None, job_hash(job_id)):
        record = _read(root.child(JOBS, day, name))
        if record is not None and record.get("job_id") == job_id:
            if try_number is None or record.get("try_number") == try_number:
                matches.append((name, day, record))
    if not matches:
        return None
    name, day, record = max(matches, key=lambda m: m[0])
    return Record({**record, "record": f"{day}/{name}"}), _read_list(root.child(SERIES, day, name))


def _read_list(loc: Location) -> list[dict[str, Any]]:
    try:
        value = loc.read_json(None)
    except (OSError, ValueError):
        return []
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else []


def job_failures(root: Location, job: Mapping[str, Any], limit: int = 500) -> list[Record]:
    """The failure records of this job (this try when the job names one), oldest first."""
    found = get_job_failure_history(root, job_id=job["job_id"], limit=None)
    tries = job.get("try_number")
    found = [f for f in found if tries is None or f.get("try_number") in (None, tries)]
    return sorted(found, key=lambda f: float(f.get("ts") or 0))[-limit:]


def job_alerts(root: Location, job: Mapping[str, Any], limit: int = 500) -> list[Record]:
    """The alerts this job raised while it ran, oldest first."""
    start = float(job.get("started_at") or 0)
    end = float(job.get("ended_at") or time.time()) + 60
    if not start:
        return []
    hours = (end - start) / 3600 + 1 / 60
    alerts = [
        a for a in recent_alerts(root, hours, limit=10_000, now=end) if a.get("job_id") == job["job_id"]
    ]
    return sorted(alerts, key=lambda a: float(a.get("time") or 0))[-limit:]


def _segments(gen: Location) -> list[dict[str, Any]]:
    working = gen.child("_checkpoint.json").read_json(None)
    count = int(working.get("segments") or 0) if isinstance(working, dict) else 0
    records: dict[tuple[int, int], dict[str, Any]] = {}
    for i in range(count):
        for rec in _read_list(gen.child("segments", f"s{i:06d}.json")):
            if isinstance(rec.get("f"), int) and isinstance(rec.get("s"), int):
                records[(rec["f"], rec["s"])] = rec
    return [records[k] for k in sorted(records)]


def _latest_generation(folder: Location) -> Location | None:
    gens = [n for n in folder.listdir() if re.match(r"^g\d{4,}$", n)]
    return folder.child(max(gens, key=lambda n: int(n[1:]))) if gens else None


def chunk_map(
    folder: Location | None,
    failures: Iterable[Mapping[str, Any]],
    *,
    chunks_total: int,
    chunks_running: int = 0,
    running: bool = False,
) -> dict[str, Any]:
    """One cell per chunk, in source order: the finished chunks of the job folder's latest generation as its
    checkpoints recorded them (``done``; ``resumed`` when an earlier try finished it; ``retried`` when it
    failed first; ``quarantined`` when it or some of its rows went to quarantine), chunks that failed for good
    (``failed``), then the ones not finished: ``running`` (as many as were in flight at the last heartbeat)
    and ``pending``. A running job's map lags its progress by at most one checkpoint interval."""
    records = _finished_records(folder)
    failed_first, lost = _failed_chunks(failures)
    latest = max((r.get("epoch") or 0 for r in records), default=0)
    cells = [
        {"state": _state_of(r, failed_first, latest), "file": r["f"], "start": r["s"], "stop": r["e"]}
        for r in records
    ]
    finished = {(r["f"], r["s"]) for r in records}
    cells += [{"state": "failed", **cell} for key, cell in sorted(lost.items()) if key not in finished]
    left = max(0, int(chunks_total or 0) - len(cells))
    in_flight = min(left, int(chunks_running or 0)) if running else 0
    cells += [{"state": "running"}] * in_flight + [{"state": "pending"}] * (left - in_flight)
    counts = {s: sum(1 for c in cells if c["state"] == s) for s in CHUNK_STATES}
    return {"cells": cells[:MAX_CELLS], "counts": counts, "truncated": max(0, len(cells) - MAX_CELLS)}


def _finished_records(folder: Location | None) -> list[dict[str, Any]]:
    if folder is None:
        return []
    try:
        gen = _latest_generation(folder)
        return _segments(gen) if gen is not None else []
    except (OSError, ValueError):
        log.warning("could not read the checkpoints under %s", folder.uri, exc_info=True)
        return []


def _failed_chunks(
    failures: Iterable[Mapping[str, Any]],
) -> tuple[set[tuple[int, int]], dict[tuple[int, int], dict[str, Any]]]:
    """(chunks that failed at least once, the chunks whose last failure was not recovered)."""
    failed_first: set[tuple[int, int]] = set()
    lost: dict[tuple[int, int], dict[str, Any]] = {}
    for f in failures:
        chunk = f.get("chunk")
        if not (isinstance(chunk, list) and len(chunk) == 3):
            continue
        key = (int(chunk[0]), int(chunk[1]))
        failed_first.add(key)
        if f.get("recovered"):
            lost.pop(key, None)
        else:
            lost[key] = {"file": key[0], "start": key[1], "stop": int(chunk[2]), "class": f.get("class")}
    return failed_first, lost


def _state_of(record: Mapping[str, Any], failed_first: set[tuple[int, int]], latest: int) -> str:
    if record.get("skipped") or record.get("quarantine") or record.get("rows_quarantined"):
        return "quarantined"
    if (record["f"], record["s"]) in failed_first:
        return "retried"
    return "resumed" if (record.get("epoch") or 0) < latest else "done"
