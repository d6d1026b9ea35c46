"""Partitioned asset events from a batch operator (tests/integration/test_assets_lineage.py).

``partitioned_producer`` (partition keys chosen at run time) counts ``dag_run.conf["source"]`` and emits its
output asset once per region for ``dag_run.conf["day"]``; ``partitioned_consumer`` is scheduled with
``PartitionedAssetTimetable`` on that asset, so it gets one run per key, and returns its partition key and the
facts of the event that triggered it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, PartitionedAssetTimetable, PartitionedAtRuntime, task

from airflow_batch_provider.operators.batch import BatchJobOperator

with DAG(
    dag_id="partitioned_producer",
    schedule=PartitionedAtRuntime(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
):
    count = BatchJobOperator(
        task_id="count",
        source="{{ dag_run.conf['source'] }}",
        processor="count",
        asset="file:///lake/regional-counts",
        asset_partitions=["eu|{{ dag_run.conf['day'] }}", "us|{{ dag_run.conf['day'] }}"],
        retries=0,
    )

with DAG(
    dag_id="partitioned_consumer",
    schedule=PartitionedAssetTimetable(assets=count.output_asset),
    start_date=datetime(2026, 1, 1),
    catchup=False,
):

    @task
    def read_partition(dag_run: Any = None, triggering_asset_events: Any = None) -> dict[str, Any]:
        events = list((triggering_asset_events or {}).get(count.output_asset, []))
        return {
            "partition_key": dag_run.partition_key,
            "events": [{"partition_key": e.partition_key, **e.extra} for e in events],
        }

    read_partition()
