"""Every file of the type corpus (``tests/type_corpus.py``) through every standard processor (issue #23):
accepted with a report, or refused in ``validate`` naming the column and its type; nested columns are profiled,
passed through by feature_engineering's defaults and anomaly_detection (never scored), and every row output
keeps the source's Arrow types."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import run_batch_job, sources
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors.nested_hashing import is_nested
from airflow_batch_provider.storage import Location
from tests.type_corpus import read_exact, write_corpus

CONFIG = {"batch_size": 7, "max_concurrent_batches": 1, "retry_attempts": 0}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("types") / "corpus")


def output_table(result) -> pa.Table | None:
    parts = sources.list_source_files(Location.of(result.output_uri))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None


def missing(table: pa.Table, name: str) -> int:
    """Nulls, NaN included (both are missing values, as in pandas)."""
    return int(pc.sum(pc.is_null(table.column(name), nan_is_null=True)).as_py() or 0)


def test_data_profiling_profiles_every_column_of_every_file(corpus, tmp_path):
    for stem, path in sorted(corpus.items()):
        want = read_exact(path)
        report = run_batch_job(str(path), "data_profiling", config=CONFIG, output_path=tmp_path / stem).report
        assert report["rows"] == want.num_rows and list(report["columns"]) == want.column_names, stem
        for field in want.schema:
            col = report["columns"][field.name]
            assert col["nulls"] == missing(want, field.name), (stem, field.name)
            if is_nested(field.type):
                assert col["type"] in ("list", "struct", "map") and col["children"], (stem, field.name)


def test_data_quality_not_null_and_default_assessment_on_every_file(corpus, tmp_path):
    for stem, path in sorted(corpus.items()):
        want = read_exact(path)
        rules = [{"type": "not_null", "column": c} for c in want.column_names]
        result = run_batch_job(
            str(path), "data_quality", config=CONFIG, output_path=tmp_path / stem, rules=rules
        )
        failed = {r["name"]: r["failed"] for r in result.report["rules"]}
        assert failed == {f"not_null({c})": missing(want, c) for c in want.column_names}, stem
        clean = output_table(result)
        if clean is not None:
            assert clean.schema.types == want.schema.types, stem
        assessed = run_batch_job(str(path), "data_quality", config=CONFIG, output_path=tmp_path / f"{stem}-d")
        assert assessed.report["rows"] == want.num_rows, stem


def test_feature_engineering_defaults_pass_what_they_cannot_use_through_exactly(corpus, tmp_path):
    for stem, path in sorted(corpus.items()):
        want = read_exact(path)
        result = run_batch_job(str(path), "feature_engineering", config=CONFIG, output_path=tmp_path / stem)
        out = output_table(result)
        skipped = result.report["spec"]["defaults"]["skipped"]
        for field in want.schema:
            if is_nested(field.type):
                assert field.name in skipped, (stem, field.name)
                assert out.column(field.name).type == field.type, (stem, field.name)
                assert out.column(field.name).equals(want.column(field.name)), (stem, field.name)
        spec = run_batch_job(
            str(path),
            "feature_engineering",
            config=CONFIG,
            output_path=tmp_path / f"{stem}-s",
            scale={"x": "standard"},
        )
        assert spec.report["spec"]["columns"]["x"]["scale"]["method"] == "standard", stem


def test_anomaly_detection_scores_numeric_columns_and_passes_nested_ones_through(corpus, tmp_path):
    for stem, path in sorted(corpus.items()):
        want = read_exact(path)
        result = run_batch_job(
            str(path), "anomaly_detection", config=CONFIG, output_path=tmp_path / stem, features=["id", "x"]
        )
        out = output_table(result)
        assert out.num_rows == want.num_rows and "anomaly_score" in out.column_names, stem
        for field in want.schema:
            assert out.column(field.name).type == field.type, (stem, field.name)


def test_a_step_on_a_nested_column_is_refused_in_validate_naming_column_and_type(corpus, tmp_path):
    path = str(corpus["lists-v1"])
    with pytest.raises(
        ConfigError, match=r"scale: column 'li' has type list<element: int64>.*passed through"
    ):
        run_batch_job(path, "feature_engineering", output_path=tmp_path / "f", scale={"li": "standard"})
    with pytest.raises(
        ConfigError, match=r"features: column\(s\) 'li' \(list<element: int64>\[pyarrow\]\) are not"
    ):
        run_batch_job(path, "anomaly_detection", output_path=tmp_path / "a", features=["x", "li"])
    assert not list(tmp_path.rglob("parts/*.parquet"))  # refused before any chunk
