"""In-memory sources under a real Airflow (dag.test()): an upstream @task's DataFrame through XCom, in a task
and in a sharded job; a callable source called once, its frame read back by the retry."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from airflow.sdk import DAG, ExceptionRetryPolicy, task

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.operators.shards import ShardedBatchJob
from tests.conftest import sample_frame
from tests.integration.conftest import serialize

pytestmark = pytest.mark.integration
CONFIG = BatchConfig(batch_size=100, max_concurrent_batches=1)


def _fail_until(batch, context, flag):
    if context["start_row"] >= 200 and not Path(flag).exists():
        Path(flag).touch()  # the next try gets past this chunk
        raise RuntimeError("a transient failure in try 1")
    return batch


def test_frames_from_xcom_and_from_a_callable(airflow_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    calls = tmp_path / "calls.txt"
    df = sample_frame(500, seed=21)

    def make_source(context, **_):
        with open(calls, "a") as fh:
            fh.write(f"{context['ti'].try_number}\n")
        return df

    with DAG("memory_sources", schedule=None, start_date=datetime(2026, 1, 1)) as dag:

        @task
        def make():
            return sample_frame(500, seed=21)

        frame = make()
        BatchJobOperator(task_id="from_xcom", source=frame, processor="data_profiling", config=CONFIG)
        ShardedBatchJob("sharded", source=frame, processor="data_profiling", shards=2, config=CONFIG)
        BatchJobOperator(
            task_id="from_callable", source=make_source, processor=_fail_until, flag=str(tmp_path / "flag"),
            config=BatchConfig(batch_size=100, max_concurrent_batches=1, retry_attempts=0),
            retries=1, retry_delay=0, retry_policy=ExceptionRetryPolicy(rules=[]),
        )  # fmt: skip
    dr = serialize(dag).test()
    assert dr.state == "success"
    xcom = dr.get_task_instance("from_xcom").xcom_pull(task_ids="from_xcom", key="return_value")
    merged = dr.get_task_instance("sharded.merge").xcom_pull(task_ids="sharded.merge", key="return_value")
    assert xcom["rows_in"] == 500 and merged["report"] == xcom["report"]

    ti = dr.get_task_instance("from_callable")
    assert ti.try_number == 2
    assert calls.read_text().splitlines() == ["1"]  # called by try 1 only; try 2 read the stored copy
    result = ti.xcom_pull(task_ids="from_callable", key="return_value")
    assert result["chunks_resumed"] == 2 and result["rows_out"] == 500
    pd.testing.assert_frame_equal(read_output(result["output_uri"]), df)
