"""BatchCleanupOperator through op.execute on real folders: summary, dry run, base path, bad input."""

from __future__ import annotations

import json
import time

import pytest
from airflow.sdk import DAG

from airflow_batch_provider.operators.batch import BatchInputFailure
from airflow_batch_provider.operators.cleanup import BatchCleanupOperator
from tests.unit.operators.task_context import context

DAY = 86400.0


def old_job(base, rel, age_days, status="succeeded"):
    job = base / rel
    gen = job / "g0001"
    (gen / "parts").mkdir(parents=True)
    (gen / "parts" / "p.parquet").write_bytes(b"PAR1")
    checkpoint = {"status": status, "updated_at": time.time() - age_days * DAY}
    (gen / "_checkpoint.json").write_text(json.dumps(checkpoint))
    (job / "_manifest.json").write_text(json.dumps({"generation": 1, "parts": ["g0001/parts/p.parquet"]}))
    return job


def op(**kwargs):
    with DAG("cleanup_dag", schedule=None):
        return BatchCleanupOperator(task_id="cleanup", **kwargs)


def test_execute_deletes_old_outputs_and_returns_the_summary(tmp_path):
    old = old_job(tmp_path, "d/r1/t/-1", 40)
    young = old_job(tmp_path, "d/r2/t/-1", 1)
    live = old_job(tmp_path, "d/r3/t/-1", 0.0001, status="running")
    summary = op(base_path=str(tmp_path)).execute(context())
    assert not old.exists() and young.exists() and live.exists()
    assert summary["counts"] == {"output": 1, "work": 0, "records": 0}
    assert summary["skipped_live"] == [str(live)]
    json.dumps(summary)  # an XCom value


@pytest.mark.parametrize("flag", [True, "True", "true"])
def test_dry_run_deletes_nothing(tmp_path, flag):
    old = old_job(tmp_path, "d/r1/t/-1", 40)
    summary = op(base_path=str(tmp_path), dry_run=flag).execute(context())
    assert old.exists() and summary["dry_run"] and summary["counts"]["output"] == 1


def test_defaults_to_the_provider_base_path(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path))
    old = old_job(tmp_path, "d/r1/t/-1", 40)
    summary = op(output_retention_days=50).execute(context())
    assert old.exists() and summary["base"] == str(tmp_path)
    op(output_retention_days=10).execute(context())
    assert not old.exists()


@pytest.mark.parametrize("kwargs", [{"base_path": "/"}, {"base_path": "x", "work_retention_days": -1}])
def test_bad_input_fails_without_retry(kwargs):
    with pytest.raises(BatchInputFailure):
        op(**kwargs).execute(context())
