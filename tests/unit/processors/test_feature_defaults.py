"""``feature_engineering`` with no settings (``processors/feature_defaults.py``), through the real engine:
every column gets steps by its type, each listed in the spec, with values equal to a one-piece pandas oracle."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.feature_defaults import ONEHOT_MAX_DISTINCT

N = 1200


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "x": rng.normal(3.0, 2.0, N),
            "k": rng.integers(0, 9, N),
            "cat": rng.choice(["red", "green", "blue"], N),
            "fifty": [f"v{i % ONEHOT_MAX_DISTINCT:02d}" for i in range(N)],  # exactly 50: one-hot
            "many": [f"w{i % (ONEHOT_MAX_DISTINCT + 1):02d}" for i in range(N)],  # 51: ordinal
            "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**7, N), unit="s"),
            "dur": pd.to_timedelta(rng.integers(0, 100, N), unit="s"),
        }
    )
    df.loc[[4, 600, 1100], "x"] = np.nan
    df.loc[[7, 800], "cat"] = None
    return df


def write(df: pd.DataFrame, folder) -> str:
    folder.mkdir()
    half = len(df) // 2
    for name, part in (("a", df.iloc[:half]), ("b", df.iloc[half:])):
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False), folder / f"{name}.parquet", row_group_size=200
        )
    return str(folder)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    base = tmp_path_factory.mktemp("fe")
    source = write(frame(), base / "src")
    result = run_batch_job(
        source,
        "feature_engineering",
        output_path=base / "out",
        config={"batch_size": 233, "max_concurrent_batches": 2},
    )
    return source, result


def test_each_choice_is_listed_in_the_spec(fitted):
    _, result = fitted
    defaults = result.report["spec"]["defaults"]
    choices = defaults["choices"]
    assert "median imputation, then standard scaling" in choices["x"] and "standard" in choices["k"]
    assert choices["cat"].startswith("categorical (3 distinct values <= 50)") and "one-hot" in choices["cat"]
    assert "one-hot" in choices["fifty"] and "(50 distinct values <= 50)" in choices["fifty"]
    assert "ordinal" in choices["many"] and "(51 distinct values > 50)" in choices["many"]
    assert choices["ts"].startswith("timestamp: date parts")
    assert set(defaults["skipped"]) == {"dur"} and "passed through" in defaults["skipped"]["dur"]
    spec = result.report["spec"]["columns"]
    assert spec["many"]["encode"]["method"] == "ordinal" and spec["fifty"]["encode"]["method"] == "onehot"


def test_numeric_columns_are_median_imputed_then_standard_scaled(fitted):
    _, result = fitted
    df = frame()
    out = read_output(result.output_uri)
    for col in ("x", "k"):
        values = df[col].astype(float)
        imputed = values.fillna(values.median())
        want = (imputed - math.fsum(imputed) / N) / imputed.std(ddof=0)
        np.testing.assert_allclose(out[col].to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-12)
    assert result.report["spec"]["columns"]["x"]["impute"]["value"] == df["x"].median()


def test_categoricals_are_mode_imputed_and_encoded(fitted):
    _, result = fitted
    df = frame()
    out = read_output(result.output_uri)
    mode = df["cat"].value_counts().idxmax()
    filled = df["cat"].fillna(mode)
    for value in ("red", "green", "blue"):
        assert out[f"cat={value}"].tolist() == (filled == value).astype(int).tolist()
    assert out["cat=<other>"].sum() == 0
    assert [c for c in out.columns if c.startswith("fifty=")] == [
        *(f"fifty=v{i:02d}" for i in range(ONEHOT_MAX_DISTINCT)),
        "fifty=<other>",
    ]
    # ordinal codes: vocabulary by count descending, then text
    counts = df["many"].value_counts()
    order = sorted(counts.index, key=lambda v: (-counts[v], v))
    assert out["many"].tolist() == [order.index(v) for v in df["many"]]


def test_timestamps_become_date_parts_and_other_types_pass_through(fitted):
    _, result = fitted
    df = frame()
    out = read_output(result.output_uri)
    for part, accessor in (
        ("year", "year"),
        ("month", "month"),
        ("day", "day"),
        ("dayofweek", "day_of_week"),
    ):
        assert out[f"ts_{part}"].tolist() == getattr(df["ts"].dt, accessor).tolist()
    assert out["ts_hour"].tolist() == df["ts"].dt.hour.tolist()
    assert "ts" not in out.columns
    pd.testing.assert_series_equal(out["dur"], df["dur"], check_dtype=False)


def test_the_fitted_spec_transforms_new_data_the_same_way(fitted, tmp_path):
    source, result = fitted
    again = run_batch_job(source, "feature_engineering", output_path=tmp_path / "o", spec=result.report)
    pd.testing.assert_frame_equal(read_output(again.output_uri), read_output(result.output_uri))


def test_columns_beyond_the_vocabulary_limit_or_all_null_pass_through(tmp_path):
    df = pd.DataFrame(
        {
            "name": [f"n{i}" for i in range(300)],
            "x": np.arange(300.0),
            "none": pd.Series([None] * 300, dtype=str),
        }
    )
    source = write(df, tmp_path / "src")
    result = run_batch_job(source, "feature_engineering", output_path=tmp_path / "out", vocabulary_limit=100)
    skipped = result.report["spec"]["defaults"]["skipped"]
    assert "vocabulary_limit=100" in skipped["name"] and "no non-null value" in skipped["none"]
    out = read_output(result.output_uri)
    assert out["name"].tolist() == df["name"].tolist() and out["none"].isna().all()


def test_a_column_of_lists_is_passed_through_and_an_explicit_step_on_it_is_refused(tmp_path):
    """The defaults leave a list column as it is (written back with its exact type); a step naming it is a
    ConfigError of the pre-flight check, naming the column and its type, before any chunk."""
    table = pa.table({"tags": pa.array([["a"], ["b", "c"], []] * 10), "x": pa.array(np.arange(30.0))})
    (tmp_path / "src").mkdir()
    pq.write_table(table, tmp_path / "src" / "a.parquet")
    result = run_batch_job(tmp_path / "src", "feature_engineering", output_path=tmp_path / "out")
    assert result.report["spec"]["defaults"]["skipped"]["tags"].endswith("passed through")
    out = pq.read_table(next((tmp_path / "out").rglob("parts/*.parquet")))
    assert out.column("tags").type == table.column("tags").type
    assert out.column("tags").to_pylist() == table.column("tags").to_pylist()[: out.num_rows]
    with pytest.raises(
        ConfigError, match=r"encode: column 'tags' has type list<element: string>.*passed through"
    ):
        run_batch_job(
            tmp_path / "src", "feature_engineering", output_path=tmp_path / "bad", encode={"tags": "onehot"}
        )
    assert not list((tmp_path / "bad").rglob("parts/*.parquet"))


def test_any_setting_turns_the_defaults_off(tmp_path):
    source = write(frame(), tmp_path / "src")
    result = run_batch_job(source, "feature_engineering", output_path=tmp_path / "out", scale={"x": "minmax"})
    assert "defaults" not in result.report["spec"] and set(result.report["spec"]["columns"]) == {"x"}
    assert read_output(result.output_uri)["cat"].tolist()[:10] == frame()["cat"].tolist()[:10]
