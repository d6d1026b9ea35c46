"""polars in forked chunk workers under a real Airflow (dag.test()): the DAG file runs polars when it is parsed
and again right before the job (``pre_execute``), so the workers' parent has polars' thread pool; the
``input_format="polars"`` callable and the standard profiler still finish (without engine/polars_fork.py the
first parallel polars call in a worker waits forever for pool threads that fork did not copy)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.integration.conftest import serialize

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "polars_batch_job.py"


def test_polars_callable_and_profiler_run_after_the_parent_used_polars(airflow_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    spec = importlib.util.spec_from_file_location("polars_batch_job_dag", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # parse time: polars' pool starts in this (the task's) process
    dag = module.dag

    dr = serialize(dag).test()
    assert dr.state == "success", [(t.task_id, t.state) for t in dr.get_task_instances()]
    fn = dr.get_task_instance("polars_fn").xcom_pull(task_ids="polars_fn")
    assert fn["rows_in"] == 20_000 and fn["chunks_processed"] == fn["chunks_total"] == 10
    report = fn["report"]  # numeric chunk dicts are summed over the 10 chunks
    assert report["rows"] == 20_000 and report["parsed_groups"] == 7 * 10
    assert 0 < report["positive"] <= 20_000 and 10 <= report["groups"] <= 10 * 3  # 3 channels
    profile = dr.get_task_instance("profile").xcom_pull(task_ids="profile")
    assert profile["rows_in"] == 20_000 and profile["chunks_processed"] == profile["chunks_total"]
    assert profile["report"]["rows"] == 20_000 and profile["report"]["columns"]["channel"]["nulls"] == 0
