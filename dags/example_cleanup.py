"""Example: daily retention of the batch provider's job folders and failure records.

Committed outputs (what downstream tasks read) are kept 30 days; checkpoints, segments, quarantine and
failed generations 7 days; failure records 30 days. Job folders with a live attempt are never touched,
and nothing outside ``[batch_provider] base_path`` is deleted. The ``dry_run`` param (on by default here)
lists what would be deleted in the task log and the XCom summary; trigger with ``{"dry_run": false}``
to delete.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_batch_provider.operators.cleanup import BatchCleanupOperator

with DAG(
    dag_id="example_cleanup",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"dry_run": Param(True, type="boolean", description="list what would be deleted, delete nothing")},
    tags=["batch-provider", "example"],
    doc_md=__doc__,
):
    BatchCleanupOperator(
        task_id="cleanup",
        output_retention_days=30,
        work_retention_days=7,
        records_retention_days=30,
        dry_run="{{ params.dry_run }}",
    )
