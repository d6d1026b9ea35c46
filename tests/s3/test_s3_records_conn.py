"""The dashboard and the CLI open ``{base_path}/_records`` through ``[batch_provider] conn_id``, as the jobs
write it: records written on a real S3 API (moto) under a base path whose URI names no connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from airflow_batch_provider.cli import main
from airflow_batch_provider.engine.records import FailureRecords
from airflow_batch_provider.monitoring.dashboard import get_monitoring_dashboard_data
from airflow_batch_provider.operators.conf import records_target
from airflow_batch_provider.plugins.dashboard import _base_path as dashboard_base_path
from tests.s3.conftest import CONN_ID


def test_dashboard_and_cli_read_records_through_the_configured_connection(s3_prefix, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", f"s3://{s3_prefix}")
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__CONN_ID", CONN_ID)
    writer = FailureRecords(records_target())  # what BatchJobOperator passes the engine
    for cls in ("network", "network", "memory"):
        writer.add({"class": cls, "recovered": cls == "network", "job_id": "dag/run/t/-1"})
    base = dashboard_base_path()
    assert getattr(base, "conn_id", None) == CONN_ID
    stats = get_monitoring_dashboard_data(base)["failure_statistics"]
    assert stats["total"] == 3 and stats["by_class"] == {"network": 2, "memory": 1}
    assert main(["failures", "--json"]) == 0
    # the console script, as a user runs it: stdout is the JSON document alone (log lines go to stderr)
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_batch_provider.cli", "failures", "--json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["statistics"]["total"] == 3 and payload["root"].endswith(f"{s3_prefix}/_records")
