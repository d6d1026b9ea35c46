"""The history API of the dashboard plugin: ``/api/jobs`` (running and finished, filters, newest first) and
``/api/jobs/{job_id}`` (series, chunk map, failures, alerts, links), 401/403/404, per-DAG filtering through
the auth manager. Records come from real jobs (run_batch_job) or are written with chosen times; the per-DAG
decisions of a real multi-team auth manager are checked in a browser in
tests/integration/test_dashboard_browser.py."""

from __future__ import annotations

import time

import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.monitoring import JobMonitor, history
from airflow_batch_provider.plugins import dashboard
from airflow_batch_provider.storage import Location


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def write(base, job_id, ended, **extra):
    dag, run, task, index = job_id.split("/")
    record = {"job_id": job_id, "dag_id": dag, "run_id": run, "task_id": task, "map_index": int(index)}
    record |= {"state": "success", "started_at": ended - 30, "ended_at": ended, "try_number": 1, **extra}
    history.write_job_record(Location.of(base / "_records"), record, [{"t": ended, "pct": 100.0}])


@pytest.fixture
def readable(monkeypatch):
    """The DAGs the caller may read (what the auth manager would answer)."""
    dags: set[str] = {"a", "b"}
    monkeypatch.setattr(dashboard, "readable_dags", lambda user: lambda dag: dag is None or dag in dags)
    return dags


def test_the_history_api_needs_a_valid_token(client):
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs/a/r/t/-1").status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": "Bearer nonsense"}).status_code == 403


def test_jobs_are_listed_newest_first_filtered_and_per_dag(client, token, tmp_path, readable):
    now = time.time()
    write(tmp_path, "a/r1/t/-1", now - 3600)
    write(tmp_path, "b/r1/t/3", now - 1800, state="failed", error_type="ValueError")
    write(tmp_path, "secret/r1/t/-1", now - 600)
    write(tmp_path, "a/r0/t/-1", now - 40 * 86400)
    with JobMonitor("a/r2/t/-1", base_path=tmp_path, labels={"dag_id": "a", "run_id": "r2", "task_id": "t"}):
        res = client.get("/api/jobs", headers=auth(token))
    assert res.status_code == 200, res.text
    body = res.json()
    assert [j["job_id"] for j in body["jobs"]] == ["a/r2/t/-1", "b/r1/t/3", "a/r1/t/-1"]  # not "secret"
    assert [j["state"] for j in body["jobs"]] == ["running", "failed", "success"]
    assert body["dag_ids"] == ["a", "b"] and "running" in body["states"]
    mapped = body["jobs"][1]["links"]
    assert mapped["task_instance"] == "/dags/b/runs/r1/tasks/t/mapped/3"
    assert mapped["report"] == "/batch-provider/jobs/b/r1/t/3/report"
    assert mapped["page"] == "job?id=b%2Fr1%2Ft%2F3&try=1"
    assert body["jobs"][2]["links"]["task_instance"] == "/dags/a/runs/r1/tasks/t"

    def ids(**params):
        got = client.get("/api/jobs", params=params, headers=auth(token))
        assert got.status_code == 200, got.text
        return [j["job_id"] for j in got.json()["jobs"]]

    assert ids(dag_id="b") == ["b/r1/t/3"] and ids(dag_id="secret") == []
    # the monitor has ended: its job is a finished one now
    assert ids(state="success") == ["a/r2/t/-1", "a/r1/t/-1"] and ids(state="failed", dag_id="a") == []
    assert ids(state="running") == [] and ids(days=60)[-2:] == ["a/r1/t/-1", "a/r0/t/-1"]
    for bad in ({"state": "exploded"}, {"days": 0}, {"days": "x"}):
        assert client.get("/api/jobs", params=bad, headers=auth(token)).status_code == 422


