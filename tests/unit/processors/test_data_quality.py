"""DataQualityProcessor on real Parquet files: chunked runs equal a one-piece pandas oracle, exactly."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pytest

from airflow_batch_provider.config import BatchConfig
from airflow_batch_provider.engine import read_output, run_batch_job
from airflow_batch_provider.exceptions import ChunkFailedError, ConfigError
from airflow_batch_provider.processors import ChunkContext, hashing
from airflow_batch_provider.processors import data_quality as dq  # registers "data_quality"
from airflow_batch_provider.processors.data_quality import DataQualityProcessor, SafeExpression

DATES = ["2026-01-15", "2026-02-30", "2026-13-01", "2025-12-31", "15/01/2026", None]
NUMS = ["12", "1.5", "abc", "-3", "7.0", "1e3", None]


def frame(n: int, seed: int, offset: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    key = rng.integers(0, n // 4, n).astype("float64")
    key[rng.random(n) < 0.03] = np.nan  # null keys: duplicates of each other, as in pandas
    return pd.DataFrame(
        {
            "id": np.arange(offset, offset + n, dtype="int64"),
            "amount $ (eur)": x * 100,
            "cat": rng.choice(["a", "b", "c", "zz"], size=n),
            "key": key,
            "k2": rng.integers(0, 3, n),
            "date text": rng.choice(np.array(DATES, dtype=object), size=n),
            "num text": rng.choice(np.array(NUMS, dtype=object), size=n),
            "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "all null": np.full(n, np.nan),
            "constant": np.full(n, 5.0),
        }
    )


RULES = [
    {"type": "not_null", "column": "amount $ (eur)"},
    {"type": "not_null", "column": "all null", "threshold": 1.0, "severity": "warning"},
    {"type": "unique", "column": "key"},
    {"type": "unique", "columns": ["key", "k2"], "name": "key pair unique"},
    {"type": "unique", "column": "id"},
    {"type": "between", "column": "amount $ (eur)", "min": -150, "max": 150},
    {"type": "min", "column": "constant", "value": 5, "inclusive": False},
    {"type": "max", "column": "ts", "value": "2026-01-10"},
    {"type": "allowed_values", "column": "cat", "values": ["a", "b", "c"], "threshold": 0.5},
    {"type": "regex", "column": "cat", "pattern": "[a-c]"},
    {"type": "type", "column": "num text", "dtype": "integer"},
    {"type": "type", "column": "num text", "dtype": "float"},
    {"type": "type", "column": "date text", "dtype": "date"},
    {"type": "row_count", "min": 10, "max": 10**6},
    {
        "type": "expression",
        "expression": "isnull(col('amount $ (eur)')) or col('amount $ (eur)') * 2 < k2 * 100",
        "name": "small amounts",
    },
    {"type": "expression", "expression": "cat in ['a', 'b'] and not 0 <= k2 < 2", "severity": "warning"},
]


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(frame(1000, 1, 0), "part-a.parquet")
    make_parquet(frame(777, 2, 1000), "part-b.parquet")
    return tmp_path / "src"


def whole(src) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(src.glob("*.parquet"))], ignore_index=True)


def _int_like(v) -> bool:
    try:
        f = float(v)
    except ValueError:
        return False
    return np.isfinite(f) and f == int(f)


def _float_like(v) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _date_like(v) -> bool:
    try:
        dt.date.fromisoformat(v)
    except ValueError:
        return False
    return True


def oracle(df: pd.DataFrame) -> dict[str, tuple[int, np.ndarray]]:
    """rule name -> (evaluated, failed mask), computed in one piece with plain pandas/Python."""
    amt, num, date = df["amount $ (eur)"], df["num text"], df["date text"]

    def value_rule(s, ok):
        present = s.notna().to_numpy()
        return int(present.sum()), present & ~np.asarray(ok, dtype=bool)

    n = len(df)
    out = {
        "not_null(amount $ (eur))": (n, amt.isna().to_numpy()),
        "not_null(all null)": (n, df["all null"].isna().to_numpy()),
        "unique(key)": (n, df.duplicated(subset=["key"]).to_numpy()),
        "key pair unique": (n, df.duplicated(subset=["key", "k2"]).to_numpy()),
        "unique(id)": (n, df.duplicated(subset=["id"]).to_numpy()),
        "between(amount $ (eur))": value_rule(amt, (amt >= -150) & (amt <= 150)),
        "min(constant)": value_rule(df["constant"], df["constant"] > 5),
        "max(ts)": value_rule(df["ts"], df["ts"] <= pd.Timestamp("2026-01-10")),
        "allowed_values(cat)": value_rule(df["cat"], df["cat"].isin(["a", "b", "c"])),
        "regex(cat)": value_rule(
            df["cat"], [pd.isna(v) or re.fullmatch("[a-c]", v) is not None for v in df["cat"]]
        ),
        "type(num text)": value_rule(num, [pd.isna(v) or _int_like(v) for v in num]),
        "type(num text)#11": value_rule(num, [pd.isna(v) or _float_like(v) for v in num]),
        "type(date text)": value_rule(date, [pd.isna(v) or _date_like(v) for v in date]),
        "small amounts": (n, ~(amt.isna() | (amt * 2 < df["k2"] * 100)).to_numpy()),
        "expression": (n, ~(df["cat"].isin(["a", "b"]) & ~((df["k2"] >= 0) & (df["k2"] < 2))).to_numpy()),
    }
    return out


def quarantine_oracle(df: pd.DataFrame, src) -> pd.DataFrame:
    expect = oracle(df)
    names = [n for n in (r.name for r in dq.parse_rules(RULES)) if n in expect]
    matrix = np.column_stack([expect[n][1] for n in names])
    bad = np.flatnonzero(matrix.any(axis=1))
    sizes = [len(pd.read_parquet(p)) for p in sorted(src.glob("*.parquet"))]
    file_index = np.searchsorted(np.cumsum(sizes), bad, side="right")
    row = bad - np.concatenate([[0], np.cumsum(sizes)])[file_index]
    return (
        df.iloc[bad]
        .reset_index(drop=True)
        .assign(
            _source_file_index=file_index.astype("int64"),
            _source_row=row.astype("int64"),
            _failed_rules=[[names[j] for j in np.flatnonzero(matrix[i])] for i in bad],
        )
    )


@pytest.mark.parametrize("batch_size,workers", [(97, 1), (250, 2), (333, 2), (5000, 1)])
def test_chunked_run_equals_the_one_piece_oracle(source, tmp_path, batch_size, workers):
    result = run_batch_job(
        source,
        "data_quality",
        config=BatchConfig(batch_size=batch_size, max_concurrent_batches=workers),
        output_path=tmp_path / "out",
        rules=RULES,
    )
    df = whole(source)
    report = result.report
    expect = oracle(df)
    by_name = {e["name"]: e for e in report["rules"]}
    assert set(by_name) == set(expect) | {"row_count"}
    for name, (evaluated, failed) in expect.items():
        entry = by_name[name]
        assert (entry["evaluated"], entry["failed"]) == (evaluated, int(failed.sum())), name
        ratio = failed.sum() / evaluated if evaluated else None
        assert entry["failure_ratio"] == ratio and entry["passed"] == (
            ratio is None or ratio <= entry["threshold"]
        )
    assert by_name["unique(key)"]["distinct_keys"] == df["key"].nunique(dropna=False)
    assert by_name["row_count"] == {**by_name["row_count"], "evaluated": 1, "failed": 0, "rows": 1777}
    want = quarantine_oracle(df, source)
    assert report["rows"] == 1777 and report["rows_failed"] == len(want)
    got = read_output(result.output_uri, quarantine=True)
    got["_failed_rules"] = got["_failed_rules"].map(list)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    ratios = [e["failure_ratio"] for e in report["rules"] if e["failure_ratio"] is not None]
    assert report["score"] == pytest.approx(1 - sum(ratios) / len(ratios), abs=1e-15)
    assert report["failed_rules"] == [e["name"] for e in report["rules"] if not e["passed"]]
    assert json.dumps(report) and report["format_version"] == 1


def test_sensitive_data_quarantines_only_positions_and_reasons(source, tmp_path):
    rules = [{"type": "unique", "column": "key"}, {"type": "not_null", "column": "amount $ (eur)"}]
    result = run_batch_job(
        source,
        "data_quality",
        config={"batch_size": 211},
        output_path=tmp_path / "out",
        rules=rules,
        quarantine_values=False,
    )
    got = read_output(result.output_uri, quarantine=True)
    assert list(got.columns) == ["_source_file_index", "_source_row", "_failed_rules"]
    df = whole(source)
    bad = df["key"].duplicated() | df["amount $ (eur)"].isna()
    assert len(got) == int(bad.sum()) == result.report["rows_failed"]


@pytest.mark.parametrize("spill", [False, True], ids=["inline-state", "spilled-state"])
def test_resume_after_a_failed_chunk_gives_the_clean_result(source, tmp_path, request, spill):
    if spill:
        request.getfixturevalue("spill_everything")
    flag = tmp_path / "fail-once"
    flag.write_text("x")

    class FailsOnce(DataQualityProcessor):
        def process(self, chunk, ctx):
            if ctx.file_index == 1 and ctx.start_row >= 300 and flag.exists():
                flag.unlink()
                raise RuntimeError("crash midway")
            return super().process(chunk, ctx)

    cfg = BatchConfig(batch_size=150, max_concurrent_batches=2, checkpoint_interval=1, retry_attempts=0)
    with pytest.raises(ChunkFailedError):
        run_batch_job(source, FailsOnce(RULES), config=cfg, output_path=tmp_path / "out")
    resumed = run_batch_job(source, DataQualityProcessor(RULES), config=cfg, output_path=tmp_path / "out")
    assert resumed.chunks_resumed > 0
    clean = run_batch_job(
        source, "data_quality", config={"batch_size": 1000}, output_path=tmp_path / "clean", rules=RULES
    )
    assert resumed.report == clean.report
    pd.testing.assert_frame_equal(
        read_output(resumed.output_uri, quarantine=True), read_output(clean.output_uri, quarantine=True)
    )


def test_state_round_trips_through_json(source):
    df = whole(source)
    fitted = DataQualityProcessor(RULES)
    ctx = ChunkContext("j", 0, 0, "f", 0, len(df), 1, "")
    fitted.fit_stats(fitted.merge_stats([fitted.partial_stats(df, ctx)]))
    restored = DataQualityProcessor(RULES)
    restored.set_state(json.loads(json.dumps(fitted.get_state())))
    a, b = fitted.process(df, ctx), restored.process(df, ctx)
    assert a.state == b.state
    pd.testing.assert_frame_equal(a.rows, b.rows)


def test_empty_input_and_row_count_rule(tmp_path, make_parquet):
    make_parquet(frame(10, 3, 0).iloc[:0], "empty.parquet")
    rules = [
        {"type": "row_count", "min": 1},
        {"type": "unique", "column": "id"},
        {"type": "not_null", "column": "id"},
    ]
    report = run_batch_job(tmp_path / "src", "data_quality", output_path=tmp_path / "out", rules=rules).report
    assert report["rows"] == 0 and report["rows_failed"] == 0
    assert [e["passed"] for e in report["rules"]] == [False, True, True]
    assert report["rules"][1]["failure_ratio"] is None and report["score"] == 0.0  # only row_count evaluated


def test_missing_key_is_not_a_duplicate_of_a_value_and_null_keys_match_pandas(tmp_path, make_parquet):
    df = pd.DataFrame({"k": [None, "a", None, "a", "b", None], "v": [1, 2, 3, 4, 5, 6]})
    make_parquet(df, "a.parquet", row_group_size=2)
    result = run_batch_job(
        tmp_path / "src",
        "data_quality",
        config={"batch_size": 2},
        output_path=tmp_path / "out",
        rules=[{"type": "unique", "column": "k"}],
    )
    assert result.report["rules"][0]["failed"] == int(df.duplicated(subset=["k"]).sum()) == 3
    assert read_output(result.output_uri, quarantine=True)["_source_row"].tolist() == [2, 3, 5]


@pytest.mark.parametrize(
    "rules,match",
    [
        ("not a list", "list of rule dicts"),
        ([], "at least one rule"),
        ([{"type": "nope", "column": "x"}], "unknown rule type"),
        ([{"type": "not_null"}], "needs 'column'"),
        ([{"type": "not_null", "column": "x", "colour": 1}], "unknown key"),
        ([{"type": "between", "column": "x"}], "'min' and/or 'max'"),
        ([{"type": "not_null", "column": "x", "threshold": 2}], "threshold"),
        ([{"type": "not_null", "column": "x", "severity": "fatal"}], "severity"),
        ([{"type": "regex", "column": "x", "pattern": "("}], "not a valid regex"),
        ([{"type": "type", "column": "x", "dtype": "complex"}], "dtype"),
        (
            [
                {"type": "not_null", "column": "x", "name": "a"},
                {"type": "unique", "column": "x", "name": "a"},
            ],
            "twice",
        ),
        ([{"type": "expression", "expression": "__import__('os').system('true')"}], "not allowed"),
        ([{"type": "row_count", "min": -1}], "non-negative"),
    ],
)
def test_bad_rules_name_the_problem(rules, match):
    with pytest.raises(ConfigError, match=match):
        DataQualityProcessor(rules)._validate()


def test_unknown_column_fails_the_job_clearly(source, tmp_path):
    with pytest.raises(ConfigError, match="unknown column 'nope'"):
        run_batch_job(
            source,
            "data_quality",
            output_path=tmp_path / "out",
            rules=[{"type": "not_null", "column": "nope"}],
        )


@pytest.mark.parametrize(
    "text",
    [
        "x.__class__",
        "x[0]",
        "(lambda: 1)()",
        "[a for a in x]",
        "open('f')",
        "getattr(x, 'y')",
        "x if y else z",
        "f'{x}'",
        "x in y",
        "col(x)",
        "abs(x, y)",
        "isnull(x=1)",
    ],
)
def test_expressions_outside_the_whitelist_are_refused(text):
    with pytest.raises(ConfigError, match="not allowed"):
        SafeExpression(text)


def test_expression_evaluation_without_eval():
    df = pd.DataFrame({"a b": [1.0, np.nan, 3.0], "x": [1, 2, 3], "s": ["Ab", None, "cd"]})
    assert SafeExpression("col('a b') >= 1").evaluate(df).tolist() == [True, False, True]
    assert SafeExpression("notnull(s) and length(lower(s)) == 2").evaluate(df).tolist() == [True, False, True]
    assert SafeExpression("-x + 2 ** 2 > abs(-1) * 2").evaluate(df).tolist() == [True, False, False]
    assert SafeExpression("x not in [1, 3]").evaluate(df).tolist() == [False, True, False]
    assert SafeExpression("True").evaluate(df).tolist() == [True] * 3
    with pytest.raises(ConfigError, match="overflow|too large|range"):
        SafeExpression("x > 10 ** 10 ** 10").evaluate(df)
    with pytest.raises(ConfigError, match="only '\\+' works on text"):
        SafeExpression("s * 1000000000 == 'a'").evaluate(df)
    with pytest.raises(ConfigError, match="too complex"):
        SafeExpression(" + ".join(["x"] * 400))


def test_fail_on_turns_a_report_into_a_message():
    report = {
        "rows": 10,
        "rows_failed": 3,
        "score": 0.8,
        "rules": [
            {
                "name": "a",
                "severity": "warning",
                "passed": False,
                "failed": 3,
                "evaluated": 10,
                "failure_ratio": 0.3,
                "threshold": 0.0,
            },
            {
                "name": "b",
                "severity": "error",
                "passed": True,
                "failed": 0,
                "evaluated": 10,
                "failure_ratio": 0.0,
                "threshold": 0.0,
            },
        ],
    }
    assert dq.fail_on_message(report, None) is None
    assert dq.fail_on_message(report, "error") is None
    assert "a: 3/10 failed" in dq.fail_on_message(report, "warning")
    assert "score 0.8000 is below fail_on=0.9" in dq.fail_on_message(report, "0.9")
    assert dq.fail_on_message(report, 0.5) is None
    with pytest.raises(ConfigError, match="fail_on"):
        dq.parse_fail_on("sometimes")


@pytest.fixture
def spill_everything(monkeypatch):
    """Every key run goes to side files; merges run in tiny steps and in groups of 3 (temporary runs)."""
    monkeypatch.setattr(hashing, "SPILL_MIN_KEYS", 0)
    monkeypatch.setattr(hashing, "FAN_IN", 3)
    monkeypatch.setattr(hashing, "MERGE_BUDGET", 64)


@pytest.mark.parametrize("batch_size,workers", [(97, 2), (333, 1)])
def test_spilled_key_state_gives_the_oracle_result(source, tmp_path, spill_everything, batch_size, workers):
    result = run_batch_job(
        source,
        "data_quality",
        config=BatchConfig(batch_size=batch_size, max_concurrent_batches=workers),
        output_path=tmp_path / "out",
        rules=RULES,
    )
    keys = tmp_path / "out" / "g0001" / "fit" / "g0001" / "_keys"  # the statistics pass generation
    assert sorted(keys.glob("u0-f*.h.u8")) and (keys / "u0-repeated.p.i8").exists()
    assert not list(keys.glob("keys-merge-*")) and not list(keys.glob("*.tmp"))  # temporary runs removed
    df = whole(source)
    by_name = {e["name"]: e for e in result.report["rules"]}
    for name, (evaluated, failed) in oracle(df).items():
        assert (by_name[name]["evaluated"], by_name[name]["failed"]) == (evaluated, int(failed.sum())), name
    assert by_name["unique(key)"]["distinct_keys"] == df["key"].nunique(dropna=False)
    assert by_name["unique(id)"]["distinct_keys"] == len(df)
    got = read_output(result.output_uri, quarantine=True)
    got["_failed_rules"] = got["_failed_rules"].map(list)
    pd.testing.assert_frame_equal(got, quarantine_oracle(df, source), check_dtype=False)
    state = json.loads((tmp_path / "out" / "g0001" / "fit_state.json").read_text())
    assert state["format_version"] == dq.STATE_VERSION and len(json.dumps(state)) < 4000  # references only


def test_a_missing_side_file_is_a_clear_error(source, tmp_path, spill_everything):
    fitted = DataQualityProcessor([{"type": "unique", "column": "id"}])
    df = whole(source)
    ctx = ChunkContext("j", 0, 0, "f", 0, len(df), 1, str(tmp_path / "job"))
    state = fitted.partial_stats(df, ctx)
    next((tmp_path / "job" / "_keys").glob("*.h.u8")).unlink()
    with pytest.raises(RuntimeError, match="missing"):
        fitted.merge_stats([state])


@pytest.mark.parametrize("rules", [5, 70])
def test_reason_lists_name_each_rows_broken_rules(rules):
    rng = np.random.default_rng(rules)
    failed = rng.random((400, rules)) < 0.1
    names = [f"r{j}" for j in range(rules)]
    got = dq._reason_lists(failed, names)
    assert got.dtype == object and len(got) == 400
    assert [list(x) for x in got] == [[n for n, hit in zip(names, row, strict=True) if hit] for row in failed]
