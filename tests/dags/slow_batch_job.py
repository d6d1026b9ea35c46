"""Test DAG for the scheduler smoke test: a slow processor defined in this DAG file, so progress can be
read through the REST API while the task runs (and DAG-file functions run in forked chunk workers)."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import DAG, Param, task

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.operators.batch import BatchJobOperator


def slow_double(batch, context, seconds):
    time.sleep(seconds)
    return batch.assign(double=batch["amount"] * 2)


with DAG(
    dag_id="slow_batch_job",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"rows": Param(40_000, type="integer")},
):

    @task
    def data(params=None) -> str:
        from airflow_batch_provider.demo import ensure_demo_dataset
        from airflow_batch_provider.operators.batch import base_path

        return ensure_demo_dataset(f"{base_path()}/slow-data", rows=int(params["rows"]), files=2)

    BatchJobOperator(
        task_id="slow",
        source=data(),
        processor=slow_double,
        seconds=0.4,
        config=BatchConfig(
            batch_size=1_000, max_concurrent_batches=2, checkpoint_interval=2, progress_interval_seconds=1
        ),
    )
