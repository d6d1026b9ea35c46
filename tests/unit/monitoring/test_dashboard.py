"""Dashboard data read from storage by another process while a job runs; stale heartbeats; recorded alerts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from airflow_batch_provider.monitoring import JobMonitor, get_active_alerts, get_monitoring_dashboard_data
from airflow_batch_provider.monitoring.monitor import records_root
from tests.conftest import sample_frame

JOB_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from airflow_batch_provider.engine import run_batch_job
    from airflow_batch_provider.monitoring import AlertRules, JobMonitor

    source, out, base, gate = sys.argv[1:5]

    def slow(batch, context):
        time.sleep(0.3)
        return batch

    rules = AlertRules(memory_limit_mb=16, cpu_saturation_percent=None)  # any process is over 16 MB
    monitor = JobMonitor("dag a/run 1/task/0", base_path=base, output_uri=out, rules=rules,
                         labels={"dag_id": "dag a", "run_id": "run 1", "task_id": "task", "map_index": 0},
                         sample_interval_s=0.2, heartbeat_interval_s=0.2)
    monitor.start()
    try:
        run_batch_job(source, slow, config={"batch_size": 100, "max_concurrent_batches": 1,
                      "progress_interval_seconds": 0}, output_path=out,
                      progress_callbacks=[monitor.on_event])
    finally:
        monitor.stop()
    """
)


def test_another_process_sees_progress_while_the_job_runs(tmp_path, make_parquet):
    source = make_parquet(sample_frame(3000, seed=4), row_group_size=100)
    script = tmp_path / "job.py"
    script.write_text(JOB_SCRIPT)
    base = tmp_path / "base"
    proc = subprocess.Popen([sys.executable, str(script), str(source), str(tmp_path / "out"), str(base), ""])
    seen: list[dict] = []
    try:
        while proc.poll() is None and not any(0 < j["progress"]["progress_percentage"] < 100 for j in seen):
            data = get_monitoring_dashboard_data(base)
            seen = [j for j in data["active_jobs"] if j.get("progress", {}).get("progress_percentage")]
            time.sleep(0.1)
        alerts = get_active_alerts(base)
    finally:
        assert proc.wait(timeout=120) == 0
    job = next(j for j in seen if 0 < j["progress"]["progress_percentage"] < 100)
    assert job["job_id"] == "dag a/run 1/task/0" and job["dag_id"] == "dag a" and job["map_index"] == 0
    assert 0 < job["progress"]["rows_processed"] < job["progress"]["rows_total"] == 3000
    assert job["resources"]["rss_mb"] > 16 and job["resources"]["processes"] >= 1
    assert [a["condition"] for a in alerts] == ["memory"]
    after = get_monitoring_dashboard_data(base)
    assert after["active_jobs"] == [] and after["stale_jobs"] == []  # the heartbeat went away at stop
    recorded = after["recent_alerts"]
    assert [(a["condition"], a["job_id"], a["dag_id"]) for a in recorded] == [
        ("memory", "dag a/run 1/task/0", "dag a")
    ]
    assert after["system"]["cpu_count"] >= 1 and after["failure_statistics"]["total"] == 0


def test_a_heartbeat_that_stopped_is_stale_not_active(tmp_path):
    root = records_root(tmp_path)
    monitor = JobMonitor("killed/job", base_path=tmp_path, sample_interval_s=60).start()
    monitor._sampler.stop()  # as if the process had been SIGKILLed: the heartbeat stays behind
    beat_file = root.child("active", "killed%2Fjob.json")
    beat = beat_file.read_json()
    beat["updated_at"] = time.time() - 600
    beat_file.write_json(beat)
    root.child("active", "garbage.json").write_bytes(b"{not json")
    data = get_monitoring_dashboard_data(tmp_path, stale_after_s=60)
    assert data["active_jobs"] == []
    (stale,) = data["stale_jobs"]
    assert stale["job_id"] == "killed/job" and stale["age_s"] >= 600
    monitor.stop()
    assert get_monitoring_dashboard_data(tmp_path)["stale_jobs"] == []


def test_alerts_older_than_the_window_are_left_out(tmp_path):
    root = records_root(tmp_path)
    old = time.time() - 3 * 86400
    day = time.strftime("%Y-%m-%d", time.gmtime(old))
    root.child("alerts", day, f"{int(old * 1000)}-0000abcd.json").write_json({"title": "old", "time": old})
    root.child("alerts", "not-a-day", "x.json").write_json({"title": "junk"})
    assert get_monitoring_dashboard_data(tmp_path, hours=24)["recent_alerts"] == []
    four_days = get_monitoring_dashboard_data(tmp_path, hours=24 * 4)["recent_alerts"]
    assert [a["title"] for a in four_days] == ["old"]
    assert json.loads(json.dumps(get_monitoring_dashboard_data(tmp_path)))  # JSON all the way
