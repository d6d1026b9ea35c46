"""The same data as Parquet and as CSV gives the same data_quality results and data_profiling counts (#17):
CSV written by pandas with empty fields, with null markers (``N/A``, ``NULL``, ``-`` declared), and with a decimal
comma and ``;``. Compared: every rule's evaluated/failed/passed counts, the quarantined rows (file row and failed
rules), the score, and the profile's rows, nulls, distinct, min and max per column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job

N = 2_400
RULES = [
    {"type": "not_null", "column": "amount", "threshold": 0.5},
    {"type": "not_null", "column": "name", "severity": "warning"},
    {"type": "not_null", "column": "qty"},
    {"type": "not_null", "column": "flag"},
    {"type": "between", "column": "amount", "min": 50, "max": 150},
    {"type": "min", "column": "qty", "value": -40},
    {"type": "allowed_values", "column": "name", "values": [f"item {i}" for i in range(40)]},
    {"type": "regex", "column": "name", "pattern": r"^item [0-9]$"},
    {"type": "unique", "column": "name"},
    {"type": "unique", "columns": ["qty", "flag"]},
    {"type": "type", "column": "amount", "dtype": "float"},
    {"type": "type", "column": "qty", "dtype": "integer"},
    {"type": "expression", "expression": "amount * 2 > qty"},
    {"type": "row_count", "min": 1000},
]


def frame() -> pd.DataFrame:
    """Floats with NaN (and a few negative, some with a fraction only in the 3rd digit), nullable integers,
    text with missing values (none of them a null marker, some with the delimiter), nullable booleans."""
    rng = np.random.default_rng(23)
    amount = rng.normal(100, 40, N).round(3)
    amount[rng.random(N) < 0.12] = np.nan
    name = np.array([f"item {i % 47}" + (", x" if i % 19 == 0 else "") for i in range(N)], dtype=object)
    name[rng.random(N) < 0.08] = None
    qty = pd.array(rng.integers(-60, 60, N), dtype="Int64")
    qty[rng.random(N) < 0.05] = pd.NA
    flag = pd.array(rng.random(N) < 0.4, dtype="boolean")
    flag[rng.random(N) < 0.06] = pd.NA
    return pd.DataFrame({"id": np.arange(N), "amount": amount, "name": name, "qty": qty, "flag": flag})


# name: (DataFrame.to_csv keywords, csv_options)
VARIANTS = {
    "empty_fields": ({}, None),
    "null_markers": ({"na_rep": "N/A"}, None),
    "other_marker_NULL": ({"na_rep": "NULL"}, None),
    "declared_marker": ({"na_rep": "-"}, {"null_values": ["-"]}),
    "decimal_comma": ({"sep": ";", "decimal": ",", "na_rep": "NA"}, {"delimiter": ";", "decimal": ","}),
}


@pytest.fixture(scope="module")
def parquet_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pq")
    path = folder / "data.parquet"
    pq.write_table(pa.Table.from_pandas(frame(), preserve_index=False), path, row_group_size=500)
    cfg = {"batch_size": 700, "max_concurrent_batches": 2}
    quality = run_batch_job(path, "data_quality", rules=RULES, config=cfg, output_path=folder / "q")
    profile = run_batch_job(path, "data_profiling", config=cfg, output_path=folder / "p")
    return path, quality, profile


def _quarantine(result) -> list[tuple[int, tuple[str, ...]]]:
    rows = read_output(result.output_uri, quarantine=True)
    return sorted(zip(rows["_source_row"].tolist(), rows["_failed_rules"].map(tuple), strict=True))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_csv_twin_gives_the_same_quality_and_profile(parquet_results, tmp_path, variant):
    parquet, pq_quality, pq_profile = parquet_results
    to_csv, options = VARIANTS[variant]
    csv = tmp_path / "data.csv"
    pd.read_parquet(parquet, dtype_backend="numpy_nullable").to_csv(csv, index=False, **to_csv)
    cfg = {"batch_size": 611, "max_concurrent_batches": 2}  # other chunk edges than the Parquet run's
    quality = run_batch_job(
        csv, "data_quality", rules=RULES, config=cfg, csv_options=options, output_path=tmp_path / "q"
    )
    a, b = pq_quality.report, quality.report
    assert a["rows"] == b["rows"] == N
    keys = ("name", "evaluated", "failed", "passed", "failure_ratio")
    assert [{k: e[k] for k in keys} for e in b["rules"]] == [{k: e[k] for k in keys} for e in a["rules"]]
    assert any(e["failed"] for e in a["rules"]) and any(e["passed"] for e in a["rules"])  # the rules do bite
    assert (b["score"], b["rows_failed"], b["rules_failed"]) == (
        a["score"],
        a["rows_failed"],
        a["rules_failed"],
    )
    assert _quarantine(quality) == _quarantine(pq_quality)
    profile = run_batch_job(
        csv, "data_profiling", config=cfg, csv_options=options, output_path=tmp_path / "p"
    )
    pa_cols, csv_cols = pq_profile.report["columns"], profile.report["columns"]
    assert list(csv_cols) == list(pa_cols)
    for name in pa_cols:
        for key in ("count", "nulls", "distinct", "min", "max"):
            assert csv_cols[name][key] == pa_cols[name][key], (variant, name, key)
    assert csv_cols["amount"]["nulls"] == int(frame()["amount"].isna().sum()) > 0
    assert csv_cols["name"]["nulls"] == int(frame()["name"].isna().sum()) > 0
