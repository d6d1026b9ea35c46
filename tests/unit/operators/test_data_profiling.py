"""DataProfilingOperator through op.execute with an in-memory context (no Airflow DB)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.operators.data_profiling import DataProfilingOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, StateStore, context


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    make_parquet(sample_frame(500, seed=4, offset=900), "b.parquet")
    return tmp_path / "src"


def test_template_fields_name_real_attributes():
    op = DataProfilingOperator(task_id="p", source="/x")
    assert op.processor == "data_profiling" and "columns" in op.template_fields
    assert all(hasattr(op, f) for f in op.template_fields)


def test_execute_profiles_and_returns_a_compact_summary(source, tmp_path):
    op = DataProfilingOperator(
        task_id="profile",
        source=str(source),
        output_path=str(tmp_path / "out"),
        config=BatchConfig(batch_size=333, max_concurrent_batches=2),
        bins=5,
        top_k=2,
    )
    summary = op.execute(context(FakeTI(task_id="profile"), StateStore()))
    report = json.loads((tmp_path / "out" / "_report.json").read_text())
    assert report["rows"] == 1400 and report["columns"]["x"]["histogram"]["counts"].__len__() == 5
    assert len(report["columns"]["cat"]["top_values"]) == 2
    assert summary["profile"]["rows"] == 1400 and summary["profile"]["column_count"] == 5
    assert summary["profile"]["most_nulls"] == {"x": report["columns"]["x"]["nulls"]}
    assert len(json.dumps(summary)) < 48 * 1024


def test_large_report_is_read_back_for_the_summary(make_parquet, tmp_path):
    import numpy as np
    import pandas as pd

    make_parquet(pd.DataFrame({f"c{i}": np.arange(50.0) for i in range(300)}), "wide.parquet")
    op = DataProfilingOperator(
        task_id="profile", source=str(tmp_path / "src"), output_path=str(tmp_path / "out")
    )
    summary = op.execute(context(FakeTI(task_id="profile"), StateStore()))
    assert summary["report"] is None and summary["profile"]["column_count"] == 300


def test_bad_parameter_fails_without_retry(source, tmp_path):
    op = DataProfilingOperator(
        task_id="profile", source=str(source), output_path=str(tmp_path / "out"), bins=0
    )
    with pytest.raises(AirflowFailException, match="bins"):
        op.execute(context(FakeTI(task_id="profile"), StateStore()))
