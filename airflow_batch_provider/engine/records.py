"""Failure records: one small JSON object per failure, stored under the base path, and what they add up to.

Layout (``root`` is usually ``{base_path}/_records``)::

    failures/2026-12-04/1796383712345-1a2b3c4d.json   one record: <epoch ms>-<8 hex>.json

One object per record (a few hundred bytes), written atomically and never rewritten, so concurrent tasks
and chunk workers never contend, and any fsspec store works (no append, no locking). Day folders make
reading "the last 24 hours" and deleting "older than 7 days" cheap: whole folders are skipped or removed.

Record keys written by the engine: ``time`` (ISO-8601 UTC), ``ts`` (epoch seconds), ``job_id``,
``output_uri``, ``dag_id``, ``run_id``, ``task_id``, ``map_index``, ``try_number`` (None outside Airflow),
``chunk`` (``[file_index, start_row, stop_row]`` or None), ``chunk_label``, ``class``, ``error_type``,
``error`` (scrubbed of row values), ``attempt``, ``strategy``, ``recovered`` (bool), ``time_lost_s``.
Readers tolerate missing and unknown keys. What the readers return are :class:`Record` objects: dicts whose keys
also read as attributes (``failure.error_type``); failure history adds the reference API's names
``failure_type`` (= ``class``) and ``error_message`` (= ``error``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_batch_provider.engine.jsonsafe import to_jsonable
from airflow_batch_provider.engine.redaction import MAX_MESSAGE, scrub_message  # noqa: F401 - re-exported
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.settings import RECORDS_FOLDER  # noqa: F401 - re-exported
from airflow_batch_provider.storage import Location

log = logging.getLogger(__name__)

FAILURES = "failures"
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME_RE = re.compile(r"^(\d+)-[0-9a-f]{8}\.json$")
_DAY = 86400.0


class Record(dict[str, Any]):
    """A record readable as keys and as attributes (``r["level"]`` and ``r.level``); still a plain ``dict`` for
    JSON, equality and everything that expects one. A missing attribute raises ``AttributeError``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"record has no field {name!r}; fields: {', '.join(self)}") from None

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(k for k in self if isinstance(k, str))})


def failure_record(record: Mapping[str, Any]) -> Record:
    """A stored failure record with the reference API's names added: ``failure_type`` (the class) and
    ``error_message`` (the scrubbed error)."""
    return Record({**record, "failure_type": record.get("class"), "error_message": record.get("error")})


def _day_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


def _day_start(day: str) -> float:
    return dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _number(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


class FailureRecords:
    """The failure records under ``root`` (a path, URI, ``ObjectStoragePath`` or ``Location``)."""

    def __init__(self, root: Any) -> None:
        self.root = Location.of(root)
        self.failures = self.root.child(FAILURES)

    def add(self, record: Mapping[str, Any], *, known: Iterable[str] = ()) -> str:
        """Store one record; returns its URI. ``ts``/``time`` default to now; ``error`` is scrubbed
        (``engine.redaction``), keeping the identifiers in ``known`` (column, parameter and rule names, paths)."""
        doc = dict(to_jsonable(dict(record)))
        ts = _number(doc.get("ts"), 0.0) or time.time()
        doc["ts"] = ts
        doc.setdefault("time", _iso(ts))
        if "error" in doc:
            doc["error"] = scrub_message(doc["error"], known)
        target = self.failures.child(_day_of(ts), f"{int(ts * 1000)}-{uuid.uuid4().hex[:8]}.json")
        target.write_json(doc)
        return target.uri

    def days(self) -> list[str]:
        return [d for d in self.failures.listdir() if _DAY_RE.match(d)]

    def iter_records(self, since: float | None = None) -> Iterator[dict[str, Any]]:
        """Records oldest first, those with ``ts >= since`` only; day folders older than ``since`` are skipped."""
        for day in self.days():
            if since is not None and _day_start(day) + _DAY <= since:
                continue
            for name in self.failures.child(day).listdir():
                match = _NAME_RE.match(name)
                if not match or (since is not None and int(match.group(1)) / 1000 < since):
                    continue
                record = self._read(self.failures.child(day, name))
                if record is not None:
                    yield record

    @staticmethod
    def _read(loc: Location) -> dict[str, Any] | None:
        try:
            record = loc.read_json()
        except (OSError, ValueError):
            log.warning("skipping unreadable failure record %s", loc.uri)
            return None
        return record if isinstance(record, dict) else None


def _since(hours: float | None, now: float | None) -> float | None:
    return None if hours is None else (time.time() if now is None else now) - float(hours) * 3600


def get_failure_statistics(root: Any, hours: float = 24, *, now: float | None = None) -> dict[str, Any]:
    """What failed in the ``hours`` before ``now`` (default: the clock): totals per class and strategy,
    recovery rate, time lost.

    ``classes`` holds, per class, ``failures``, ``recovered`` and ``time_lost_s``; ``jobs`` counts failures
    per ``job_id``. ``recovery_rate`` is None when nothing failed.

    The reference API's names are there too: ``total_failures`` (= ``total``), ``recovery_success_rate`` (a
    percentage, 0.0 when nothing failed) and ``most_common_failure`` (= ``most_common``).
    """
    by_class: Counter[str] = Counter()
    by_strategy: Counter[str] = Counter()
    jobs: Counter[str] = Counter()
    classes: dict[str, dict[str, float]] = {}
    for record in FailureRecords(root).iter_records(since=_since(hours, now)):
        cls = str(record.get("class") or "unknown")
        by_class[cls] += 1
        by_strategy[str(record.get("strategy") or "unknown")] += 1
        jobs[str(record.get("job_id") or record.get("output_uri") or "unknown")] += 1
        row = classes.setdefault(cls, {"failures": 0, "recovered": 0, "time_lost_s": 0.0})
        row["failures"] += 1
        row["recovered"] += bool(record.get("recovered"))
        row["time_lost_s"] += _number(record.get("time_lost_s"))
    total = sum(by_class.values())
    recovered = sum(int(r["recovered"]) for r in classes.values())
    most_common = by_class.most_common(1)[0][0] if total else None
    return {
        "total_failures": total,
        "recovery_success_rate": round(100.0 * recovered / total, 3) if total else 0.0,
        "most_common_failure": most_common,
        "hours": hours,
        "total": total,
        "by_class": dict(by_class.most_common()),
        "by_strategy": dict(by_strategy.most_common()),
        "classes": {c: {**classes[c], "time_lost_s": round(classes[c]["time_lost_s"], 3)} for c in by_class},
        "recovered": recovered,
        "recovery_rate": recovered / total if total else None,
        "most_common": most_common,
        "time_lost_s": round(sum(r["time_lost_s"] for r in classes.values()), 3),
        "jobs": dict(jobs.most_common()),
    }


def get_job_failure_history(
    root: Any,
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    job_id: str | None = None,
    hours: float | None = None,
    limit: int | None = 100,
    now: float | None = None,
) -> list[Record]:
    """Records matching every filter given, newest first, at most ``limit``: :class:`Record` objects with
    ``failure_type`` and ``error_message`` added (:func:`failure_record`)."""
    wanted = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "job_id": job_id}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    found = [
        r
        for r in FailureRecords(root).iter_records(since=_since(hours, now))
        if all(r.get(k) == v for k, v in wanted.items())
    ]
    found.sort(key=lambda r: _number(r.get("ts")), reverse=True)
    found = found if limit is None else found[: max(0, int(limit))]
    return [failure_record(r) for r in found]