def test_a_job_page_has_its_series_chunk_map_and_links(client, token, tmp_path, readable, two_files):
    run_id = "manual__2026-03-01T10:00:00+00:00"
    job_id = f"a/{run_id}/t/-1"
    run_batch_job(
        two_files,
        lambda batch, ctx: batch,
        config=BatchConfig(batch_size=200, max_concurrent_batches=1, checkpoint_interval=2),
        output_path=tmp_path / "a" / "run" / "t" / "-1",
        job_id=job_id,
        records_path=tmp_path / "_records",
        task_info={"dag_id": "a", "run_id": run_id, "task_id": "t", "map_index": -1, "try_number": 1},
    )
    res = client.get(f"/api/jobs/{job_id}", headers=auth(token))
    assert res.status_code == 200, res.text
    page = res.json()
    assert (page["job"]["state"], page["job"]["rows_in"], page["job"]["rows_out"]) == ("success", 1777, 1777)
    assert page["series"][-1]["pct"] == 100.0 and page["failures"] == [] and page["failure_classes"] == {}
    assert page["chunk_map"]["counts"]["done"] == 9 == len(page["chunk_map"]["cells"])
    assert page["links"]["task_instance"] == "/dags/a/runs/manual__2026-03-01T10%3A00%3A00%2B00%3A00/tasks/t"
    assert client.get(f"/api/jobs/{job_id}", params={"try": 1}, headers=auth(token)).status_code == 200
    assert client.get(f"/api/jobs/{job_id}", params={"try": 2}, headers=auth(token)).status_code == 404


def test_unknown_jobs_are_404_and_other_dags_403(client, token, tmp_path, readable):
    write(tmp_path, "secret/r/t/-1", time.time() - 60)
    missing = client.get("/api/jobs/a/none/t/-1", headers=auth(token))
    assert missing.status_code == 404 and "no job 'a/none/t/-1'" in missing.json()["detail"]
    forbidden = client.get("/api/jobs/secret/r/t/-1", headers=auth(token))
    assert forbidden.status_code == 403 and "secret" in forbidden.json()["detail"]
    readable.add("secret")
    assert client.get("/api/jobs/secret/r/t/-1", headers=auth(token)).status_code == 200


def test_the_auth_manager_decides_which_dags_are_readable(client, token, tmp_path):
    """The real call (SimpleAuthManager, this session's DB): a DAG the metadata DB does not know is nobody's
    to read; a job run outside Airflow (no DAG) is shown to every Jobs viewer."""
    write(tmp_path, "unknown_dag/r/t/-1", time.time() - 60)
    history.write_job_record(
        Location.of(tmp_path / "_records"),
        {"job_id": "scripted", "state": "success", "started_at": time.time() - 9, "ended_at": time.time()},
        [],
    )
    res = client.get("/api/jobs", headers=auth(token))
    assert [j["job_id"] for j in res.json()["jobs"]] == ["scripted"]
    assert client.get("/api/jobs/unknown_dag/r/t/-1", headers=auth(token)).status_code == 403
    scripted = client.get("/api/jobs/scripted", headers=auth(token)).json()
    assert scripted["links"] == {"page": "job?id=scripted"} and scripted["chunk_map"]["cells"] == []


def test_the_dashboard_shows_only_readable_dags_running_jobs_and_alerts(client, token, tmp_path, readable):
    rules = {"memory_limit_mb": 1, "cpu_saturation_percent": None}  # any process is over 1 MB: an alert
    mine, theirs = (
        JobMonitor(job, base_path=tmp_path, labels={"dag_id": job[:-7]}, rules=rules, sample_interval_s=0.05)
        for job in ("a/r/t/-1", "secret/r/t/-1")
    )
    with mine, theirs:
        deadline = time.monotonic() + 120  # each raises its memory alert on its first samples
        while time.monotonic() < deadline and len(list((tmp_path / "_records").glob("alerts/*/*.json"))) < 2:
            time.sleep(0.05)
        data = client.get("/api/dashboard", headers=auth(token)).json()
        alerts = client.get("/api/alerts", headers=auth(token)).json()["active_alerts"]
    assert [j["job_id"] for j in data["active_jobs"]] == ["a/r/t/-1"]
    assert {a["job_id"] for a in data["active_alerts"]} == {"a/r/t/-1"} == {a["job_id"] for a in alerts}
    assert {a.get("dag_id") for a in data["recent_alerts"]} == {"a"}
