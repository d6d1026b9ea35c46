"""Every file of the type corpus (``tests/type_corpus.py``) through every standard processor (issue #23):
accepted with a report, or refused in ``validate`` naming the column and its type; nested columns are profiled,
passed through by feature_engineering's defaults and anomaly_detection (never scored), and every row output
keeps the source's Arrow types."""

from __future__ import annotations

import datetime as dt
import functools

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.engine import run_batch_job, sources
from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors import frames
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
        complete = pc.invert(
            functools.reduce(
                pc.or_, [pc.is_null(want.column(c), nan_is_null=True) for c in want.column_names]
            )
        )
        if clean is None:
            assert not pc.any(complete).as_py(), stem
        else:  # the rows with no missing value, unchanged, types included
            assert clean.schema.types == want.schema.types, stem
            assert clean.equals(want.filter(complete)), stem
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


def engine_schema(path) -> pa.Schema:
    """The schema the engine plans with (INT96 past 2262 in microseconds, as the chunks are read)."""
    loc = Location.of(str(path))
    _, schema = sources.build_plan(
        loc.fs, sources.stat_files(loc.fs, [str(path)]), sources.textformats.TextOptions()
    )
    return schema


#: per processor and step: the parameters for one column, and the parameters for all the accepted columns at once
STEPS = {
    "anomaly_detection features": ("anomaly_detection", lambda cs: {"features": cs}),
    "feature_engineering scale": ("feature_engineering", lambda cs: {"scale": dict.fromkeys(cs, "standard")}),
    "feature_engineering encode": (
        "feature_engineering",
        lambda cs: {"encode": dict.fromkeys(cs, "ordinal")},
    ),
    "feature_engineering impute": (
        "feature_engineering",
        lambda cs: {"impute": dict.fromkeys(cs, "most_frequent")},
    ),
    "feature_engineering date_parts": (
        "feature_engineering",
        lambda cs: {"date_parts": dict.fromkeys(cs, ["year", "month"]), "keep_original": True},
    ),
    "data_quality between": (
        "data_quality",
        lambda cs: {"rules": [{"type": "between", "column": c, "min": 0} for c in cs]},
    ),
    "data_quality between dates": (
        "data_quality",
        lambda cs: {"rules": [{"type": "between", "column": c, "min": "2000-01-01"} for c in cs]},
    ),
    "data_quality length": (
        "data_quality",
        lambda cs: {"rules": [{"type": "length", "column": c, "max": 2} for c in cs]},
    ),
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_column_of_every_file_is_accepted_or_refused_in_validate_naming_column_and_type(
    step, corpus, tmp_path
):
    """Each column alone: ``validate(schema)`` accepts it or raises a ConfigError naming the column and its
    type; then one job with every accepted column runs through (no chunk fails on a type)."""
    from airflow_batch_provider.processors.registry import resolve_processor

    name, params = STEPS[step]
    decided = {"accepted": 0, "refused": 0}
    for stem, path in sorted(corpus.items()):
        if stem.endswith("-v2"):  # its -v1 twin's schema, so the same decisions (pages: the passthrough test)
            continue
        schema, accepted = engine_schema(path), []
        for field in schema:
            processor = resolve_processor(name, params([field.name]))
            try:
                processor.validate(schema)
            except ConfigError as err:
                text = str(err)
                assert repr(field.name) in text, (stem, field.name, text)
                pandas_type = str(frames.pandas_dtypes(pa.schema([field]))[field.name])
                assert str(field.type) in text or pandas_type in text, (stem, field.name, text)
                decided["refused"] += 1
                continue
            accepted.append(field.name)
            decided["accepted"] += 1
        if not accepted:
            continue
        result = run_batch_job(
            str(path), name, config=CONFIG, output_path=tmp_path / stem, **params(accepted)
        )
        assert result.report["rows"] if "rows" in result.report else True, (stem, result.report)
        out = output_table(result)
        if out is not None:
            for field in schema:
                if field.name in out.column_names and field.name not in accepted:  # untouched: exactly kept
                    assert out.column(field.name).type == field.type, (stem, field.name)
    assert decided["accepted"], decided


def test_bounds_on_dates_of_any_year_compare_as_dates(corpus, tmp_path):
    path = corpus["far_dates-v1"]
    want = read_exact(path)
    rules = [
        {"type": "between", "column": c, "min": "2000-01-01", "max": "9999-12-31"}
        for c in ("d32", "d32_early", "d64")
    ] + [{"type": "min", "column": "d64", "value": 0}]  # a number: the epoch, as for timestamps
    report = run_batch_job(str(path), "data_quality", config=CONFIG, output_path=tmp_path, rules=rules).report
    failed = [r["failed"] for r in report["rules"]]
    lo, hi = (
        (dt.date(2000, 1, 1) - dt.date(1970, 1, 1)).days,
        (dt.date(9999, 12, 31) - dt.date(1970, 1, 1)).days,
    )
    for i, c in enumerate(("d32", "d32_early", "d64")):
        days = want.column(c).cast(pa.date32()).cast(pa.int32())  # any year: day numbers, no Python date
        outside = pc.or_(pc.less(days, lo), pc.greater(days, hi))
        assert failed[i] == pc.sum(outside).as_py(), c
    present = {c: want.num_rows - want.column(c).null_count for c in ("d32", "d32_early")}
    assert failed[:2] == [present["d32"] - 1, present["d32_early"]]  # only 9999-12-31 itself is inside
    assert failed[3] == 0
