"""The dashboard plugin's FastAPI app: JSON only with a valid Airflow JWT, the page without, the entry point."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from fastapi.testclient import TestClient

from airflow_batch_provider.monitoring import JobMonitor
from airflow_batch_provider.plugins.dashboard import BatchProviderPlugin, create_app


@pytest.fixture(scope="module")
def token():
    """A viewer's JWT from the configured (simple) auth manager; validation checks the DB's revoked tokens."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.utils import db

    db.resetdb()
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    manager = create_auth_manager()
    return manager.generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))


@pytest.fixture
def client(tmp_path, monkeypatch, token):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path))
    return TestClient(create_app())


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


def test_page_is_a_shell_that_polls_the_json(client):
    res = client.get("/dashboard")
    assert res.status_code == 200 and "text/html" in res.headers["content-type"]
    assert 'fetch("api/dashboard"' in res.text and "d/r/t/0" not in res.text


def test_plugin_is_shipped_through_the_entry_point():
    (ep,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "batch_provider"]
    assert ep.load() is BatchProviderPlugin
    (app,) = BatchProviderPlugin.fastapi_apps
    assert app["url_prefix"] == "/batch-provider"
    assert BatchProviderPlugin.external_views[0]["href"] == "/batch-provider/dashboard"
