"""Job and system status for scripts and the CLI (``airflow-batch status``), read from storage only.

The reference API's orchestrator answered ``get_job_status(job_id)`` and ``get_system_status()`` from memory.
Here a job's state lives in files any process can read: the heartbeat of a running job
(``{records}/active/``), and the job folder's working manifest (``gNNNN/_checkpoint.json``) and committed
output (``_manifest.json``). What is queued or scheduled is Airflow's to say (the UI, ``airflow tasks
states-for-dag-run``, the REST API); ``scheduled_jobs`` is therefore ``None``.

``get_job_failure_history(job_id)`` and ``get_failure_statistics(hours)`` are the failure-record readers of
:mod:`airflow_batch_provider.engine.records` with the records root defaulting to ``{base_path}/_records``.
The base path is the engine's: ``AIRFLOW__BATCH_PROVIDER__BASE_PATH`` (what ``[batch_provider] base_path``
reads), else ``$AIRFLOW_HOME/batch_provider``; the CLI also reads ``airflow.cfg``. No Airflow imports.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from airflow_batch_provider.engine import records
from airflow_batch_provider.engine.records import Record
from airflow_batch_provider.engine.retention import RECORD_KINDS
from airflow_batch_provider.monitoring.dashboard import STALE_AFTER_S, read_heartbeats
from airflow_batch_provider.monitoring.monitor import records_root, safe_name
from airflow_batch_provider.settings import engine_base_path
from airflow_batch_provider.storage import Location

_GEN_PREFIX = "g"


def _progress_fields(progress: dict[str, Any]) -> dict[str, Any]:
    return {
        "progress_percentage": float(progress.get("progress_percentage") or 0.0),
        "processed_items": int(progress.get("rows_processed") or 0),
        "total_items": int(progress.get("rows_total") or 0),
        "chunks_done": int(progress.get("chunks_done") or 0),
        "chunks_total": int(progress.get("chunks_total") or 0),
        "rows_per_second": progress.get("rows_per_second"),
        "eta_seconds": progress.get("eta_seconds"),
        "message": progress.get("message") or "",
        # one progress per job: a job with a statistics pass is "statistics 1/2", then "processing 2/2"
        "phase": progress.get("phase") or "processing",
        "phase_index": int(progress.get("phase_index") or 1),
        "phases_total": int(progress.get("phases_total") or 1),
    }


def _from_heartbeat(beat: dict[str, Any], status: str) -> Record:
    return Record(
        {
            "job_id": beat.get("job_id"),
            "status": status,
            **_progress_fields(beat.get("progress") or {}),
            **{k: beat.get(k) for k in ("dag_id", "run_id", "task_id", "map_index", "output_uri")},
            "started_at": beat.get("started_at"),
            "updated_at": beat.get("updated_at"),
            "heartbeat_age_s": beat.get("age_s"),
            "active_alerts": [Record(a) for a in beat.get("active_alerts") or ()],
            "source": "heartbeat",
        }
    )


def _folders_for(base: Location, job_id: str) -> list[Location]:
    """Where a job's folder is: ``{base}/{job_id}`` (``run_batch_job``'s default), or, for an operator's id
    ``dag/run/task/map_index``, the same segments percent-encoded as the operators write them."""
    parts = [p for p in str(job_id).split("/") if p]
    found = [base.child(*parts)] if parts else []
    encoded = [quote(p, safe="", errors="surrogatepass") for p in parts]
    if encoded != parts:
        found.append(base.child(*encoded))
    return found


def _latest_generation(folder: Location) -> tuple[int, dict[str, Any]] | None:
    gens = sorted(
        int(name[1:]) for name in folder.listdir() if name.startswith(_GEN_PREFIX) and name[1:].isdigit()
    )
    if not gens:
        return None
    working = folder.child(f"g{gens[-1]:04d}", "_checkpoint.json").read_json()
    return (gens[-1], working) if isinstance(working, dict) else None


def _from_folder(folder: Location, job_id: str) -> Record | None:
    committed = folder.child("_manifest.json").read_json()
    latest = _latest_generation(folder)
    if latest is not None and latest[1].get("status") != "succeeded":
        generation, working = latest
        counters = working.get("counters") or {}
        total, done = int(counters.get("rows_total") or 0), int(counters.get("rows_done") or 0)
        return Record(
            {
                "job_id": working.get("job_id") or job_id,
                "status": working.get("status") or "unknown",  # running (not heartbeating: stopped), failed
                "progress_percentage": round(100.0 * done / total, 2) if total else 0.0,
                "processed_items": done,
                "total_items": total,
                "chunks_done": int(counters.get("chunks_done") or 0),
                "chunks_total": int(counters.get("chunks_total") or 0),
                "generation": generation,
                "error": working.get("error"),
                "output_uri": folder.uri,
                "updated_at": working.get("updated_at"),
                "source": "checkpoint",
            }
        )
    if isinstance(committed, dict):
        summary = committed.get("summary") or {}
        return Record(
            {
                "job_id": committed.get("job_id") or job_id,
                "status": "succeeded",
                "progress_percentage": 100.0,
                "processed_items": int(summary.get("rows_in") or 0),
                "total_items": int(summary.get("rows_in") or 0),
                "rows_out": int(summary.get("rows_out") or 0),
                "chunks_done": int(summary.get("chunks") or 0),
                "chunks_total": int(summary.get("chunks") or 0),
                "generation": committed.get("generation"),
                "output_uri": folder.uri,
                "source": "manifest",
            }
        )
    return None


def get_job_status(
    job_id: str,
    *,
    base_path: Any = None,
    output_path: Any = None,
    stale_after_s: float = STALE_AFTER_S,
) -> Record:
    """One job's status: ``status`` (``running``, ``stale`` (its heartbeat stopped), ``failed``,
    ``succeeded`` or ``not_found``), ``progress_percentage``, ``processed_items`` (rows done), ``total_items``,
    chunks, ``output_uri`` ...; readable as keys (``status.get("progress_percentage", 0)``) or attributes.

    :param job_id: the job's id: ``run_batch_job``'s ``job_id`` (default: its folder's name) or an operator's
        ``dag_id/run_id/task_id/map_index``.
    :param base_path: where jobs and ``_records`` live (default: the engine's base path).
    :param output_path: the job folder, when it is not ``{base_path}/{job_id}``.
    """
    base = Location.of(base_path if base_path is not None else engine_base_path())
    active, stale = read_heartbeats(records_root(base), stale_after_s)
    name = safe_name(job_id)
    for beats, status in ((active, "running"), (stale, "stale")):
        for beat in beats:
            if beat.get("job_id") == job_id or safe_name(str(beat.get("job_id") or "")) == name:
                return _from_heartbeat(beat, status)
    folders = [Location.of(output_path)] if output_path is not None else _folders_for(base, job_id)
    for folder in folders:
        found = _from_folder(folder, job_id)
        if found is not None:
            return found
    return Record(
        {
            "job_id": job_id,
            "status": "not_found",
            "progress_percentage": 0.0,
            "processed_items": 0,
            "searched": [f.uri for f in folders] + [records_root(base).child("active").uri],
        }  # fmt: skip
    )


def get_system_status(base_path: Any = None, *, stale_after_s: float = STALE_AFTER_S) -> Record:
    """The running jobs (from their heartbeats) with their progress and processed items, stale jobs, active
    alerts: ``running_jobs`` (a count), ``jobs`` (one status per running job), ``processed_items`` (rows done
    by the running jobs), ``stale_jobs``, ``active_alerts``; ``scheduled_jobs`` is None (Airflow's queue)."""
    base = Location.of(base_path if base_path is not None else engine_base_path())
    active, stale = read_heartbeats(records_root(base), stale_after_s)
    jobs = [_from_heartbeat(beat, "running") for beat in active]
    return Record(
        {
            "running_jobs": len(jobs),
            "scheduled_jobs": None,
            "stale_jobs": len(stale),
            "processed_items": sum(j["processed_items"] for j in jobs),
            "total_items": sum(j["total_items"] for j in jobs),
            "jobs": jobs,
            "stale": [_from_heartbeat(beat, "stale") for beat in stale],
            "active_alerts": sum(len(j["active_alerts"]) for j in jobs),
            "records_root": records_root(base).uri,
            "generated_at": time.time(),
        }
    )


def get_job_failure_history(
    job_id: str | None = None, *, root: Any = None, limit: int | None = 100, **filters: Any
) -> list[Record]:
    """A job's failure records, newest first (:func:`engine.records.get_job_failure_history` with the records
    root defaulting to ``{base_path}/_records``): each readable as ``failure.failure_type`` /
    ``failure.error_message`` (and ``class``, ``error``, ``chunk_label``, ``strategy``, ``recovered`` ...).
    ``filters``: ``dag_id``, ``run_id``, ``task_id``, ``hours``, ``now``."""
    target = root if root is not None else records_root()
    return records.get_job_failure_history(target, job_id=job_id, limit=limit, **filters)


def get_failure_statistics(
    hours: float = 24, *, root: Any = None, now: float | None = None
) -> dict[str, Any]:
    """:func:`engine.records.get_failure_statistics` with the records root defaulting to
    ``{base_path}/_records``: ``total_failures``, ``recovery_success_rate`` (%), ``most_common_failure`` and
    this project's ``total``, ``recovery_rate``, ``by_class`` ..."""
    return records.get_failure_statistics(root if root is not None else records_root(), hours, now=now)


def cleanup_old_records(days: float = 7, *, root: Any = None, dry_run: bool = False) -> dict[str, Any]:
    """:func:`engine.records.cleanup_old_records` over failure records, alerts and job history, the root defaulting to
    ``{base_path}/_records``; ``removed`` is how many were deleted."""
    target = root if root is not None else records_root()
    return records.cleanup_old_records(target, days=days, dry_run=dry_run, folders=RECORD_KINDS)
