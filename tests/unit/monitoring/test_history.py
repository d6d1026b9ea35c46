"""Job history: the record and series a JobMonitor writes when a job ends (success, failure, stop), the chunk
map read back from the job folder, bounded series, UTC day folders, "last N days" on records' own times, and
the records retention pruning history. Real jobs (run_batch_job on Parquet files), real files; S3 in
tests/s3/test_history_s3.py."""

from __future__ import annotations

import calendar
import json
import os
import threading
import time

import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.records import cleanup_old_records
from airflow_batch_provider.engine.retention import RECORD_KINDS
from airflow_batch_provider.exceptions import DataCorruptionError, JobCancelledError
from airflow_batch_provider.monitoring import JobMonitor, history
from airflow_batch_provider.storage import Location

JOB = "dag a/run 1/task/-1"
TASK = {"dag_id": "dag a", "run_id": "run 1", "task_id": "task", "map_index": -1}


def _utc(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))


@pytest.fixture
def far_zone(monkeypatch):
    """The CI's time zone (UTC+14): a local date differs from the UTC one for 14 hours of each day."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run(two_files, tmp_path, processor, *, try_number=1, **kwargs):
    return run_batch_job(
        two_files,
        processor,
        config=BatchConfig(
            batch_size=200, retry_delay_seconds=0, max_concurrent_batches=1, progress_interval_seconds=0
        ),
        output_path=tmp_path / "out",
        job_id=JOB,
        records_path=tmp_path / "records",
        task_info={**TASK, "try_number": try_number},
        epoch=try_number,
        alert_rules={"heartbeat_interval_s": 0.05, "sample_interval_s": 0.05},
        **kwargs,
    )


def records_of(root):
    return [json.loads(p.read_text()) for p in sorted((root / "jobs").glob("*/*.json"))]


def test_a_finished_job_leaves_a_record_its_series_and_a_chunk_map(two_files, tmp_path, far_zone):
    marker = tmp_path / "failed-once"

    def flaky(batch, ctx):
        time.sleep(0.02)  # a few heartbeats while it runs
        if (ctx.file_index, ctx.start_row) == (0, 200) and not marker.exists():
            marker.write_text("x")
            raise ConnectionError("connection reset by peer")
        if (ctx.file_index, ctx.start_row) == (0, 400):
            raise DataCorruptionError("bad bytes in this chunk")
        return batch

    result = run(two_files, tmp_path, flaky, recovery={"max_skipped_fraction": 0.5})
    root = tmp_path / "records"
    assert not list((root / "active").glob("*.json")) and not list((root / "series" / "running").glob("*"))
    (record,) = records_of(root)
    day = time.strftime("%Y-%m-%d", time.gmtime(record["ended_at"]))
    (path,) = (root / "jobs").glob("*/*.json")
    assert path.parent.name == day  # the UTC date of its own end, not the local (UTC+14) one
    assert path.name == f"{int(record['ended_at'] * 1000)}-{history.job_hash(JOB)}.json"
    assert (record["state"], record["job_id"], record["dag_id"], record["try_number"]) == (
        "success",
        JOB,
        "dag a",
        1,
    )
    assert (record["rows_in"], record["rows_out"], record["chunks_total"]) == (1777, 1577, 9)
    assert record["rows_skipped"] == 200 and record["error"] is None
    assert record["output_uri"] == result.output_uri and record["duration_s"] > 0

    found = history.find_job(Location.of(root), JOB)
    assert found is not None
    job, series = found
    assert job["state"] == "success" and len(series) == record["points"] >= 2
    pcts = [p["pct"] for p in series if p["pct"] is not None]  # the first point: before any progress
    assert pcts == sorted(pcts) and pcts[-1] == 100.0 and series[-1]["rows"] == 1777
    assert all(p["rss_mb"] for p in series[1:]) and series[-1]["batch_size"] == 177  # part-b's last chunk
    assert [t["t"] for t in series] == sorted(t["t"] for t in series)

    failures = history.job_failures(Location.of(root), job)
    assert [f["class"] for f in failures] == ["network", "data_corruption"]
    chunks = history.chunk_map(Location.of(tmp_path / "out"), failures, chunks_total=9)
    assert chunks["counts"] == {
        "done": 7,
        "resumed": 0,
        "running": 0,
        "retried": 1,
        "failed": 0,
        "quarantined": 1,
        "pending": 0,
    }
    states = {(c["file"], c["start"]): c["state"] for c in chunks["cells"]}
    assert states[(0, 200)] == "retried" and states[(0, 400)] == "quarantined" and states[(1, 0)] == "done"


def test_a_failed_try_then_a_resumed_one(two_files, tmp_path):
    fixed = tmp_path / "fixed"

    def broken(batch, ctx):  # the same processor on both tries (a changed one would start a new generation)
        if (ctx.file_index, ctx.start_row) == (1, 200) and not fixed.exists():
            raise ValueError("column 'x' has no value the processor can use")
        return batch

    with pytest.raises(Exception, match="no value the processor can use"):
        run(two_files, tmp_path, broken)
    root = Location.of(tmp_path / "records")
    (failed,) = records_of(tmp_path / "records")
    assert failed["state"] == "failed" and "no value the processor can use" in failed["error"]
    assert failed["error_type"] and failed["rows_out"] is None and failed["try_number"] == 1
    job, _ = history.find_job(root, JOB)
    chunks = history.chunk_map(Location.of(tmp_path / "out"), history.job_failures(root, job), chunks_total=9)
    states = {(c.get("file"), c.get("start")): c["state"] for c in chunks["cells"]}
    assert states[(1, 200)] == "failed" and chunks["counts"]["failed"] == 1
    assert chunks["counts"]["done"] + chunks["counts"]["pending"] == 8

    fixed.write_text("x")
    run(two_files, tmp_path, broken, try_number=2)
    tries = sorted(records_of(tmp_path / "records"), key=lambda r: r["try_number"])
    assert [(r["try_number"], r["state"]) for r in tries] == [(1, "failed"), (2, "success")]
    assert tries[1]["chunks_resumed"] == chunks["counts"]["done"] > 0
    latest, _ = history.find_job(root, JOB)
    first, _ = history.find_job(root, JOB, 1)
    assert (latest["try_number"], first["try_number"]) == (2, 1)
    resumed = history.chunk_map(
        Location.of(tmp_path / "out"), history.job_failures(root, latest), chunks_total=9
    )
    assert resumed["counts"]["resumed"] == tries[1]["chunks_resumed"]
    assert resumed["counts"]["done"] == 9 - tries[1]["chunks_resumed"]
    listed = history.list_jobs(root, days=1)
    assert [(j["try_number"], j["state"]) for j in listed] == [(2, "success"), (1, "failed")]  # newest first


def test_a_stopped_job_is_recorded_as_stopped(two_files, tmp_path):
    cancel = threading.Event()

    def cancel_later(event):
        if event.chunks_done >= 2:
            cancel.set()

    with pytest.raises(JobCancelledError):
        run(two_files, tmp_path, lambda b, c: b, progress_callbacks=[cancel_later], cancel_event=cancel)
    (record,) = records_of(tmp_path / "records")
    assert record["state"] == "stopped" and record["error_type"] == "JobCancelledError"
    assert 2 <= record["chunks_done"] < 9


def test_a_running_job_is_listed_with_its_series(tmp_path):
    root = Location.of(tmp_path)
    monitor = JobMonitor(JOB, records_path=tmp_path, labels={**TASK, "try_number": 3}, heartbeat_interval_s=0)
    with monitor:
        for i in range(5):
            monitor.on_event(
                {"event_type": "progress", "progress_percentage": 20.0 * i, "rows_processed": i, "extra": {}}
            )
        (job,) = history.list_jobs(root)
        assert (job["state"], job["try_number"], job["dag_id"]) == ("running", 3, "dag a")
        found, series = history.find_job(root, JOB)
        assert found["state"] == "running" and [p["pct"] for p in series][-1] == 80.0
        assert history.find_job(root, JOB, 2) is None  # another try
        assert history.find_job(root, "other") is None
    (job,) = history.list_jobs(root)
    assert job["state"] == "success"  # __exit__ without an error


def test_series_stay_bounded_and_keep_first_and_last(tmp_path, monkeypatch):
    series = history.Series(max_points=10)
    for i in range(1000):
        series.add({"t": i}, force=i == 999)
    ts = [p["t"] for p in series.points]
    assert 5 <= len(ts) <= 10 and ts[0] == 0 and ts[-1] == 999 and ts == sorted(ts)
    with pytest.raises(ValueError, match="max_points"):
        history.Series(max_points=1)

    monkeypatch.setattr(history, "MAX_POINTS", 40)  # the monitor's series: 120 writes, not 1500
    monitor = JobMonitor(JOB, records_path=tmp_path, heartbeat_interval_s=0, sample_interval_s=60)
    with monitor:
        for i in range(3 * history.MAX_POINTS):
            monitor.on_event({"event_type": "started", "rows_processed": i, "extra": {}})  # each one writes
        running = json.loads(history.running_series(Location.of(tmp_path), JOB).read_bytes())
        assert history.MAX_POINTS // 2 <= len(running) <= history.MAX_POINTS
    (record,) = records_of(tmp_path)
    assert record["points"] <= history.MAX_POINTS and record["progress"]["rows_processed"] == 3 * 40 - 1


def _record(root: Location, job_id: str, ended: float, **extra):
    rec = {"job_id": job_id, "dag_id": job_id.split("/")[0], "state": "success", "started_at": ended - 60}
    history.write_job_record(root, {**rec, "ended_at": ended, **extra}, [{"t": ended, "pct": 100.0}])


def test_last_n_days_and_filters_use_the_records_own_utc_times(tmp_path, far_zone):
    root = Location.of(tmp_path)
    now = _utc("2026-03-10T23:30:00")  # already 2026-03-11 in Kiritimati
    _record(root, "a/r/t/-1", now - 3600)
    _record(root, "b/r/t/-1", now - 3 * 86400, state="failed")
    _record(root, "a/r/old/-1", now - 10 * 86400)
    assert sorted(os.listdir(tmp_path / "jobs")) == ["2026-02-28", "2026-03-07", "2026-03-10"]
    assert sorted(os.listdir(tmp_path / "series")) == ["2026-02-28", "2026-03-07", "2026-03-10"]
    jobs = history.list_jobs(root, days=7, now=now)
    assert [j["job_id"] for j in jobs] == ["a/r/t/-1", "b/r/t/-1"]
    assert [j["job_id"] for j in history.list_jobs(root, days=30, now=now)][-1] == "a/r/old/-1"
    assert [j["job_id"] for j in history.list_jobs(root, days=7, now=now, state="failed")] == ["b/r/t/-1"]
    assert [j["job_id"] for j in history.list_jobs(root, days=30, now=now, dag_id="a")] == [
        "a/r/t/-1",
        "a/r/old/-1",
    ]
    assert (
        history.list_jobs(root, days=30, now=now, allowed=lambda dag: dag == "b")[0]["job_id"] == "b/r/t/-1"
    )
    assert "series" not in jobs[0]  # the list never carries series
    assert [j["job_id"] for j in history.list_jobs(root, days=30, now=now, limit=2)] == [
        "a/r/t/-1",
        "b/r/t/-1",
    ]

    # the records retention prunes history and its series like failure records and alerts
    assert "jobs" in RECORD_KINDS and "series" in RECORD_KINDS
    done = cleanup_old_records(tmp_path, days=5, folders=RECORD_KINDS, now=now)
    assert done["removed"] == 2  # the 10-day-old record and its series
    assert [j["job_id"] for j in history.list_jobs(root, days=30, now=now)] == ["a/r/t/-1", "b/r/t/-1"]
    assert os.listdir(tmp_path / "series") == ["2026-03-07", "2026-03-10"] or sorted(
        os.listdir(tmp_path / "series")
    ) == ["2026-03-07", "2026-03-10"]


def test_unreadable_records_are_skipped(tmp_path):
    root = Location.of(tmp_path)
    _record(root, "a/r/t/-1", _utc("2026-03-10T10:00:00"))
    day = tmp_path / "jobs" / "2026-03-10"
    (day / "1773136800000-00000000.json").write_text("{not json")
    (day / "notes.txt").write_text("not a record")
    (tmp_path / "jobs" / "not-a-day").mkdir()
    assert [j["job_id"] for j in history.finished_jobs(root)] == ["a/r/t/-1"]
