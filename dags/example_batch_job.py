"""Example: enrich a million demo transactions in checkpointed chunks, then summarise the output.

Trigger it from the UI (the ``rows`` param sets the dataset size) or run ``make demo``. Watch the
progress lines in the ``enrich`` task log and the ``progress`` key in its Storage -> Task State Store tab.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_batch_provider.config import BatchConfig, BatchPriority
from airflow_batch_provider.demo import demo_data_task  # generates the demo rows once, returns their URI
from airflow_batch_provider.operators.batch import BatchJobOperator


def enrich(batch, context, eur_rates):
    """A processor defined in the DAG file: it runs in forked chunk workers, so no import path is needed."""
    rate = batch["currency"].map(eur_rates).astype("float64")
    return batch.assign(
        amount_eur=(batch["amount"] * rate).round(2),
        is_large=batch["amount"] * rate > 500,
        hour=batch["created_at"].dt.hour,
    )


with DAG(
    dag_id="example_batch_job",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"rows": Param(1_000_000, type="integer", minimum=1_000, description="rows of demo data")},
    tags=["batch-provider", "example"],
    doc_md=__doc__,
):
    enriched = BatchJobOperator(
        task_id="enrich",
        source=demo_data_task(),
        processor=enrich,
        config=BatchConfig(batch_size=50_000, max_concurrent_batches=2, checkpoint_interval=4),
        priority=BatchPriority.HIGH,
        eur_rates={"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05},
    )

    BatchJobOperator(
        task_id="summarize",
        source=enriched.output["output_uri"],
        processor="count",
        config=BatchConfig(batch_size=200_000),
    )
