"""Example: the quality -> features -> anomaly chain, each step reading the previous step's output.

``check_quality`` passes on the rows that broke no rule (the others go to its quarantine), then
``build_features`` fits and applies features on them, and ``score_anomalies`` scores the feature rows.
Each step reads ``upstream.output["output_uri"]`` from XCom; dependencies are the DAG's edges, and
``priority`` maps onto Airflow's priority weights.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_batch_provider.config import BatchConfig, BatchPriority
from airflow_batch_provider.demo import demo_data_task  # generates the demo rows once, returns their URI
from airflow_batch_provider.operators.anomaly_detection import AnomalyDetectionOperator
from airflow_batch_provider.operators.data_quality import DataQualityOperator
from airflow_batch_provider.operators.feature_engineering import FeatureEngineeringOperator

CONFIG = BatchConfig(batch_size=100_000, max_concurrent_batches=2)

with DAG(
    dag_id="example_pipeline",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"rows": Param(1_000_000, type="integer", minimum=1_000, description="rows of demo data")},
    tags=["batch-provider", "example"],
    doc_md=__doc__,
):
    quality = DataQualityOperator(
        task_id="check_quality",
        source=demo_data_task(),
        rules=[
            {"type": "not_null", "column": "amount", "threshold": 0.05},
            {"type": "between", "column": "risk_score", "min": 0, "max": 1},
            {"type": "unique", "column": "transaction_id"},
        ],
        fail_on="error",
        config=CONFIG,
        priority=BatchPriority.HIGH,
    )
    features = FeatureEngineeringOperator(
        task_id="build_features",
        source=quality.output["output_uri"],
        log_columns=["amount"],
        scale={"amount": "standard", "risk_score": "robust"},
        encode={"currency": "onehot", "channel": "onehot"},
        keep_original=True,
        config=CONFIG,
        priority=BatchPriority.MEDIUM,
    )
    anomalies = AnomalyDetectionOperator(
        task_id="score_anomalies",
        source=features.output["output_uri"],
        algorithm="isolation_forest",
        features=["amount_transformed", "risk_score_transformed"],
        sample_size=50_000,
        contamination=0.01,
        config=CONFIG,
        priority=BatchPriority.MEDIUM,
    )
    quality >> features >> anomalies
