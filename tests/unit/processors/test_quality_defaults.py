"""The default quality assessment (``data_quality`` with no rules), through the real engine.

Planted problems (nulls, duplicate rows, numbers stored as text with a few values that are not numbers,
outliers) are each found, with the exact counts a one-piece pandas oracle gives; a clean dataset gives no
finding. The generated rules are valid input to ``data_quality`` (the same results when pasted into
``rules=``), and :func:`suggest_rules` of a ``data_profiling`` report gives the same rules.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.quality_defaults import (
    IQR_FACTOR,
    QualityProfileProcessor,
    derive_rules,
    suggest_rules,
)

N = 2400
NULLS = [3, 401, 1799]
DUPLICATES = [(500, 501), (1210, 1211), (2300, 2301)]  # (original, copy): the copy is the duplicate
JUNK = {17: "n/a", 900: "twelve", 2001: "12,50"}  # in a text column whose other values are numbers
OUTLIERS = {250: 95.0, 1500: -80.0}


def clean_frame(n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "x": rng.normal(10.0, 2.0, n),
            "qty": rng.integers(1, 40, n),
            "cat": rng.choice(["red", "green", "blue"], n),
            "day": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
            "price": rng.uniform(1.0, 9.0, n).round(2),
        }
    )


def planted_frame() -> pd.DataFrame:
    df = clean_frame()
    df["price"] = df["price"].map(lambda v: f"{v:.2f}").astype(object)  # numbers stored as text
    for i, text in JUNK.items():
        df.loc[i, "price"] = text
    for i, value in OUTLIERS.items():
        df.loc[i, "x"] = value
    for original, copy in DUPLICATES:
        df.iloc[copy] = df.iloc[original]
    df.loc[NULLS, "x"] = np.nan
    return df


def write(df: pd.DataFrame, folder) -> str:
    folder.mkdir()
    half = len(df) // 2
    for name, part in (("a", df.iloc[:half]), ("b", df.iloc[half:])):
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False), folder / f"{name}.parquet", row_group_size=250
        )
    return str(folder)


def assess(source, out, **kwargs):
    return run_batch_job(
        source,
        "data_quality",
        output_path=out,
        config={"batch_size": 377, "max_concurrent_batches": 2},
        **kwargs,
    )


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base = tmp_path_factory.mktemp("planted")
    source = write(planted_frame(), base / "src")
    return source, assess(source, base / "out")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    base = tmp_path_factory.mktemp("clean")
    source = write(clean_frame(), base / "src")
    return source, assess(source, base / "out")


def fences(values: pd.Series) -> tuple[float, float]:
    q1, q3 = values.quantile(0.25), values.quantile(0.75)
    return q1 - IQR_FACTOR * (q3 - q1), q3 + IQR_FACTOR * (q3 - q1)


def by_name(report):
    return {e["name"]: e for e in report["rules"]}


def test_each_planted_problem_is_found_with_exact_counts(planted):
    _, result = planted
    df = planted_frame()
    report, rules = result.report, by_name(result.report)
    assert report["rows"] == N
    assert rules["completeness(x)"]["failed"] == len(NULLS) == int(df["x"].isna().sum())
    assert rules["duplicate_rows"]["failed"] == len(DUPLICATES) == int(df.duplicated().sum())
    assert rules["type_consistency(price)"]["failed"] == len(JUNK)
    lo, hi = fences(df["x"].dropna())
    want_outliers = int(((df["x"] < lo) | (df["x"] > hi)).sum())
    assert rules["outliers(x)"]["failed"] == want_outliers == len(OUTLIERS)
    checks = {(f["check"], f["column"]) for f in report["assessment"]["findings"]}
    assert checks == {
        ("completeness", "x"),
        ("duplicates", None),
        ("type_consistency", "price"),
        ("stored_as_text", "price"),
        ("outliers", "x"),
    }
    assert not report["passed"] and report["score"] < 1.0
    assert report["assessment"]["completeness"]["x"] == pytest.approx(1 - len(NULLS) / N)


def test_the_rows_with_problems_are_quarantined(planted):
    _, result = planted
    quarantined = read_output(result.output_uri, quarantine=True)
    bad = set(NULLS) | {c for _, c in DUPLICATES} | set(JUNK) | set(OUTLIERS)
    rows = (quarantined["_source_file_index"] * (N // 2) + quarantined["_source_row"]).tolist()
    assert rows == sorted(bad)
    reasons = dict(zip(rows, quarantined["_failed_rules"].map(list), strict=True))
    assert reasons[900] == ["type_consistency(price)"] and reasons[250] == ["outliers(x)"]
    assert reasons[NULLS[0]] == ["completeness(x)"] and reasons[DUPLICATES[0][1]] == ["duplicate_rows"]


def test_the_generated_rules_are_listed_with_the_method(planted):
    _, result = planted
    section = result.report["assessment"]
    rules = {r["name"]: r for r in section["generated_rules"]}
    df = planted_frame()
    lo, hi = fences(df["x"].dropna())
    assert rules["outliers(x)"]["min"] == pytest.approx(lo, rel=1e-12)
    assert rules["outliers(x)"]["max"] == pytest.approx(hi, rel=1e-12)
    assert rules["type_consistency(price)"]["dtype"] == "float"
    q_lo, q_hi = fences(df["qty"].astype(float))
    assert (rules["outliers(qty)"]["min"], rules["outliers(qty)"]["max"]) == (np.floor(q_lo), np.ceil(q_hi))
    assert isinstance(rules["outliers(qty)"]["min"], int)  # integer columns get integer fences
    assert {f"completeness({c})" for c in df.columns} <= set(rules)
    assert "outliers(day)" not in rules and "type_consistency(cat)" not in rules  # dates, plain text
    assert "IQR" in section["method"]["outliers"] and "95%" in section["method"]["type_consistency"]
    assert json.loads(json.dumps(result.report)) == result.report


def test_a_clean_dataset_gives_no_finding(clean):
    _, result = clean
    report = result.report
    assert report["assessment"]["findings"] == []
    assert report["passed"] and report["rows_failed"] == 0 and report["score"] == 1.0
    assert read_output(result.output_uri, quarantine=True) is None
    assert len(read_output(result.output_uri)) == N  # every row passes downstream
    names = {r["name"] for r in report["assessment"]["generated_rules"]}
    assert {"duplicate_rows", "outliers(x)", "outliers(qty)", "completeness(day)"} <= names


def test_the_generated_rules_pasted_into_rules_give_the_same_results(planted, tmp_path):
    source, result = planted
    rules = json.loads(json.dumps(suggest_rules(result.report)))  # through JSON, as a user pastes them
    assert rules == result.report["assessment"]["generated_rules"]
    again = assess(source, tmp_path / "out", rules=rules)
    ours = {k: v for k, v in result.report.items() if k != "assessment"}
    assert again.report == ours
    assert "assessment" not in again.report


def test_suggest_rules_of_a_data_profiling_report_gives_the_same_rules(planted, tmp_path):
    source, result = planted
    generated = result.report["assessment"]["generated_rules"]
    profile = run_batch_job(source, "data_profiling", output_path=tmp_path / "p", top_k=1000).report
    assert suggest_rules(profile) == generated  # every text value listed: the type rule too
    saved = json.loads((tmp_path / "p" / "_report.json").read_text())  # keys sorted on disk: the same list
    assert suggest_rules(saved) == generated
    few = run_batch_job(source, "data_profiling", output_path=tmp_path / "q").report  # top_k=10
    rules, skipped = derive_rules(few)
    assert rules == [r for r in generated if r["name"] != "type_consistency(price)"]
    assert "top values" in skipped["price"]
    assert suggest_rules(result.report["assessment"]) == generated  # the assessment section itself


def test_the_profile_alone_is_a_job_and_matches_the_assessment(planted, tmp_path):
    source, result = planted
    report = run_batch_job(source, QualityProfileProcessor(), output_path=tmp_path / "o").report
    assert report == result.report["assessment"]["profile"]
    assert suggest_rules(report) == result.report["assessment"]["generated_rules"]


def test_text_holding_integers_and_dates_gets_typed_rules(tmp_path):
    n = 400
    df = pd.DataFrame(
        {
            "code": [str(i) for i in range(n)],
            "when": [f"2026-03-{1 + i % 28:02d}" for i in range(n)],
            "stamp": [f"2026-03-01T{i % 24:02d}:30:00" for i in range(n)],
            "mostly": [str(i) if i % 10 else "x" for i in range(n)],  # 90%: below 95%, plain text
            "flat": [0] * (n - 10) + list(range(1, 11)),  # IQR 0
        }
    )
    df.loc[5, "when"] = "2026-02-30"  # an impossible date
    source = write(df, tmp_path / "src")
    report = assess(source, tmp_path / "out").report
    rules = {r["name"]: r for r in report["assessment"]["generated_rules"]}
    assert rules["type_consistency(code)"]["dtype"] == "integer"
    assert rules["type_consistency(when)"]["dtype"] == "date"
    assert rules["type_consistency(stamp)"]["dtype"] == "datetime"
    assert "type_consistency(mostly)" not in rules and "outliers(flat)" not in rules
    assert "IQR is 0" in report["assessment"]["skipped"]["flat"]
    assert by_name(report)["type_consistency(when)"]["failed"] == 1


def test_a_profile_without_columns_is_refused_clearly():
    with pytest.raises(ConfigError, match="give a profile with 'columns'"):
        suggest_rules({"rows": 3})


def test_an_empty_rule_list_is_still_an_error(tmp_path):
    """``rules=None`` is the default assessment; ``rules=[]`` stays a mistake."""
    source = write(clean_frame(50), tmp_path / "src")
    with pytest.raises(ConfigError, match="at least one rule"):
        assess(source, tmp_path / "out", rules=[])
