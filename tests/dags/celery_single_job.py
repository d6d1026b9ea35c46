"""Test DAG for tests/celery: the job of ``dags/example_sharded_job.py`` (profile the demo transactions) as one
``BatchJobOperator`` task, the reference the sharded run's merged result must equal.

Keep ``PROFILE`` in step with the ``ShardedBatchJob`` arguments of the example DAG: a difference makes the
reports differ and the Celery test fail.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.demo import demo_data_task
from airflow_batch_provider.operators.batch import BatchJobOperator

PROFILE = {
    "processor": "data_profiling",
    "config": BatchConfig(batch_size=5_000, max_concurrent_batches=1),
    "bins": 20,
    "top_k": 5,
}

with DAG(
    dag_id="celery_single_job",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"rows": Param(100_000, type="integer", minimum=1_000)},
):
    BatchJobOperator(task_id="single", source=demo_data_task(), **PROFILE)
