"""AnomalyDetectionOperator through op.execute with an in-memory context: no Airflow DB needed."""

from __future__ import annotations

import numpy as np
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.operators.anomaly_detection import AnomalyDetectionOperator
from airflow_batch_provider.operators.batch import BatchInputFailure, BatchJobOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import context


@pytest.fixture
def source(make_parquet, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    make_parquet(sample_frame(500, seed=4, offset=900), "b.parquet")
    return tmp_path / "src"


def test_scores_every_row_with_templated_numbers_as_text(source):
    task = AnomalyDetectionOperator(
        task_id="ad",
        source=str(source),
        features=["x", "dup"],
        contamination="0.05",
        sample_size="1000",
        config=BatchConfig(batch_size=300, max_concurrent_batches=2),
    )
    summary = task.execute(context())
    out = read_output(summary["output_uri"])
    report = summary["report"]
    assert len(out) == report["rows"] == 1400 and report["fit_rows"] == 1000
    assert report["features"] == ["x", "dup"] and report["contamination"] == 0.05
    assert int(out["is_anomaly"].sum()) == report["anomalies"]
    assert np.array_equal(out["is_anomaly"].to_numpy(), out["anomaly_score"].to_numpy() > report["threshold"])


def test_bad_parameters_fail_without_retry(source):
    with pytest.raises(BatchInputFailure, match="not both"):
        AnomalyDetectionOperator(task_id="ad", source=str(source), contamination=0.1, threshold=0.6).execute(
            context()
        )
    with pytest.raises(BatchInputFailure, match="sample_size must be int"):
        AnomalyDetectionOperator(task_id="ad", source=str(source), sample_size="lots").execute(context())


def test_memory_limit_comes_from_the_batch_config(source):
    task = AnomalyDetectionOperator(
        task_id="ad",
        source=str(source),
        features=["x"],
        sample_size=10**6,
        config=BatchConfig(memory_limit_mb=16),
    )
    with pytest.raises(BatchInputFailure, match="memory_limit_mb=16"):
        task.execute(context())


def test_code_parameters_are_not_templated():
    fields = AnomalyDetectionOperator.template_fields
    assert fields[: len(BatchJobOperator.template_fields)] == tuple(BatchJobOperator.template_fields)
    assert "algorithm" not in fields and "algorithm_params" not in fields
