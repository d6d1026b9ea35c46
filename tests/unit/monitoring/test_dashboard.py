"""Dashboard data read from storage by another process while a job runs; stale heartbeats; recorded alerts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from airflow_batch_provider.monitoring import JobMonitor, get_monitoring_dashboard_data
from airflow_batch_provider.monitoring.monitor import records_root
from tests.conftest import sample_frame

JOB_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from airflow_batch_provider.engine import run_batch_job

    source, out, records = sys.argv[1:4]

    def slow(batch, context):
        time.sleep(0.3)
        return batch

    run_batch_job(
        source, slow, config={"batch_size": 100, "max_concurrent_batches": 1, "progress_interval_seconds": 0},
        output_path=out, job_id="dag a/run 1/task/0", records_path=records,
        task_info={"dag_id": "dag a", "run_id": "run 1", "task_id": "task", "map_index": 0},
        # any process is over 16 MB: a memory alert while it runs
        alert_rules={"memory_limit_mb": 16, "cpu_saturation_percent": None, "sample_interval_s": 0.2,
                     "heartbeat_interval_s": 0.2},
    )
    """
)

# A separate reader process: polls the dashboard until it has seen the job and then seen it go away; prints one
# JSON line per poll.
READER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from airflow_batch_provider.monitoring import get_active_alerts, get_monitoring_dashboard_data

    base, seen = sys.argv[1], False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = get_monitoring_dashboard_data(base)
        data["alerts_api"] = get_active_alerts(base)
        print(json.dumps(data), flush=True)
        seen = seen or bool(data["active_jobs"])
        if seen and not data["active_jobs"]:
            break
        time.sleep(0.1)
    """
)


def test_another_process_sees_progress_while_the_job_runs(tmp_path, make_parquet):
    source = make_parquet(sample_frame(3000, seed=4), row_group_size=100)
    (tmp_path / "job.py").write_text(JOB_SCRIPT)
    (tmp_path / "reader.py").write_text(READER_SCRIPT)
    base = tmp_path / "base"
    reader = subprocess.Popen(
        [sys.executable, str(tmp_path / "reader.py"), str(base)], stdout=subprocess.PIPE
    )
    job = subprocess.Popen(
        [sys.executable, str(tmp_path / "job.py"), str(source), str(tmp_path / "out"), str(base / "_records")]
    )
    try:
        assert job.wait(timeout=120) == 0
        out, _ = reader.communicate(timeout=120)
    finally:
        reader.kill()
        job.kill()
    polls = [json.loads(line) for line in out.decode().splitlines()]
    running = [p for p in polls if p["active_jobs"]]
    percents = [p["active_jobs"][0]["progress"].get("progress_percentage") or 0.0 for p in running]
    assert len(set(percents)) >= 3 and percents == sorted(percents), percents  # progress rose as it ran
    assert any(0 < pct < 100 for pct in percents)
    job_seen = next(p["active_jobs"][0] for p, pct in zip(running, percents, strict=True) if 0 < pct < 100)
    assert (
        job_seen["job_id"] == "dag a/run 1/task/0"
        and job_seen["dag_id"] == "dag a"
        and job_seen["map_index"] == 0
    )
    assert 0 < job_seen["progress"]["rows_processed"] < job_seen["progress"]["rows_total"] == 3000
    assert job_seen["resources"]["rss_mb"] > 16 and job_seen["resources"]["processes"] >= 1
    assert any([a["condition"] for a in p["alerts_api"]] == ["memory"] for p in running)
    after = polls[-1]  # the reader's last poll: the job had ended
    assert after["active_jobs"] == [] and after["stale_jobs"] == [] and after["alerts_api"] == []
    assert [(a["condition"], a["job_id"], a["dag_id"]) for a in after["recent_alerts"]] == [
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
