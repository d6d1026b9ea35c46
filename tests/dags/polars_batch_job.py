"""Test DAG for polars in forked chunk workers: this DAG file runs polars when it is parsed (so the task
process has polars' thread pool before the job starts), the task runs polars again just before executing
(``pre_execute``), then a polars function (``input_format="polars"``) runs in forked workers, next to the
standard profiling processor."""

from __future__ import annotations

from datetime import datetime

import polars as pl
from airflow.sdk import DAG, task

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator

# parse time: polars' thread pool now runs in whatever process parsed this file (the task process too)
PARSED_GROUPS = pl.DataFrame({"k": list(range(10_000))}).group_by(pl.col("k") % 7).len().height


def warm_polars(context):
    """Right before the job: the task process (the chunk workers' parent) uses polars' pool again."""
    assert pl.DataFrame({"k": list(range(50_000))}).sort("k", descending=True).height == 50_000


def polars_summary(batch, context):
    """A polars function: per chunk, a group-by and a filter (parallel polars operations in the worker)."""
    groups = batch.group_by("channel").agg(pl.col("amount").sum()).height
    big = batch.filter(pl.col("amount") > 0).height
    return {"rows": batch.height, "positive": big, "groups": groups, "parsed_groups": PARSED_GROUPS}


with DAG(dag_id="polars_batch_job", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

    @task
    def data() -> str:
        from airflow_batch_provider.demo import ensure_demo_dataset
        from airflow_batch_provider.operators.batch import base_path

        return ensure_demo_dataset(f"{base_path()}/polars-data", rows=20_000, files=2)

    source = data()
    BatchJobOperator(
        task_id="polars_fn",
        source=source,
        processor=polars_summary,
        input_format="polars",
        pre_execute=warm_polars,
        config=BatchConfig(batch_size=2_000, max_concurrent_batches=2, batch_timeout_seconds=120),
    )
    DataProfilingOperator(
        task_id="profile",
        source=source,
        pre_execute=warm_polars,
        config=BatchConfig(batch_size=3_000, max_concurrent_batches=2, batch_timeout_seconds=120),
    )
