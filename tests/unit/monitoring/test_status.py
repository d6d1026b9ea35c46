"""get_job_status / get_system_status / airflow-batch status, and the failure readers with their default root:
real jobs, real heartbeats, real job folders."""

from __future__ import annotations

import json
import os

import pytest

from airflow_batch_provider.cli import main
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.progress import ProgressEvent
from airflow_batch_provider.monitoring import (
    JobMonitor,
    get_failure_statistics,
    get_job_failure_history,
    get_job_status,
    get_system_status,
)
from tests.conftest import sample_frame


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    return tmp_path / "base"


def _event(kind, rows, total=1000, chunks=(3, 10)):
    return ProgressEvent(kind, "j", 100.0 * rows / total, rows, total, chunks[0], chunks[1], 500.0, 1.4, "m")


def test_a_running_job_is_read_from_its_heartbeat(base):
    monitor = JobMonitor("dag/run:1/task/-1", base_path=base, heartbeat_interval_s=0.001,
                         labels={"dag_id": "dag", "run_id": "run:1", "task_id": "task", "map_index": -1})  # fmt: skip
    other = JobMonitor("job-b", base_path=base, heartbeat_interval_s=0.001)
    with monitor, other:
        monitor.on_event(_event("progress", 450))
        other.on_event(_event("progress", 100, total=200, chunks=(1, 2)))
        status = get_job_status("dag/run:1/task/-1")
        assert status["status"] == "running" and status.status == "running"
        assert status.get("progress_percentage", 0) == 45.0 and status["processed_items"] == 450
        assert (status["total_items"], status["chunks_done"], status["dag_id"]) == (1000, 3, "dag")
        system = get_system_status()
        assert system["running_jobs"] == 2 and system["scheduled_jobs"] is None
        assert system["processed_items"] == 550 and system["total_items"] == 1200
        assert sorted(j["job_id"] for j in system["jobs"]) == ["dag/run:1/task/-1", "job-b"]
        assert main(["status", "--base", str(base), "--json"]) == 0
    assert get_system_status()["running_jobs"] == 0  # stop() removed the heartbeats


def _fails_after(batch, ctx):
    if ctx.start_row >= 300:
        raise ValueError("bad value in a row")
    return batch


def test_finished_and_failed_jobs_are_read_from_their_folders(base, capsys):
    df = sample_frame(600, seed=1)
    run_batch_job(df, "passthrough", config={"batch_size": 100}, output_path=base / "job-ok", job_id="job-ok")
    done = get_job_status("job-ok")
    assert (done.status, done.progress_percentage, done.processed_items, done.rows_out) == (
        "succeeded", 100.0, 600, 600)  # fmt: skip

    task_id = "etl/manual__2026-12-01T00:00:00+00:00/enrich/-1"  # an operator's id, folder percent-encoded
    folder = base / "etl" / "manual__2026-12-01T00%3A00%3A00%2B00%3A00" / "enrich" / "-1"
    config = {"batch_size": 100, "max_concurrent_batches": 1, "retry_attempts": 0}
    with pytest.raises(Exception, match="bad value"):
        run_batch_job(df, _fails_after, config=config, output_path=folder, job_id=task_id)
    failed = get_job_status(task_id)
    assert failed.status == "failed" and failed.processed_items == 300 and failed.total_items == 600
    assert failed.progress_percentage == 50.0 and "bad value" in failed.error

    assert get_job_status("nope")["status"] == "not_found"
    assert main(["status", "nope", "--base", str(base)]) == 1
    assert main(["status", task_id, "--base", str(base)]) == 0
    out = capsys.readouterr().out
    assert f"Job {task_id} under {base}" in out and "failed, 50.0% (300 of 600 rows, 3/" in out

    assert main(["status", "job-ok", "--base", str(base), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["processed_items"] == 600

    # the failure readers default to {base_path}/_records (AIRFLOW__BATCH_PROVIDER__BASE_PATH)
    (failure,) = get_job_failure_history(task_id)
    assert failure.failure_type == failure["class"] == "processing" and failure.error_type == "ValueError"
    assert "bad value" in failure.error_message and failure.error_message == failure["error"]
    stats = get_failure_statistics(hours=None)
    assert stats["total_failures"] == stats["total"] == 1 and stats["most_common_failure"] == failure["class"]
    assert stats["recovery_success_rate"] == 0.0 and os.path.isdir(base / "_records")
