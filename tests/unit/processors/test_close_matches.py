"""Unknown names are named with their close match (difflib) before any row is read (issues #13, #17): columns
in rules, feature parameters, a fitted feature spec, anomaly features, profiled columns, rule types and keys,
csv_options keys and declared column_types."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.exceptions import ConfigError


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src.parquet"
    pd.DataFrame({"amount": [1.0, 2.0, 3.0], "currency": ["EUR", "USD", "EUR"], "id": [1, 2, 3]}).to_parquet(
        path
    )
    return path


CASES = [
    ("data_quality", {"rules": [{"type": "not_null", "column": "ammount"}]}, "rules[0] (not_null(ammount)): unknown column 'ammount'", "amount"),
    ("data_quality", {"rules": [{"type": "unique", "columns": ["id", "curency"]}]}, "unknown column 'curency'", "currency"),
    ("data_quality", {"rules": [{"type": "expression", "expression": "ammount > 0"}]}, "(expression): unknown column 'ammount'", "amount"),
    ("data_quality", {"rules": [{"type": "not_nul", "column": "id"}]}, "unknown rule type 'not_nul'", "not_null"),
    ("data_quality", {"rules": [{"type": "between", "column": "id", "min": 0, "maxx": 9}]}, "unknown key(s) ['maxx']", "max"),
    ("feature_engineering", {"scale": {"ammount": "standard"}}, "scale: unknown column 'ammount'", "amount"),
    ("feature_engineering", {"encode": {"curency": "onehot"}}, "encode: unknown column 'curency'", "currency"),
    ("anomaly_detection", {"features": ["ammount"]}, "features: unknown column 'ammount'", "amount"),
    ("data_profiling", {"columns": ["ammount"]}, "columns: unknown column 'ammount'", "amount"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("processor", "params", "what", "close"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES]
)
def test_unknown_names_fail_before_any_row_with_the_close_match(
    source, tmp_path, processor, params, what, close
):
    with pytest.raises(ConfigError) as err:
        run_batch_job(source, processor, output_path=tmp_path / "out", **params)
    message = str(err.value)
    assert what in message and f"did you mean {close!r}" in message, message
    assert not (tmp_path / "out" / "_manifest.json").exists()
    assert not list((tmp_path / "out").rglob("*.parquet"))  # no chunk ran


def test_a_fitted_spec_naming_a_missing_column_fails_in_validate(source, tmp_path):
    """Before, the spec's column was silently passed through untransformed on a source that lacks it."""
    fitted = run_batch_job(
        source, "feature_engineering", output_path=tmp_path / "fit", scale={"amount": "standard"}
    ).report["spec"]
    renamed = tmp_path / "renamed.parquet"
    pd.read_parquet(source).rename(columns={"amount": "amout"}).to_parquet(renamed)
    with pytest.raises(
        ConfigError, match=r"spec: unknown column 'amount' \(not in the source\); did you mean 'amout'"
    ):
        run_batch_job(renamed, "feature_engineering", output_path=tmp_path / "apply", spec=fitted)
    saved = str(tmp_path / "fit" / "_report.json")  # a saved report works the same
    with pytest.raises(ConfigError, match="did you mean 'amout'"):
        run_batch_job(renamed, "feature_engineering", output_path=tmp_path / "apply2", spec=saved)
    assert (
        run_batch_job(source, "feature_engineering", output_path=tmp_path / "ok", spec=fitted).rows_out == 3
    )


def test_text_options_name_the_close_key_and_column(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("id,amount\n1,2.5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'delimeter'; did you mean 'delimiter'\?"):
        run_batch_job(csv, "count", output_path=tmp_path / "a", csv_options={"delimeter": ";"})
    with pytest.raises(
        ConfigError, match=r"'ammount', which is not in the header of .*t\.csv; did you mean 'amount'\?"
    ):
        run_batch_job(
            csv, "count", output_path=tmp_path / "b", csv_options={"column_types": {"ammount": "float64"}}
        )


def test_nothing_close_gives_no_guess(source, tmp_path):
    with pytest.raises(ConfigError) as err:
        run_batch_job(
            source, "data_quality", output_path=tmp_path / "o", rules=[{"type": "not_null", "column": "zzz"}]
        )
    assert "unknown column 'zzz'" in str(err.value) and "did you mean" not in str(err.value)
