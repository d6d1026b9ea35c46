"""Example: profile the demo transactions in checkpointed chunks.

The full report (per-column counts, nulls, exact distinct, moments, quantiles, histograms, top values,
date ranges, duplicate rows) is ``_report.json`` in the task's job folder; a compact summary is the
``profile`` XCom. Trigger it from the UI (the ``rows`` param sets the dataset size).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from airflow_batch_provider.config import BatchConfig
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

    @task
    def demo_data(params=None) -> str:
        """Generate the demo dataset once under the provider's base path (skipped when present)."""
        from airflow_batch_provider.demo import ensure_demo_dataset
        from airflow_batch_provider.operators.batch import base_path

        rows = int(params["rows"])
        return ensure_demo_dataset(f"{base_path().rstrip('/')}/demo-data/transactions-{rows}", rows=rows)

    DataProfilingOperator(
        task_id="profile",
        source=demo_data(),
        config=BatchConfig(batch_size=100_000, max_concurrent_batches=2),
        bins=30,
        top_k=10,
    )
