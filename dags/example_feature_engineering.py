"""Example: fit features on the demo transactions, then apply the saved spec to the data again.

``fit_features`` runs an exact statistics pass (means, quartiles, vocabularies) and writes the
transformed rows; its fitted spec is ``report["spec"]`` in its ``_report.json``. ``apply_features``
transforms with that spec only (no refit), as inference on new data would, so training and inference agree.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.demo import demo_data_task  # generates the demo rows once, returns their URI
from airflow_batch_provider.operators.feature_engineering import FeatureEngineeringOperator

with DAG(
    dag_id="example_feature_engineering",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"rows": Param(1_000_000, type="integer", minimum=1_000, description="rows of demo data")},
    tags=["batch-provider", "example"],
    doc_md=__doc__,
):
    data = demo_data_task()
    fit = FeatureEngineeringOperator(
        task_id="fit_features",
        source=data,
        config=BatchConfig(batch_size=100_000, max_concurrent_batches=2),
        impute={"amount": "median"},
        log_columns=["amount"],
        scale={"amount": "standard", "risk_score": "robust"},
        encode={"currency": {"method": "onehot", "top_k": 3}, "merchant_category": "ordinal"},
        bins={"risk_score": 10},
        date_parts={"created_at": ["month", "dayofweek", "hour", "is_weekend"]},
    )
    FeatureEngineeringOperator(
        task_id="apply_features",
        source=data,
        config=BatchConfig(batch_size=100_000, max_concurrent_batches=2),
        spec=fit.output["report_uri"],
    )
