"""Example: check declarative data quality rules over demo transactions; quarantine the failing rows.

Trigger it from the UI (``rows`` sets the dataset size, ``fail_on`` what fails the task). Rules with
severity ``warning`` report without failing under ``fail_on="error"``. The failing rows, with their source
position and broken rules, are the ``check_quality`` task's output Parquet; the per-rule report is in its
XCom (``report``) and in ``{output_uri}/_report.json``; the task's "Report" extra link (Details tab) opens
``_report.html``: per rule pass/fail, counts, ratio vs threshold, failing examples, the quarantine's location.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.demo import demo_data_task  # generates the demo rows once, returns their URI
from airflow_batch_provider.operators.data_quality import DataQualityOperator

RULES = [
    {"type": "row_count", "min": 1_000},
    {"type": "unique", "column": "transaction_id"},
    {"type": "not_null", "column": "transaction_id"},
    {"type": "not_null", "column": "amount", "threshold": 0.02},  # ~1% of amounts are missing: allowed
    {"type": "min", "column": "amount", "value": 0},
    {"type": "allowed_values", "column": "currency", "values": ["EUR", "USD", "GBP", "CHF"]},
    {"type": "regex", "column": "merchant_category", "pattern": "[a-z_]+"},
    {"type": "between", "column": "risk_score", "min": 0, "max": 1},
    {"type": "type", "column": "created_at", "dtype": "datetime"},
    # warnings: reported and quarantined, but they do not fail the task under fail_on="error"
    {
        "type": "unique",
        "column": "customer_id",
        "severity": "warning",
        "name": "one transaction per customer",
    },
    {
        "type": "expression",
        "name": "large risky payments",
        "severity": "warning",
        "threshold": 0.01,
        "expression": "isnull(amount) or not (amount > 1000 and risk_score > 0.5)",
    },
]

with DAG(
    dag_id="example_data_quality",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "rows": Param(1_000_000, type="integer", minimum=1_000, description="rows of demo data"),
        "fail_on": Param("error", enum=["never", "warning", "error"], description="what fails the task"),
    },
    tags=["batch-provider", "example"],
    doc_md=__doc__,
):
    DataQualityOperator(
        task_id="check_quality",
        source=demo_data_task(),
        rules=RULES,
        fail_on="{{ params.fail_on }}",
        config=BatchConfig(batch_size=100_000, max_concurrent_batches=2),
    )
