"""``validate(schema)``: once per job, after the plan and before any chunk, against a real Parquet source."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_batch_provider.engine import run_batch_job
from airflow_batch_provider.engine.shards import merge_shards, plan_shards, run_shard
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.base import BaseProcessor, ChunkResult
from airflow_batch_provider.processors.data_quality import SafeExpression
from tests.conftest import sample_frame

COLUMNS = re.escape("['id', 'x', 'cat', 'ts', 'dup']")


@pytest.fixture
def source(make_parquet, tmp_path):
    make_parquet(sample_frame(600, seed=1), "a.parquet")
    return tmp_path / "src"


def _fails_before_any_chunk(out: Path) -> None:
    (gen,) = out.glob("g*")
    checkpoint = json.loads((gen / "_checkpoint.json").read_text())
    assert checkpoint["status"] == "failed" and checkpoint["counters"]["chunks_done"] == 0
    assert not list(gen.rglob("*.parquet"))  # no part, no statistics pass


@pytest.mark.parametrize(
    ("processor", "params", "match"),
    [
        (
            "data_quality",
            {"rules": [{"type": "not_null", "column": "id"}, {"type": "unique", "column": "catt"}]},
            r"data_quality: rules\[1\] \(unique\(catt\)\): unknown column 'catt' \(not in the source\); "
            rf"did you mean 'cat'\?; the source has {COLUMNS}",
        ),
        (
            "data_quality",
            {"rules": [{"type": "expression", "expression": "x > 0 and colour == 'red'"}]},
            r"data_quality: rules\[0\] \(expression\): unknown column 'colour'",
        ),
        (
            "data_quality",
            {"rules": [{"type": "expression", "expression": "cat * 2 > 1"}]},
            r"data_quality: rules\[0\]: .*: arithmetic other than .* does not work on text",
        ),
        (
            "data_quality",
            {"rules": [{"type": "expression", "expression": "0 <= x < cat"}]},
            "cannot order text against a number",
        ),
        (
            "feature_engineering",
            {"scale": {"x": "standard"}, "encode": {"kat": "onehot"}},
            r"feature_engineering: encode: unknown column 'kat' \(not in the source\); did you mean 'cat'\?",
        ),
        ("feature_engineering", {"date_parts": {"x": ["year"]}}, "date_parts: column 'x' has dtype float64"),
        (
            "anomaly_detection",
            {"features": ["x", "idd"]},
            r"anomaly_detection: features: unknown column 'idd'",
        ),
        (
            "anomaly_detection",
            {"features": ["x", "cat"]},
            r"anomaly_detection: features: .*'cat' \((?:str|object)\) are not",  # pandas 3 / pandas 2 dtype name
        ),
        (
            "data_profiling",
            {"columns": ["x", "ts", "dupp"]},
            r"data_profiling: columns: unknown column 'dupp'",
        ),
    ],
)
def test_a_bad_column_fails_before_any_chunk(source, tmp_path, processor, params, match):
    with pytest.raises(ConfigError, match=match):
        run_batch_job(source, processor, output_path=tmp_path / "out", records_path=False, **params)
    _fails_before_any_chunk(tmp_path / "out")


class Ledgered(BaseProcessor):
    """Writes what ran, in order, to a file (chunks run in forked workers); a statistics pass and a fit."""

    name = "test_ledgered"
    stats_pass = True
    fit_sample_size = 50

    def __init__(self, ledger: str = "") -> None:
        self.ledger = ledger

    def _log(self, what: str) -> None:
        with open(self.ledger, "a") as fh:
            fh.write(what + "\n")

    def validate(self, schema):
        assert "x" in schema.names  # the source's pyarrow schema
        self._log("validate")

    def partial_stats(self, chunk, ctx):
        self._log("stats")
        return {"n": len(chunk)}

    def merge_stats(self, states):
        return {"n": sum(s["n"] for s in states)}

    def fit(self, sample):
        self._log("fit")

    def get_state(self):
        return {"fitted": True}

    def process(self, chunk, ctx):
        self._log("process")
        return ChunkResult(rows=chunk)


def test_validate_runs_once_per_job_before_the_statistics_pass(source, tmp_path):
    ledger = tmp_path / "ledger"
    result = run_batch_job(
        source, Ledgered, config={"batch_size": 200}, output_path=tmp_path / "out", ledger=str(ledger)
    )
    lines = ledger.read_text().split()
    assert lines[0] == "validate" and lines.count("validate") == 1
    assert lines.count("stats") == lines.count("process") == result.chunks_total == 3


def test_a_sharded_job_validates_once_in_the_plan(source, tmp_path):
    ledger = tmp_path / "ledger"
    config = {"batch_size": 100}
    specs = plan_shards(
        source, Ledgered, output_path=tmp_path / "out", shards=2, config=config, ledger=str(ledger)
    )
    assert ledger.read_text().split()[0] == "validate"
    for spec in specs:
        run_shard(spec, source, Ledgered, output_path=tmp_path / "out", config=config, ledger=str(ledger))
    merge_shards(tmp_path / "out", Ledgered, ledger=str(ledger))
    assert ledger.read_text().split().count("validate") == 1


def test_expression_depth_is_bounded():
    SafeExpression("not " * 60 + "x")
    with pytest.raises(ConfigError, match="nested more than 100 levels"):
        SafeExpression("not " * 120 + "x")
    with pytest.raises(ConfigError, match="nested too deeply"):
        SafeExpression("-" * 3999 + "x")  # the parser itself would overflow the stack


def test_expression_types_that_work_pass():
    kinds = {"amount": "number", "name": "text", "ok": "bool"}
    for text in (
        "isnull(amount) or amount > 0",
        "length(name) < 5 and lower(name) != 'x'",
        "name + '!' == 'a!'",
        "name in ['a', 'b'] and not ok",
        "abs(amount - 1) * 2 <= 10",
    ):
        SafeExpression(text).check_types(kinds)
    for text in ("name + 1", "-name", "abs(name) > 1", "name / 2 > 1"):
        with pytest.raises(ConfigError, match="text"):
            SafeExpression(text).check_types(kinds)
