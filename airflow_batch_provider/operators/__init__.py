"""Operators: thin wrappers that resolve parameters, open storage, drive the engine and report.

Every operator is importable from here (``from airflow_batch_provider.operators import ShardedBatchJob``); each
module loads on first use, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchJobOperator": "batch",
    "BatchInputFailure": "batch",
    "BatchCleanupOperator": "cleanup",
    "DataProfilingOperator": "data_profiling",
    "DataQualityOperator": "data_quality",
    "DataQualityFailure": "data_quality",
    "FeatureEngineeringOperator": "feature_engineering",
    "AnomalyDetectionOperator": "anomaly_detection",
    "BatchRetryPolicy": "retry_policy",
    "ShardedBatchJob": "shards",
    "ShardPlanOperator": "shards",
    "ShardOperator": "shards",
    "ShardMergeOperator": "shards",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
