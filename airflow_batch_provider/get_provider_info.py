"""Provider metadata for Airflow (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any


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
        "notifications": [
            "airflow_batch_provider.monitoring.notifier.BatchAlertNotifier",
            "airflow_batch_provider.notifiers.BatchFailureNotifier",
        ],
        "config": {
            "batch_provider": {
                "description": "Where batch jobs keep outputs and checkpoints, and their defaults.",
                "options": {
                    "base_path": {
                        "description": "Base path (local path or object storage URI such as "
                        "s3://conn_id@bucket/prefix) for job outputs, checkpoints and quarantine. Empty: "
                        "$AIRFLOW_HOME/batch_provider. Every task writes under "
                        "{base_path}/{dag_id}/{run_id}/{task_id}/{map_index}/ unless it sets output_path.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://aws_default@my-bucket/batch",
                        "default": "",
                    },
                    "conn_id": {
                        "description": "Airflow connection used for base_path when the URI names none.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "aws_default",
                        "default": "",
                    },
                    "default_batch_size": {
                        "description": "Rows per chunk when a job sets no batch_size. 0: sized automatically "
                        "from a data sample (auto_optimize).",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "100000",
                        "default": "0",
                    },
                    "shared_storage": {
                        "description": "Declare that a local base_path (or a local output_path/source of a "
                        "sharded job) is a mount every worker shares. Without it, a sharded job with local "
                        "storage fails fast on executors whose workers may sit on other hosts (anything but "
                        "LocalExecutor).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                    "progress_interval": {
                        "description": "Seconds between progress lines in the task log and updates of the "
                        "task_state_store 'progress' key.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "5",
                        "default": "5",
                    },
                },
            }
        },
    }
