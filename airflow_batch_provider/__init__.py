"""airflow-batch-provider: chunked, checkpointed, resumable batch processing for Apache Airflow.

Importing this package imports neither Airflow nor pandas: the heavy pieces load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["BatchConfig", "BatchPriority", "register_processor", "run_batch_job", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("BatchConfig", "BatchPriority"):
        from airflow_batch_provider import config

        return getattr(config, name)
    if name == "register_processor":
        from airflow_batch_provider.processors.registry import register_processor

        return register_processor
    if name == "run_batch_job":
        from airflow_batch_provider.jobs import run_batch_job

        return run_batch_job
    raise AttributeError(name)