def cleanup_old_records(
    root: Any,
    days: float = 7,
    dry_run: bool = False,
    folders: Sequence[str] = (FAILURES,),
    now: float | None = None,
) -> dict[str, Any]:
    """Delete records older than ``days``: the record files of day folders that are all older (then the
    folder, once empty), else single files.

    ``folders`` are the record kinds under ``root`` laid out the same way (``failures``; the monitoring
    ``alerts`` use the same layout). Only names the engine writes are deleted (``YYYY-MM-DD/<ms>-<hex>.json``):
    anything else in a day folder stays, and so does the folder. Symbolic links are never followed: a records
    root, kind folder, day folder or record that is a link is left alone, logged and listed in ``refused``.
    """
    if days < 0:
        raise ConfigError(f"days must be >= 0, got {days!r}")
    root_loc = Location.of(root)
    cutoff = (time.time() if now is None else now) - float(days) * _DAY
    removed: list[str] = []
    refused: list[str] = []
    if _refuse_link(root_loc, refused):
        folders = ()
    for kind in folders:
        kind_loc = root_loc.child(kind)
        if not _refuse_link(kind_loc, refused):
            removed.extend(_cleanup_folder(kind_loc, cutoff, dry_run, refused))
    if removed:
        log.info(
            "%s %d records older than %s days", "would remove" if dry_run else "removed", len(removed), days
        )
    return {
        "cutoff": _iso(cutoff),
        "days": days,
        "dry_run": dry_run,
        "removed": len(removed),
        "uris": removed,
        "refused": refused,
    }


def _refuse_link(loc: Location, refused: list[str]) -> bool:
    """True (and logged) when ``loc`` is a symbolic link: cleanup never follows one."""
    if not loc.is_link():
        return False
    log.warning("not cleaning up %s: it is a symbolic link, and cleanup never follows links", loc.uri)
    refused.append(loc.uri)
    return True


def _cleanup_folder(records: Location, cutoff: float, dry_run: bool, refused: list[str]) -> list[str]:
    removed: list[str] = []
    for day in (d for d in records.listdir() if _DAY_RE.match(d)):
        folder = records.child(day)
        if _day_start(day) >= cutoff or _refuse_link(folder, refused):
            continue
        whole = _day_start(day) + _DAY <= cutoff
        removed.extend(_cleanup_day(folder, None if whole else cutoff, dry_run, refused))
        if whole and not dry_run:
            folder.remove_if_empty()
    return removed


def _cleanup_day(folder: Location, cutoff: float | None, dry_run: bool, refused: list[str]) -> list[str]:
    """The record files of one day folder older than ``cutoff`` (``None``: all of them)."""
    removed = []
    for name in folder.listdir():
        match = _NAME_RE.match(name)
        if not match or (cutoff is not None and int(match.group(1)) / 1000 >= cutoff):
            continue
        record = folder.child(name)
        if _refuse_link(record, refused) or (record.is_local and not os.path.isfile(record.path)):
            continue
        removed.append(record.uri)
        if not dry_run:
            record.remove()
    return removed
