"""Fixtures of the dashboard plugin's tests: a viewer's JWT and a client of the plugin's app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


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
    from airflow_batch_provider.plugins.dashboard import create_app

    return TestClient(create_app())
