"""Job history on a real S3 API (moto), through ``[batch_provider] conn_id`` as the operators write it: the
running series and heartbeat while a job runs, its record and series after it ends, read back by the
dashboard's readers and pruned by the records retention."""

from __future__ import annotations

import time

from airflow_batch_provider.engine.records import cleanup_old_records
from airflow_batch_provider.engine.retention import RECORD_KINDS
from airflow_batch_provider.monitoring import JobMonitor, history
from airflow_batch_provider.monitoring.monitor import records_root
from airflow_batch_provider.operators.conf import records_target
from airflow_batch_provider.plugins.dashboard import _base_path as dashboard_base_path
from tests.s3.conftest import CONN_ID, s3_keys

JOB = "dag/manual__2026-03-01T10:00:00+00:00/t/2"


def test_history_is_written_and_read_on_s3(s3_prefix, s3_client, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", f"s3://{s3_prefix}")
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__CONN_ID", CONN_ID)
    labels = {"dag_id": "dag", "run_id": "manual__2026-03-01T10:00:00+00:00", "task_id": "t", "map_index": 2}
    monitor = JobMonitor(
        JOB, records_path=records_target(), labels={**labels, "try_number": 1}, heartbeat_interval_s=0
    )
    root = records_root(dashboard_base_path())  # what the plugin reads
    with monitor:
        for pct in (10.0, 60.0):
            monitor.on_event(
                {"event_type": "progress", "progress_percentage": pct, "extra": {"batch_size": 500}}
            )
        (running,) = history.list_jobs(root)
        assert running["state"] == "running"
        assert [p["pct"] for p in history.find_job(root, JOB)[1]][-2:] == [10.0, 60.0]
        assert any(k.startswith("_records/series/running/") for k in s3_keys(s3_client, s3_prefix))
    keys = s3_keys(s3_client, s3_prefix)
    assert not [k for k in keys if k.startswith(("_records/active/", "_records/series/running/"))], keys
    (record_key,) = [k for k in keys if k.startswith("_records/jobs/")]
    (series_key,) = [k for k in keys if k.startswith("_records/series/")]
    job, series = history.find_job(root, JOB)
    day = time.strftime("%Y-%m-%d", time.gmtime(job["ended_at"]))
    assert record_key.split("/")[2] == day and record_key.split("/")[3] == series_key.split("/")[3]
    assert (job["state"], job["try_number"], job["map_index"]) == ("success", 1, 2)
    assert series[-1]["batch_size"] == 500 and [j["job_id"] for j in history.list_jobs(root)] == [JOB]

    done = cleanup_old_records(root, days=1, folders=RECORD_KINDS, now=job["ended_at"] + 3 * 86400)
    assert done["removed"] == 2 and history.list_jobs(root) == []
