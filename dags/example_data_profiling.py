"""Example: profile the demo transactions in checkpointed chunks.

The full report (per-column counts, nulls, exact distinct, moments, quantiles, histograms, top values,
date ranges, duplicate rows) is ``_report.json`` in the task's job folder; a compact summary is the
``profile`` XCom. The task's "Report" extra link (Details tab) opens ``_report.html``, the same numbers as a
page: per-column histograms, top values and warnings, and the change since the previous run. Trigger it from
the UI (the ``rows`` param sets the dataset size).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.demo import demo_data_task  # generates the demo rows once, returns their URI
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator

with DAG(
    dag_id="example_data_profiling",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"rows": Param(1_000_000, type="integer", minimum=1_000, description="rows of demo data")},
    tags=["batch-provider", "example"],
    doc_md=__doc__,
):
    DataProfilingOperator(
        task_id="profile",
        source=demo_data_task(),
        config=BatchConfig(batch_size=100_000, max_concurrent_batches=2),
        bins=30,
        top_k=10,
    )
