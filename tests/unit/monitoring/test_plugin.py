"""The dashboard plugin's FastAPI app: JSON only with a valid Airflow JWT, the page without, the entry point."""

from __future__ import annotations

from importlib.metadata import entry_points

from airflow_batch_provider.monitoring import JobMonitor
from airflow_batch_provider.plugins.dashboard import BatchProviderPlugin


def test_json_needs_a_valid_token(client):
    assert client.get("/api/dashboard").status_code == 401
    assert client.get("/api/alerts", headers={"Authorization": "Bearer nonsense"}).status_code == 403


def test_dashboard_json_shows_a_running_job(client, token, tmp_path):
    with JobMonitor("d/r/t/0", base_path=tmp_path, sample_interval_s=60):
        res = client.get("/api/dashboard", headers={"Authorization": f"Bearer {token}"})
        alerts = client.get("/api/alerts", cookies={"_token": token})
    assert res.status_code == 200, res.text
    assert [j["job_id"] for j in res.json()["active_jobs"]] == ["d/r/t/0"]
    assert alerts.status_code == 200 and alerts.json() == {"active_alerts": []}


def test_pages_are_shells_that_poll_the_json(client):
    res = client.get("/dashboard")
    assert res.status_code == 200 and "text/html" in res.headers["content-type"]
    assert 'getJson("api/dashboard")' in res.text and 'getJson("api/jobs?"' in res.text
    assert "d/r/t/0" not in res.text
    job = client.get("/job", params={"id": "<script>x</script>"})
    assert job.status_code == 200 and '"api/jobs/"' in job.text and "<script>x</script>" not in job.text
    for page in (res, job):  # self-contained: no CDN, nothing but its own origin
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert "http://" not in page.text and "https://" not in page.text


def test_plugin_is_shipped_through_the_entry_point():
    (ep,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "batch_provider"]
    assert ep.load() is BatchProviderPlugin
    (app,) = BatchProviderPlugin.fastapi_apps
    assert app["url_prefix"] == "/batch-provider"
    assert BatchProviderPlugin.external_views[0]["href"] == "/batch-provider/dashboard"
