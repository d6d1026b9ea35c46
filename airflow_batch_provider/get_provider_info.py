"""Provider metadata for Airflow (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_batch_provider.settings import provider_config


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-batch-provider",
        "name": "Batch Processing",
        "description": "Chunked, checkpointed, resumable batch processing operators for Apache Airflow.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Batch Processing",
                "external-doc-url": "https://pypi.org/project/airflow-batch-provider/",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "Batch Processing",
                "python-modules": [
                    "airflow_batch_provider.operators.batch",
                    "airflow_batch_provider.operators.anomaly_detection",
                    "airflow_batch_provider.operators.data_profiling",
                    "airflow_batch_provider.operators.data_quality",
                    "airflow_batch_provider.operators.feature_engineering",
                    "airflow_batch_provider.operators.cleanup",
                    "airflow_batch_provider.operators.shards",
                ],
            }
        ],
        "extra-links": [
            "airflow_batch_provider.operators.links.BatchReportLink",
            "airflow_batch_provider.operators.links.BatchOutputLink",
            "airflow_batch_provider.operators.links.BatchJobLink",
        ],
        "notifications": [
            "airflow_batch_provider.notifications.alert.BatchAlertNotifier",
            "airflow_batch_provider.notifications.failure.BatchFailureNotifier",
        ],
        "config": provider_config(),
    }
