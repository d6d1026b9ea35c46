"""Example: profile the demo transactions as a sharded job spread over Airflow's workers.

``ShardedBatchJob`` turns one job into ``profile.plan`` (fit once, split the chunk plan into 4 row ranges),
``profile.shard`` (4 mapped tasks, each with its own checkpoint and retries; any worker can take any shard) and
``profile.merge`` (one report and manifest, the same result as a single task). ``report`` reads the merged
``output_uri`` like it would read any ``BatchJobOperator``'s. The ``rows`` param sets the dataset size.

On an executor whose workers may sit on other hosts (Celery, Kubernetes, Edge), set
``[batch_provider] base_path`` to object storage, or declare a shared mount with
``[batch_provider] shared_storage = True``; see ``docs/shards.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.demo import demo_data_task  # generates the demo rows once, returns their URI
from airflow_batch_provider.operators.shards import ShardedBatchJob

with DAG(
    dag_id="example_sharded_job",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"rows": Param(100_000, type="integer", minimum=1_000, description="rows of demo data")},
    tags=["batch-provider", "example"],
    doc_md=__doc__,
):
    profile = ShardedBatchJob(
        "profile",
        source=demo_data_task(),
        processor="data_profiling",
        shards=4,
        config=BatchConfig(batch_size=5_000, max_concurrent_batches=1),
        max_active_tis_per_dagrun=4,
        bins=20,
        top_k=5,
    )

    @task
    def report(output_uri: str) -> Any:
        """Read the merged report from the job folder (what any downstream consumer of the job would do)."""
        from airflow_batch_provider.operators.batch import provider_setting, storage_target
        from airflow_batch_provider.storage import Location

        folder = Location.of(storage_target(output_uri, provider_setting("conn_id") or None))
        full = folder.child("_report.json").read_json()
        manifest = folder.child("_manifest.json").read_json()
        return {
            "output_uri": output_uri,
            "rows": full["rows"],
            "columns": sorted(full["columns"]),
            "parts": len(manifest["parts"]),
            "shards": manifest["shards"],
        }

    profile >> report(profile.output["output_uri"])
