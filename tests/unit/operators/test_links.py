"""Operator extra links: every batch operator has "Report", "Output", "Batch job", addressed by ids only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_batch_provider.get_provider_info import get_provider_info
from airflow_batch_provider.operators.anomaly_detection import AnomalyDetectionOperator
from airflow_batch_provider.operators.batch import BatchJobOperator
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator
from airflow_batch_provider.operators.data_quality import DataQualityOperator
from airflow_batch_provider.operators.feature_engineering import FeatureEngineeringOperator
from airflow_batch_provider.operators.links import BatchReportLink, job_url
from airflow_batch_provider.operators.shards import ShardMergeOperator, ShardOperator, ShardPlanOperator


@pytest.mark.parametrize(
    "cls",
    [
        BatchJobOperator,
        DataProfilingOperator,
        DataQualityOperator,
        AnomalyDetectionOperator,
        FeatureEngineeringOperator,
        ShardPlanOperator,
        ShardOperator,
        ShardMergeOperator,
    ],
)
def test_every_batch_operator_has_the_three_links(cls):
    assert [link.name for link in cls.operator_extra_links] == ["Report", "Output", "Batch job"]
    registered = set(get_provider_info()["extra-links"])
    assert {
        f"{type(link).__module__}.{type(link).__name__}" for link in cls.operator_extra_links
    } <= registered


def test_the_url_holds_percent_encoded_ids_and_no_path():
    key = SimpleNamespace(
        dag_id="d x", run_id="manual__2026-01-01T00:00:00+00:00", task_id="g.t", map_index=3
    )
    url = BatchReportLink().get_link(None, ti_key=key)
    assert url == "/batch-provider/jobs/d%20x/manual__2026-01-01T00%3A00%3A00%2B00%3A00/g.t/3/report"
    assert job_url("d", "../..", "t", -1, "output") == "/batch-provider/jobs/d/..%2F../t/-1/output"
    assert job_url("d", "..", "t", -1, "job") == "/batch-provider/jobs/d/%2E%2E/t/-1/job"
    with pytest.raises(ValueError, match="page must be one of"):
        job_url("d", "r", "t", -1, "../../etc")
