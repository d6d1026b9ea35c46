"""Example: score every demo transaction for anomalies with an isolation forest fitted on a sample.

The forest is fitted once on a deterministic sample (``sample_size`` rows chosen by position with a fixed
seed), then every chunk is scored in parallel. Output rows carry ``anomaly_score`` (higher = more
anomalous) and ``is_anomaly``; ``contamination`` (a DAG param) sets the threshold from the fit sample.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.demo import demo_data_task  # generates the demo rows once, returns their URI
from airflow_batch_provider.operators.anomaly_detection import AnomalyDetectionOperator

with DAG(
    dag_id="example_anomaly_detection",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "rows": Param(1_000_000, type="integer", minimum=1_000, description="rows of demo data"),
        "contamination": Param(
            0.01, type="number", exclusiveMinimum=0, maximum=0.5, description="expected share of anomalies"
        ),
    },
    tags=["batch-provider", "example"],
    doc_md=__doc__,
):
    AnomalyDetectionOperator(
        task_id="score_anomalies",
        source=demo_data_task(),
        algorithm="isolation_forest",
        features=["amount", "risk_score"],  # amount's missing values are imputed with the fitted median
        sample_size=50_000,
        contamination="{{ params.contamination }}",
        algorithm_params={"n_estimators": 100},
        config=BatchConfig(batch_size=100_000, max_concurrent_batches=2),
    )
