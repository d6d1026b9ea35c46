"""``airflow-batch failures`` and ``airflow-batch cleanup`` on a real records folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from airflow_batch_provider.cli import main, resolve_base_path
from airflow_batch_provider.engine.records import FailureRecords

DAY = 86400.0


@pytest.fixture
def base(tmp_path):
    store = FailureRecords(tmp_path / "_records")
    now = time.time()
    for cls, strategy, ok, lost in [
        ("network", "retry_jitter", True, 1.5),
        ("network", "retry_jitter", True, 0.5),
        ("memory", "split", True, 4.0),
        ("system", "checkpoint_and_fail", False, 12.0),
    ]:
        store.add(
            {
                "class": cls,
                "strategy": strategy,
                "recovered": ok,
                "time_lost_s": lost,
                "job_id": "etl/run/enrich/-1",
                "chunk_label": "f0:0-100",
                "error_type": "OSError",
                "error": "disk says 'secret row'",
            }
        )
    store.add({"class": "timeout", "ts": now - 10 * DAY})
    return tmp_path


def test_failures_prints_a_table(base, capsys):
    assert main(["failures", "--base", str(base)]) == 0
    out = capsys.readouterr().out
    assert "total 4, recovered 3 (75%), most common: network, time lost 18.0 s, jobs affected 1" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert lines["network"][:4] == ["network", "2", "2", "100%"]
    assert lines["system"][:4] == ["system", "1", "0", "0%"]
    assert "timeout" not in lines  # older than 24 h
    assert out.count("etl/run/enrich/-1") == 4 and "secret" not in out


def test_failures_json_and_hours(base, capsys):
    assert main(["failures", "--base", str(base), "--hours", "720", "--limit", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["statistics"]["total"] == 5 and payload["statistics"]["by_class"]["timeout"] == 1
    assert len(payload["recent"]) == 2 and payload["root"] == f"{base}/_records"


def test_cleanup_dry_run_then_real(base, capsys):
    assert main(["cleanup", "--base", str(base), "--days", "7", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would delete 1 failure records older than 7 days") and ".json" in out
    assert len(list(FailureRecords(base / "_records").iter_records())) == 5
    assert main(["cleanup", "--base", str(base), "--days", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert len(list(FailureRecords(base / "_records").iter_records())) == 4


def test_cleanup_rejects_negative_days(base, capsys):
    assert main(["cleanup", "--base", str(base), "--days", "-1"]) == 2
    assert "days must be >= 0" in capsys.readouterr().err


def test_base_path_order(monkeypatch, tmp_path):
    assert resolve_base_path("/explicit") == "/explicit"
    monkeypatch.delenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH")
    monkeypatch.setenv("AIRFLOW_BATCH_PROVIDER_BASE_PATH", "/from-env")
    with pytest.warns(DeprecationWarning, match="AIRFLOW_BATCH_PROVIDER_BASE_PATH is deprecated"):
        assert resolve_base_path() == "/from-env"
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path))
    with pytest.warns(DeprecationWarning, match="is ignored"):
        assert resolve_base_path() == str(tmp_path)


def test_console_script_runs(base):
    env = {**os.environ, "AIRFLOW__BATCH_PROVIDER__BASE_PATH": str(base)}
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_batch_provider.cli", "failures"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "total 4" in proc.stdout
