"""FeatureEngineeringOperator through op.execute: fit on one source, reuse the saved spec on another."""

from __future__ import annotations

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output
from airflow_batch_provider.operators.feature_engineering import FeatureEngineeringOperator
from tests.conftest import sample_frame
from tests.unit.operators.task_context import FakeTI, StateStore, context


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(900, seed=3), "a.parquet")
    make_parquet(sample_frame(500, seed=4, offset=900), "b.parquet")
    return tmp_path / "src"


def test_template_fields_name_real_attributes():
    op = FeatureEngineeringOperator(task_id="f", source="/x", log_columns=["x"])
    assert op.processor == "feature_engineering"
    assert all(hasattr(op, f) for f in op.template_fields) and "log" not in op.template_fields
    assert op.process_kwargs({})["log"] == ["x"]


def test_fit_then_apply_the_saved_spec(source, tmp_path, make_parquet):
    cfg = BatchConfig(batch_size=250, max_concurrent_batches=2)
    fit = FeatureEngineeringOperator(
        task_id="fit",
        source=str(source),
        output_path=str(tmp_path / "fit"),
        config=cfg,
        scale={"x": "standard"},
        impute={"x": "mean"},
        log_columns=["dup"],
        encode={"cat": {"method": "onehot", "top_k": 2}},
        date_parts={"ts": ["hour"]},
    )
    summary = fit.execute(context(FakeTI(task_id="fit"), StateStore()))
    assert (
        summary["rows_out"] == 1400
        and summary["report"]["spec"]["columns"]["x"]["scale"]["method"] == "standard"
    )
    got = read_output(tmp_path / "fit")
    assert got["x"].notna().all() and {"cat=<other>", "ts_hour"} <= set(got.columns) and "ts" not in got
    make_parquet(sample_frame(300, seed=8), "new.parquet", folder=tmp_path / "new")
    apply = FeatureEngineeringOperator(
        task_id="apply",
        source=str(tmp_path / "new"),
        output_path=str(tmp_path / "ap"),
        spec=summary["report_uri"],
    )
    applied = apply.execute(context(FakeTI(task_id="apply"), StateStore()))
    assert applied["report"]["spec"] == summary["report"]["spec"]
    out = read_output(tmp_path / "ap")
    spec = summary["report"]["spec"]["columns"]["x"]
    raw = pd.read_parquet(tmp_path / "new" / "new.parquet")["x"].fillna(spec["impute"]["value"])
    pd.testing.assert_series_equal(out["x"], (raw - spec["scale"]["center"]) / spec["scale"]["scale"])


def test_bad_parameter_fails_without_retry(source, tmp_path):
    op = FeatureEngineeringOperator(
        task_id="f", source=str(source), output_path=str(tmp_path / "o"), scale={"x": "zscore"}
    )
    with pytest.raises(AirflowFailException, match="scale"):
        op.execute(context(FakeTI(task_id="f"), StateStore()))


def test_no_settings_applies_the_defaults(source, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_PROVIDER__BASE_PATH", str(tmp_path / "base"))
    summary = FeatureEngineeringOperator(
        task_id="fe", source=str(source), config=BatchConfig(batch_size=333)
    ).execute(context())
    report = summary.get("report") or {}
    choices = report["spec"]["defaults"]["choices"]
    assert (
        "standard scaling" in choices["x"] and "one-hot" in choices["cat"] and "date parts" in choices["ts"]
    )
    out = read_output(summary["output_uri"])
    assert {"cat=a", "ts_year"} <= set(out.columns) and "ts" not in out.columns
    assert abs(out["x"].mean()) < 1e-9 and not out["x"].isna().any()  # imputed, centred
