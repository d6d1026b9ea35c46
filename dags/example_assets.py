"""Example: batch jobs as asset producers; a downstream DAG scheduled on the quality job's output.

``example_assets`` profiles and checks the demo transactions. Each batch operator declares its output as an
outlet asset with a URI that stays the same from run to run: here ``{[batch_provider] base_path}/example_assets/
profile`` and ``.../check_quality`` (the job folders of the runs, without the run id). Every successful run
emits an asset event whose extra holds the run's facts: ``output_uri`` (this run's job folder), ``report_uri``,
``rows_in``, ``rows_out``, ``rows_quarantined``, ``schema``, and for the quality job ``quality_score`` and
``rules_failed``. Both assets are listed under Assets in the UI, with their producing tasks and events.

``example_assets_consumer`` has ``schedule=[check_quality.output_asset]``: Airflow runs it after each
successful quality job, and its task reads the facts from ``triggering_asset_events``. With the ``openlineage``
extra and an OpenLineage transport configured, both jobs also send OpenLineage events: the source as the input
dataset (the profile as its data-quality metrics, the rules as its data-quality assertions) and the asset as
the output dataset (``docs/lineage.md``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.demo import demo_data_task  # generates the demo rows once, returns their URI
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator
from airflow_batch_provider.operators.data_quality import DataQualityOperator

RULES = [
    {"type": "not_null", "column": "transaction_id"},
    {"type": "unique", "column": "transaction_id"},
    {"type": "not_null", "column": "amount", "threshold": 0.02},  # ~1% of amounts are missing: allowed
    {"type": "allowed_values", "column": "currency", "values": ["EUR", "USD", "GBP", "CHF"]},
    {"type": "between", "column": "risk_score", "min": 0, "max": 1},
]
log = logging.getLogger(__name__)
CONFIG = BatchConfig(batch_size=100_000, max_concurrent_batches=2)

with DAG(
    dag_id="example_assets",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"rows": Param(1_000_000, type="integer", minimum=1_000, description="rows of demo data")},
    tags=["batch-provider", "example", "assets"],
    doc_md=__doc__,
):
    data = demo_data_task()
    profile = DataProfilingOperator(task_id="profile", source=data, config=CONFIG)
    check_quality = DataQualityOperator(task_id="check_quality", source=data, rules=RULES, config=CONFIG)


with DAG(
    dag_id="example_assets_consumer",
    schedule=[check_quality.output_asset],  # runs after each successful check_quality
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["batch-provider", "example", "assets"],
    doc_md=__doc__,
):

    @task
    def read_quality_facts(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """The facts of each quality run that triggered this run (none when triggered by hand)."""
        facts = []
        for event in (triggering_asset_events or {}).get(check_quality.output_asset, []):
            extra = event.extra
            log.info(
                "%s/%s: score %s, %s rows, %s quarantined; output %s",
                event.source_dag_id,
                event.source_run_id,
                extra.get("quality_score"),
                extra.get("rows_in"),
                extra.get("rows_quarantined"),
                extra.get("output_uri"),
            )
            facts.append({"source_run_id": event.source_run_id, **extra})
        return facts

    read_quality_facts()
